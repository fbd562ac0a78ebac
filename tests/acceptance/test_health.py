"""Health seen from another process: `eventflow status` and `eventflow workers` show the
running worker, its sensors and leases; SIGHUP drains like SIGTERM; a killed worker goes
stale."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

from tests.acceptance.harness import Project, wait_until

PY = sys.executable

PIPELINE = f"""
name: health
sensors:
  landing: {{type: directory, path: ./landing, ready: {{stable_for: 200ms}}}}
datasets:
  ready: {{sensor: landing, key: "ready/{{dt}}"}}
rules:
  job:
    when: {{any: [ready], by: [dt]}}
    run:
      command: [{PY}, -c, "import time, pathlib; pathlib.Path('started').touch();
                time.sleep(1); pathlib.Path('finished').touch()"]
engine: {{poll_interval: 100ms, heartbeat: 300ms}}
"""


def live_worker(p: Project) -> dict[str, Any] | None:
    status = p.status()
    live = [w for w in status["workers"] if w["state"] == "live"]
    return status if live and status["sensors"][0]["state"] == "connected" else None


def test_status_in_another_process_shows_the_worker_and_its_sensor(tmp_path: Path) -> None:
    """While `eventflow run` runs, `eventflow status --json` (another process) lists the
    worker (host, pid, the directory sensor's lease) and the sensor connected on it, with a
    last poll time; `eventflow workers` shows the same."""
    p = Project(tmp_path, PIPELINE)
    proc = p.start()
    status = wait_until(lambda: live_worker(p), timeout=30)
    [worker] = status["workers"]
    assert worker["pid"] == proc.pid
    assert worker["leases"] == ["sensor:health:landing"]
    [sensor] = status["sensors"]
    assert sensor["worker"] == worker["worker"]
    assert sensor["type"] == "directory"
    assert sensor["last_poll"] is not None
    assert sensor["last_error"] is None
    assert [r["rule"] for r in status["reliability"]] == ["job"]
    listed = p.cli_json("workers")
    assert [w["worker"] for w in listed["workers"]] == [worker["worker"]]
    text = p.cli("status", str(p.file)).stdout
    assert "Workers" in text
    assert worker["worker"] in text


def test_sighup_drains_like_sigterm_and_the_worker_shows_stopped(tmp_path: Path) -> None:
    """SIGHUP lets the running task finish, records its success, exits 0, logs the signal
    with action drain, and leaves the worker's row `stopped`."""
    p = Project(tmp_path, PIPELINE)
    proc = p.start()
    wait_until(lambda: live_worker(p), timeout=30)
    p.land("ready/x")
    wait_until(lambda: (tmp_path / "started").exists())
    proc.send_signal(signal.SIGHUP)
    assert p.wait_exit() == 0
    assert (tmp_path / "finished").exists()
    [run] = p.runs()
    assert run["status"] == "succeeded"
    [signalled] = [e for e in p.log_events() if e["event"] == "signal_received"]
    assert signalled["signal"] == "SIGHUP"
    assert signalled["action"] == "drain"
    assert p.status()["workers"][0]["state"] == "stopped"


def test_a_killed_worker_goes_stale(tmp_path: Path) -> None:
    """After SIGKILL the worker's row is not updated any more: within three heartbeats
    `status` shows the worker and its sensor stale."""
    p = Project(tmp_path, PIPELINE)
    p.start()
    wait_until(lambda: live_worker(p), timeout=30)
    p.kill()
    status = wait_until(
        lambda: (s := p.status())["workers"][0]["state"] == "stale" and s, timeout=10
    )
    assert status["sensors"][0]["state"] == "stale"
