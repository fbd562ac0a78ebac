"""Signing in to the status page in headless Chromium, acting from it, and a cross-site form
post that the server refuses."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from tests.browser.test_status_page import CHROMIUM
from tests.integration.test_server import TOKEN, hook, serving, wait_for

OPERATE_TOKEN = "browser-operate-5d41402abc4b2a76b9719d911017c592"
BEARER = {"Authorization": f"Bearer {OPERATE_TOKEN}"}


@contextlib.contextmanager
def attacker(target: str) -> Iterator[str]:
    """Another origin whose page posts a form to ``target`` as soon as it loads."""
    html = (
        f'<form id="f" method="POST" action="{target}" enctype="text/plain">'
        '<input name=\'{"dataset": "orders", "partition": {"dt": "x"}, "a": "\' value=\'"}\'>'
        '</form><script>document.getElementById("f").submit()</script>'
    ).encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: Any) -> None:
            """Quiet: the test reads what the target answered, not this server's log."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


async def test_sign_in_retry_and_a_refused_cross_site_post(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Without a session the page is the sign-in form; the operate token signs in (the
    cookie is HttpOnly: the page's script cannot read it), the page retries a failed run;
    a form another origin posts to the API is refused (403) and records nothing."""
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    monkeypatch.setenv("EVENTFLOW_API_TOKEN", OPERATE_TOKEN)
    async with serving(tmp_path) as client:
        await hook(client, "orders/bad", "a")
        await hook(client, "stock/bad", "b")

        async def runs(status: str) -> Any:
            answer = await client.get("/api/runs", params={"status": status}, headers=BEARER)
            return answer.json()["runs"]

        failed = await wait_for(lambda: runs("failed"))
        assert failed
        base = str(client.base_url)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            first = await page.goto(base + "/")
            assert first is not None
            assert first.status == 401
            await page.fill("#token", "not-the-token")
            await page.click("button[type=submit]")
            await page.locator("#error").filter(has_text="not a read or operate").wait_for()
            await page.fill("#token", OPERATE_TOKEN)
            async with page.expect_navigation():
                await page.click("button[type=submit]")
            assert await page.title() == "eventflow · served"
            assert "operate-token:" in await page.locator(".who").inner_text()
            assert "eventflow_session" not in await page.evaluate("document.cookie")
            cookies = await page.context.cookies()
            assert all(OPERATE_TOKEN not in c["value"] for c in cookies)

            async with page.expect_navigation():
                await page.locator("button.retry").first.click()
            run = await client.get(f"/api/runs/{failed[0]['run_id']}", headers=BEARER)
            assert run.json()["attempt"] == 2

            with attacker(base + "/api/events") as evil:
                async with page.expect_response(lambda r: r.url.endswith("/api/events")) as sent:
                    await page.goto(evil)
                answer = await sent.value
                assert answer.status == 403
                assert "cannot change state" in await answer.text()
            orders = await client.get("/api/matches", headers=BEARER)
            assert all(m["partition"] != {"dt": "x"} for m in orders.json()["matches"])

            await page.goto(base + "/")
            async with page.expect_navigation():
                await page.click("#logout")
            assert await page.locator("#token").count() == 1
            await browser.close()
            assert not errors
