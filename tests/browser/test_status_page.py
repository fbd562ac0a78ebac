"""The status page in headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from tests.integration.test_server import TOKEN, hook, serving, wait_for

CHROMIUM = os.environ.get("EVENTFLOW_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


async def test_status_page_shows_a_fired_rule_and_a_missing_input(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The page loads without errors, shows the lineage, a fired rule's run with its logs and
    an open partition with its missing input; a screenshot is kept in tests/artifacts/."""
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    async with serving(tmp_path) as client:
        await hook(client, "orders/d1", "a")
        await hook(client, "stock/d1", "b")
        await hook(client, "orders/d2", "c")

        async def succeeded() -> Any:
            return (await client.get("/api/runs", params={"status": "succeeded"})).json()["runs"]

        assert await wait_for(succeeded)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(str(client.base_url) + "/")
            assert await page.title() == "eventflow · served"
            assert await page.locator("#lineage g.node.rule").count() == 1
            assert await page.locator("#lineage g.node.dataset").count() == 2
            runs = page.locator("table.runs tbody tr")
            assert await runs.count() == 1
            assert "succeeded" in await runs.first.inner_text()
            missing = page.locator("table.matches tbody tr")
            assert "dt=d2" in await missing.first.inner_text()
            assert await missing.first.locator(".missing").inner_text() == "stock"
            await page.locator("button.logs").first.click()
            await page.locator("pre.log.stdout").wait_for()
            assert "report d1" in await page.locator("pre.log.stdout").inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "status-page.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
            await browser.close()
            assert not errors
