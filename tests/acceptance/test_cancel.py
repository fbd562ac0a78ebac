"""``eventflow cancel``: a running run's whole process tree is stopped, a pending run never
starts; both end ``cancelled`` with an ``eventflow.run.cancelled`` event, and ``retry`` runs
them again. Through the real CLI against a running ``eventflow run``."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import httpx

from tests.acceptance.harness import Project, check_event, process_alive, wait_until
from tests.services._process import free_port

OPERATE = "operate-" + "7" * 32
READ = "read-" + "5" * 32

PIPELINE = """
name: cancelling
sensors:
  landing: {type: directory, path: ./landing, poll_interval: 200ms}
datasets:
  a: {sensor: landing, key: "a/{p}.csv"}
rules:
  job:
    when: {all: [a], by: [p]}
    run:
      command: [sh, -c, "sleep 300 & echo $! > pids/$EVENTFLOW_VAR_P.child; wait"]
      concurrency: 1
publish:
  - {type: file, path: out/events.jsonl}
engine: {poll_interval: 100ms}
"""


def cancel_events(p: Project) -> list[dict[str, object]]:
    return [e for e in p.published() if e["type"] == "eventflow.run.cancelled"]


def by_partition(p: Project) -> dict[str, dict[str, object]]:
    return {r["partition"]["p"]: r for r in p.runs()}


def test_cancel_stops_a_running_tree_and_keeps_a_pending_run_from_starting(
    tmp_path: Path,
) -> None:
    (tmp_path / "pids").mkdir()
    p = Project(tmp_path, PIPELINE)
    p.start()
    p.land("a/1.csv")
    p.land("a/2.csv")
    child_file = tmp_path / "pids/1.child"
    wait_until(lambda: child_file.exists() and child_file.read_text().strip())
    child = int(child_file.read_text())
    try:
        runs = wait_until(lambda: len(by_partition(p)) == 2 and by_partition(p))
        running, pending = runs["1"], runs["2"]
        assert (running["status"], pending["status"]) == ("running", "pending")

        p.cli("cancel", str(p.file), str(pending["run_id"]))
        p.cli("cancel", str(p.file), str(running["run_id"]))
        done = wait_until(
            lambda: (
                all(r["status"] == "cancelled" for r in by_partition(p).values())
                and by_partition(p)
            )
        )
        assert not process_alive(child), "the task's child process outlived the cancel"
        assert not (tmp_path / "pids/2.child").exists(), "the pending run started"
        assert all(str(r["error"]).startswith("cancelled by cli:") for r in done.values())
        cancelled = wait_until(lambda: len(cancel_events(p)) == 2 and cancel_events(p))
        for event in cancelled:
            check_event(event)
        assert sorted(e["data"]["attempt"] for e in cancelled) == [0, 1]

        refused = p.cli("cancel", str(p.file), str(running["run_id"]), check=False)
        assert refused.returncode != 0
        assert "only a pending or running run can be cancelled" in refused.stderr

        p.cli("retry", str(p.file), str(pending["run_id"]))
        wait_until(lambda: (tmp_path / "pids/2.child").exists())
        assert by_partition(p)["2"]["status"] == "running"
        p.cli("cancel", str(p.file), str(pending["run_id"]))
        wait_until(lambda: by_partition(p)["2"]["status"] == "cancelled")
        logged = [e for e in p.log_events() if e.get("event") == "run_cancelled"]
        assert len(logged) == 3
        assert p.stop() == 0
    finally:
        for pid_file in (tmp_path / "pids").glob("*.child"):
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_the_api_cancels_a_run_for_an_operator_and_refuses_a_reader(tmp_path: Path) -> None:
    """`POST /api/runs/{id}/cancel` with the operate token stops the running run (it ends
    `cancelled`, naming the principal); the read token gets 403 and changes nothing."""
    (tmp_path / "pids").mkdir()
    port = free_port()
    p = Project(tmp_path, PIPELINE)
    p.start(args=["--http", str(port)], EVENTFLOW_API_TOKEN=OPERATE, EVENTFLOW_READ_TOKEN=READ)
    p.land("a/1.csv")
    child_file = tmp_path / "pids/1.child"
    wait_until(lambda: child_file.exists() and child_file.read_text().strip())
    child = int(child_file.read_text())
    try:
        run_id = wait_until(lambda: p.runs() and p.runs()[0]["run_id"])
        url = f"http://127.0.0.1:{port}/api/runs/{run_id}/cancel"
        with httpx.Client(timeout=10) as client:
            refused = client.post(url, json={}, headers={"Authorization": f"Bearer {READ}"})
            assert refused.status_code == 403, refused.text
            assert p.runs()[0]["status"] == "running"
            done = client.post(url, json={}, headers={"Authorization": f"Bearer {OPERATE}"})
            assert done.status_code == 202, done.text
            assert done.json()["cancel_requested"]["by"].startswith("api:")
            assert OPERATE not in done.text
        run = wait_until(lambda: p.runs()[0]["status"] == "cancelled" and p.runs()[0])
        assert str(run["error"]).startswith("cancelled by api:")
        assert not process_alive(child)
        assert p.stop() == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
