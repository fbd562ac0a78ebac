"""Data-quality checks on the status page in headless Chromium: an operator signed in
re-runs the checks of a partition whose data was fixed and overrides another blocked one;
the store has both decisions with the principal, the rule downstream fired once for each,
and the runs table shows each run's checks' outcome. A read token gets no buttons."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright

from tests.browser.test_sign_in import OPERATE_TOKEN
from tests.browser.test_status_page import CHROMIUM
from tests.integration.test_checks_api import PIPELINE, reports
from tests.integration.test_server import TOKEN, hook, serving, wait_for

BEARER = {"Authorization": f"Bearer {OPERATE_TOKEN}"}


def stored_gates(root: Path) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """Each gate's status and audit trail by partition, read from the SQLite file."""
    conn = sqlite3.connect(root / ".eventflow" / "state.db")
    try:
        rows = conn.execute("SELECT partition, status, actions FROM check_gates").fetchall()
    finally:
        conn.close()
    return {json.loads(p)["dt"]: (s, json.loads(a)) for p, s, a in rows}


async def click(page: Page, selector: str) -> None:
    async with page.expect_navigation():  # the page reloads after the action
        await page.locator(selector).click()


async def test_an_operator_reruns_and_overrides_blocked_partitions_on_the_page(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Two partitions blocked by their empty files: d1's data is fixed and its checks are
    re-run from the page, d2 is overridden from the page; the store has d1 passed and d2
    overridden, each audited with the page's principal; `report` fired once for each."""
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    monkeypatch.setenv("EVENTFLOW_API_TOKEN", OPERATE_TOKEN)
    async with serving(tmp_path, PIPELINE) as client:
        await hook(client, "orders/d1", "o1")
        await hook(client, "orders/d2", "o2")

        async def both_blocked() -> Any:
            gates = (await client.get("/api/checks", headers=BEARER)).json()["items"]
            return len(gates) == 2 and all(g["status"] == "blocked" for g in gates) and gates

        gates = {g["partition"]["dt"]: g["run_id"] for g in await wait_for(both_blocked)}
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
            d1 = f'table.checks tr[data-key="{gates["d1"]}"]'
            d2 = f'table.checks tr[data-key="{gates["d2"]}"]'
            assert "blocked by check not_empty" in await page.locator(d1).inner_text()
            run_cell = f'table.runs tr[data-key="{gates["d1"]}"] .checks'
            assert await page.locator(run_cell).inner_text() == "failed: not_empty"

            (tmp_path / "data" / "d1.csv").write_text("id\n1\n")
            await click(page, f'{d1} button[data-action="rerun"]')
            await click(page, f'{d2} button[data-action="override"]')

            async def both_fired() -> Any:
                return sorted(reports(tmp_path)) == ["d1", "d2"]

            assert await wait_for(both_fired)
            stored = stored_gates(tmp_path)
            assert stored["d1"][0] == "passed"
            assert stored["d2"][0] == "overridden"
            for dt, action in (("d1", "rerun"), ("d2", "override")):
                [audit] = stored[dt][1]
                assert audit["action"] == action
                assert str(audit["by"]).startswith("api:")
            await page.reload()
            assert await page.locator(d1).count() == 0  # no longer held
            assert await page.locator(run_cell).inner_text() == "passed"
            d2_run = f'table.runs tr[data-key="{gates["d2"]}"] .checks'
            assert await page.locator(d2_run).inner_text() == "overridden (failed: not_empty)"
            await browser.close()
            assert not errors
    assert sorted(reports(tmp_path)) == ["d1", "d2"]  # once each, after the server stopped


async def test_a_reader_sees_the_blocked_partition_without_buttons(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Signed in with a read token the page shows the blocked partition but no re-run or
    override button, and a post from the page is refused (403): the gate is unchanged."""
    read_token = "browser-read-" + "4" * 32
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    monkeypatch.setenv("EVENTFLOW_API_TOKEN", OPERATE_TOKEN)
    monkeypatch.setenv("EVENTFLOW_READ_TOKEN", read_token)
    async with serving(tmp_path, PIPELINE) as client:
        await hook(client, "orders/d1", "o1")

        async def blocked() -> Any:
            gates = (await client.get("/api/checks", headers=BEARER)).json()["items"]
            return gates and gates[0]["status"] == "blocked" and gates[0]["run_id"]

        run_id = await wait_for(blocked)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = await browser.new_page()
            await page.goto(str(client.base_url) + "/")
            await page.fill("#token", read_token)
            async with page.expect_navigation():
                await page.click("button[type=submit]")
            row = f'table.checks tr[data-key="{run_id}"]'
            assert "blocked by check not_empty" in await page.locator(row).inner_text()
            assert await page.locator("button.check-action").count() == 0
            status = await page.evaluate(
                """async (run) => (await fetch("/api/checks/" + run + "/override", {method:
                   "POST", headers: {"Content-Type": "application/json"}, body: "{}"})).status""",
                run_id,
            )
            assert status == 403
            await browser.close()
    assert stored_gates(tmp_path)["d1"] == ("blocked", [])
    assert reports(tmp_path) == []
