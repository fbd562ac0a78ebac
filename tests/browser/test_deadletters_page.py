"""Dead letters on the status page in headless Chromium: an operator shows one and redrives
it once the pipeline is fixed (checked in the store: redriven, audited with the principal,
the rule fired once); without a credential (or with a read token) it is refused."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright

from tests.browser.test_pause_page import READ_TOKEN
from tests.browser.test_sign_in import BEARER, OPERATE_TOKEN
from tests.browser.test_status_page import CHROMIUM
from tests.integration.test_server import TOKEN, serving, wait_for

BROKEN = """
name: served
sensors:
  hooks: {type: http, auth: bearer, secret_env: TEST_HOOK_TOKEN}
datasets:
  orders: {sensor: hooks, partition: {dt: payload.day}}
rules:
  load:
    when: {any: [orders], by: [dt]}
    run: {command: [sh, -c, "echo load $EVENTFLOW_VAR_DT"]}
engine: {poll_interval: 50ms}
"""
FIXED = BROKEN.replace("payload.day", "payload.date")


def stored(root: Path) -> list[tuple[Any, ...]]:
    """``(event_id, status, history)`` of every dead letter, from the SQLite file."""
    conn = sqlite3.connect(root / ".eventflow" / "state.db")
    try:
        rows = conn.execute("SELECT event_id, status, history FROM deadletters ORDER BY seq")
        return [(e, s, json.loads(h)) for e, s, h in rows]
    finally:
        conn.close()


async def dead_letter(root: Path) -> str:
    """Run the broken pipeline until one webhook is dead-lettered; its event id."""
    async with serving(root, BROKEN) as client:
        answer = await client.post(
            "/hooks/hooks",
            json={"date": "d1"},
            headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "delivery-1"},
        )
        assert answer.status_code == 200, answer.text
    [(event_id, status, _)] = stored(root)
    assert status == "open"
    return str(event_id)


async def sign_in(page: Page, base: str, token: str) -> None:
    await page.goto(base + "/")
    await page.fill("#token", token)
    async with page.expect_navigation():
        await page.click("button[type=submit]")


async def test_an_operator_shows_and_redrives_a_dead_letter_on_the_page(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Signed in with the operate token, `show` displays the kept payload, `redrive` is
    carried out by the running (fixed) pipeline: the store has it redriven, audited with
    the principal, and the rule ran once."""
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    monkeypatch.setenv("EVENTFLOW_API_TOKEN", OPERATE_TOKEN)
    event_id = await dead_letter(tmp_path)
    async with serving(tmp_path, FIXED) as client:
        base = str(client.base_url)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await sign_in(page, base, OPERATE_TOKEN)
            row = f'table.deadletters tr[data-key="{event_id}"]'
            assert "open" in await page.locator(row).inner_text()

            await page.locator(f"{row} button.deadletter-show").click()
            shown = page.locator("#deadletter-view pre")
            await shown.wait_for()
            assert json.loads(await shown.inner_text())["message"]["payload"] == {"date": "d1"}

            async with page.expect_navigation():
                await page.locator(f'{row} button[data-action="redrive"]').click()

            async def succeeded() -> Any:
                runs = (await client.get("/api/runs", headers=BEARER)).json()["runs"]
                return runs and runs[0]["status"] == "succeeded" and runs

            [run] = await wait_for(succeeded)
            assert run["partition"] == {"dt": "d1"}
            [(_, status, history)] = stored(tmp_path)
            assert status == "redriven"
            assert [h["action"] for h in history] == ["redrive_requested", "redriven"]
            assert history[0]["by"].startswith("api:")
            await page.reload()
            assert await page.locator(row).count() == 0  # no longer open
            await browser.close()
            assert not errors


async def test_without_a_token_dead_letters_are_neither_read_nor_redriven(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """No credential: the list, the detail and the actions answer 401; a read token may
    read but its page has no redrive or discard buttons and its actions answer 403; the
    dead letter is unchanged."""
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    monkeypatch.setenv("EVENTFLOW_API_TOKEN", OPERATE_TOKEN)
    monkeypatch.setenv("EVENTFLOW_READ_TOKEN", READ_TOKEN)
    event_id = await dead_letter(tmp_path)
    before = stored(tmp_path)
    actions = [f"/api/deadletters/{event_id}/{a}" for a in ("redrive", "discard")]
    actions.append("/api/deadletters/redrive")
    async with serving(tmp_path, FIXED) as client:
        base = str(client.base_url)
        for path in ("/api/deadletters", f"/api/deadletters/{event_id}"):
            assert (await client.get(path)).status_code == 401
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        for path in actions:
            body = {"all": True}
            assert (await client.post(path, json=body)).status_code == 401
            refused = await client.post(path, json=body, headers=read)
            assert refused.status_code == 403, refused.text
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = await browser.new_page()
            first = await page.goto(base + "/")
            assert first is not None
            assert first.status == 401
            await sign_in(page, base, READ_TOKEN)
            assert await page.locator("table.deadletters").count() == 1
            assert await page.locator("button.deadletter-show").count() == 1
            assert await page.locator("button.deadletter-action").count() == 0
            status = await page.evaluate(
                """async (path) => (await fetch(path, {method: "POST",
                   headers: {"Content-Type": "application/json"}, body: "{}"})).status""",
                actions[0],
            )
            assert status == 403
            await browser.close()
        assert (await client.get("/api/runs", headers=BEARER)).json()["runs"] == []
    assert stored(tmp_path) == before
