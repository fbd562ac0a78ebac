"""The status page's backfill form in headless Chromium: an operator previews a range,
submits it, and the running pipeline fires it; checked in the store afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from tests.browser.test_status_page import ARTIFACTS, CHROMIUM
from tests.integration.test_server import TOKEN, hook, serving, wait_for

OPERATE_TOKEN = "browser-operate-" + "9" * 32
BEARER = {"Authorization": f"Bearer {OPERATE_TOKEN}"}


async def test_an_operator_backfills_a_range_from_the_page(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Three days fired live; signed in with the operate token, the form's preview says two
    would fire again (forced), submit records the request under the operator's name, and
    the store then holds one second-generation run for each of the two days only."""
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    monkeypatch.setenv("EVENTFLOW_API_TOKEN", OPERATE_TOKEN)
    async with serving(tmp_path) as client:
        for day in ("d1", "d2", "d3"):
            await hook(client, f"orders/{day}", f"o{day}")
            await hook(client, f"stock/{day}", f"s{day}")

        async def runs() -> list[dict[str, Any]]:
            answer = await client.get("/api/runs", params={"limit": 100}, headers=BEARER)
            return answer.json()["runs"]  # type: ignore[no-any-return]

        assert await wait_for(lambda: _count(runs, 3))
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1280, "height": 1200})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(str(client.base_url) + "/")
            await page.fill("#token", OPERATE_TOKEN)
            async with page.expect_navigation():
                await page.click("button[type=submit]")
            assert await page.locator("p.empty.backfills").count() == 1
            form = page.locator("#backfill-form")
            await form.locator("select[name=rule]").select_option("report")
            await form.locator("input[name=from]").fill("d1")
            await form.locator("input[name=to]").fill("d2")
            await form.locator("input[name=force]").check()
            await page.click("#backfill-preview")
            preview = page.locator("#backfill-plan p.preview")
            await preview.wait_for()
            assert (await preview.inner_text()).startswith("2 to fire, 0 resumed, 0 skipped")
            assert await page.locator("#backfill-plan li").count() == 2
            async with page.expect_navigation():
                await page.click("#backfill-submit")
            row = page.locator("table.backfills tbody tr")
            assert await row.count() == 1
            assert "report" in await row.inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "backfill-form.png"), full_page=True)
            await browser.close()
            assert not errors

        listed = (await client.get("/api/backfills", headers=BEARER)).json()["backfills"]
        [request] = listed
        assert request["requested_by"].startswith("api:")
        assert (request["rule"], request["from"], request["to"], request["force"]) == (
            "report",
            "d1",
            "d2",
            True,
        )

        async def done() -> Any:
            one = await client.get(f"/api/backfills/{request['id']}", headers=BEARER)
            return one.json()["status"] == "done" and one.json()

        finished = await wait_for(done)
        assert finished
        assert (finished["planned"], finished["fired"]) == (2, 2)
        store = await runs()
        assert sorted((r["partition"]["dt"], r["generation"]) for r in store) == [
            ("d1", 1),
            ("d1", 2),
            ("d2", 1),
            ("d2", 2),
            ("d3", 1),
        ]


async def _count(read: Any, n: int) -> bool:
    return len(await read()) >= n
