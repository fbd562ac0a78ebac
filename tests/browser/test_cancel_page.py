"""Cancelling a running run from the status page in headless Chromium: the operator confirms,
the run's whole process tree stops and the store records who cancelled it; a reader's page
offers no cancel button and the API refuses the reader's cancel."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

from tests.acceptance.harness import process_alive
from tests.browser.test_sign_in import BEARER, OPERATE_TOKEN
from tests.browser.test_status_page import CHROMIUM
from tests.integration.test_server import TOKEN, hook, serving, wait_for

READ_TOKEN = "browser-read-" + "3" * 32

PIPELINE = """
name: cancelling
sensors:
  hooks: {type: http, auth: bearer, secret_env: TEST_HOOK_TOKEN}
datasets:
  orders: {sensor: hooks, key: "orders/{dt}"}
rules:
  slow:
    when: {all: [orders], by: [dt]}
    run:
      command: [sh, -c, "sleep 300 & echo $! > child.pid; wait"]
engine: {poll_interval: 50ms}
"""


async def sign_in(page: Any, base: str, token: str) -> None:
    await page.goto(base + "/")
    await page.fill("#token", token)
    async with page.expect_navigation():
        await page.click("button[type=submit]")


async def test_an_operator_cancels_a_running_run_from_the_page(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    monkeypatch.setenv("EVENTFLOW_API_TOKEN", OPERATE_TOKEN)
    monkeypatch.setenv("EVENTFLOW_READ_TOKEN", READ_TOKEN)
    monkeypatch.chdir(tmp_path)
    pid_file = tmp_path / "child.pid"
    async with serving(tmp_path, PIPELINE) as client:
        await hook(client, "orders/2024-01-01", "a")

        async def running() -> Any:
            answer = await client.get("/api/runs", params={"status": "running"}, headers=BEARER)
            return pid_file.exists() and pid_file.read_text().strip() and answer.json()["runs"]

        runs = await wait_for(running, timeout=30)
        assert runs, "the run did not start"
        run_id, child = runs[0]["run_id"], int(pid_file.read_text())
        base = str(client.base_url)
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                reader = await browser.new_page()
                await sign_in(reader, base, READ_TOKEN)
                assert await reader.locator("button.cancel").count() == 0
                refused = await reader.request.post(
                    f"{base}/api/runs/{run_id}/cancel",
                    headers={"Content-Type": "application/json"},
                    data="{}",
                )
                assert refused.status == 403

                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await sign_in(page, base, OPERATE_TOKEN)
                dialogs: list[str] = []

                async def accept(dialog: Any) -> None:
                    dialogs.append(dialog.message)
                    await dialog.accept()

                page.on("dialog", accept)
                async with page.expect_navigation():
                    await page.locator(f'button.cancel[data-run="{run_id}"]').click()
                assert dialogs == [f"Cancel run {run_id}?"]
                await browser.close()
                assert not errors

            async def cancelled() -> Any:
                run = (await client.get(f"/api/runs/{run_id}", headers=BEARER)).json()
                return run["status"] == "cancelled" and run

            run = await wait_for(cancelled, timeout=30)
            assert run, "the run was not cancelled"
            assert run["error"].startswith("cancelled by api:")
            assert await wait_for(_async(lambda: not process_alive(child)), timeout=10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def _async(check: Any) -> Any:
    async def wrapped() -> Any:
        return check()

    return wrapped
