"""Pausing and resuming a rule from the status page in headless Chromium, checked in the
store; without a credential (or with a read token) every read and action is refused and
nothing changes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright

from tests.browser.test_sign_in import BEARER, OPERATE_TOKEN
from tests.browser.test_status_page import CHROMIUM
from tests.integration.test_server import TOKEN, hook, serving, wait_for

READ_TOKEN = "browser-read-" + "3" * 32


def audit(root: Path) -> list[tuple[Any, ...]]:
    """The pause audit trail and the pauses, read from the pipeline's SQLite file."""
    conn = sqlite3.connect(root / ".eventflow" / "state.db")
    try:
        actions = conn.execute(
            "SELECT kind, name, action, actor, changed FROM pause_actions ORDER BY seq"
        ).fetchall()
        return [*actions, *conn.execute("SELECT kind, name, paused_by FROM pauses")]
    finally:
        conn.close()


async def click(page: Page, selector: str) -> None:
    async with page.expect_navigation():
        await page.locator(selector).click()


async def test_an_operator_pauses_and_resumes_a_rule_on_the_page(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Signed in with the operate token, the page pauses `report` (the store has the pause
    and its audit naming the principal), the fire of a partition completed meanwhile is held
    and shown, and resume runs it once."""
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    monkeypatch.setenv("EVENTFLOW_API_TOKEN", OPERATE_TOKEN)
    async with serving(tmp_path) as client:
        base = str(client.base_url)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(base + "/")
            await page.fill("#token", OPERATE_TOKEN)
            async with page.expect_navigation():
                await page.click("button[type=submit]")
            row = 'table.pauses tr[data-key="rule report"]'
            assert "running" in await page.locator(row).inner_text()

            await click(page, f'{row} button[data-action="pause"]')
            assert "paused" in await page.locator(row).inner_text()
            [action, pause] = audit(tmp_path)
            assert action[:3] == ("rule", "report", "pause")
            assert action[4] == 1
            assert str(action[3]).startswith("api:")
            assert pause[2] == action[3]

            await hook(client, "orders/d1", "o1")
            await hook(client, "stock/d1", "s1")

            async def held() -> Any:
                rules = (await client.get("/api/rules", headers=BEARER)).json()["rules"]
                return rules[0]["paused"]["held"] == 1

            assert await wait_for(held)
            await page.reload()
            cells = await page.locator(f"{row} td").all_inner_texts()
            assert cells[2:7] == ["paused", action[3], cells[4], "-", "1"]
            runs = (await client.get("/api/runs", headers=BEARER)).json()["runs"]
            assert [(r["status"], r["attempt"]) for r in runs] == [("pending", 0)]

            await click(page, f'{row} button[data-action="resume"]')

            async def succeeded() -> Any:
                runs = (await client.get("/api/runs", headers=BEARER)).json()["runs"]
                return runs and runs[0]["status"] == "succeeded" and runs

            [run] = await wait_for(succeeded)
            assert run["attempt"] == 1
            assert [a[2] for a in audit(tmp_path)] == ["pause", "resume"]
            assert "running" in await page.locator(row).inner_text()
            await browser.close()
            assert not errors


async def test_without_a_token_every_pause_read_and_action_is_refused(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """No credential: the page, the rules and the four actions answer 401; a read token may
    read but its page has no buttons and its actions answer 403; nothing is paused."""
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    monkeypatch.setenv("EVENTFLOW_API_TOKEN", OPERATE_TOKEN)
    monkeypatch.setenv("EVENTFLOW_READ_TOKEN", READ_TOKEN)
    actions = [
        f"/api/{kind}/{name}/{action}"
        for kind, name in (("rules", "report"), ("sensors", "hooks"))
        for action in ("pause", "resume")
    ]
    async with serving(tmp_path) as client:
        base = str(client.base_url)
        for path in ("/api/rules", "/api/sensors", "/api/status"):
            assert (await client.get(path)).status_code == 401
        for path in actions:
            assert (await client.post(path, json={})).status_code == 401
            read = {"Authorization": f"Bearer {READ_TOKEN}"}
            refused = await client.post(path, json={}, headers=read)
            assert refused.status_code == 403, refused.text
        assert (await client.get("/api/rules/report/pause", headers=BEARER)).status_code == 405
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = await browser.new_page()
            first = await page.goto(base + "/")
            assert first is not None
            assert first.status == 401
            status = await page.evaluate(
                """async () => (await fetch("/api/rules/report/pause", {method: "POST",
                   headers: {"Content-Type": "application/json"}, body: "{}"})).status"""
            )
            assert status == 401
            await page.fill("#token", READ_TOKEN)
            async with page.expect_navigation():
                await page.click("button[type=submit]")
            assert await page.locator("table.pauses").count() == 1
            assert await page.locator("button.pause-action").count() == 0
            status = await page.evaluate(
                """async () => (await fetch("/api/rules/report/pause", {method: "POST",
                   headers: {"Content-Type": "application/json"}, body: "{}"})).status"""
            )
            assert status == 403
            await browser.close()
        assert audit(tmp_path) == []
        rules = (await client.get("/api/rules", headers=BEARER)).json()["rules"]
        assert rules[0]["paused"] is None
