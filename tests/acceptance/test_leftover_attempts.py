"""A retry never runs beside a survivor of an earlier attempt (issue 16, item 6).

``sh -c "python job.py; echo done"``: the shell is the program eventflow starts, ``job.py``
its child (eventflow's grandchild). SIGKILL of eventflow kills the shell through the
parent-death signal, but ``job.py`` is reparented and lives on. The next attempt of the same
run must stop it before it starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from tests.acceptance.harness import Project, process_alive, wait_until

JOB = """
import json, os, pathlib, time

def alive(pid):
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")

log = pathlib.Path("jobs.log")
earlier = [json.loads(line)["pid"] for line in log.read_text().splitlines()] if log.exists() else []
attempt = int(os.environ["EVENTFLOW_ATTEMPT"])
with log.open("a") as f:
    f.write(json.dumps({"pid": os.getpid(), "attempt": attempt,
                        "beside": [p for p in earlier if alive(p)]}) + "\\n")
if attempt == 1:
    time.sleep(600)
"""

PIPELINE = f"""
name: leftovers
sensors:
  landing: {{type: directory, path: ./landing, poll_interval: 200ms}}
datasets:
  a: {{sensor: landing, key: "a/{{p}}.csv"}}
rules:
  job:
    when: {{all: [a], by: [p]}}
    run:
      command: [sh, -c, "{sys.executable} job.py; echo done"]
      retries: 2
engine: {{poll_interval: 100ms}}
"""


def jobs(root: Path) -> list[dict[str, object]]:
    log = root / "jobs.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_next_attempt_stops_what_an_attempt_before_a_crash_left(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(JOB)
    p = Project(tmp_path, PIPELINE)
    p.start()
    p.land("a/1.csv")
    first = wait_until(lambda: jobs(tmp_path)[:1], timeout=30)[0]
    survivor = int(first["pid"])  # type: ignore[call-overload]
    try:
        noted = wait_until(lambda: p.runs() and p.runs()[0]["notes"].get("process"))
        assert noted["attempt"] == 1
        p.kill()
        assert process_alive(survivor), "job.py should outlive eventflow's SIGKILL (the repro)"

        p.start()
        wait_until(lambda: len(jobs(tmp_path)) == 2, timeout=30)
        second = jobs(tmp_path)[1]
        assert second["attempt"] == 2
        assert second["beside"] == [], "attempt 2 ran beside attempt 1"
        assert not process_alive(survivor)
        run = wait_until(lambda: [r for r in p.runs() if r["status"] == "succeeded"])[0]
        assert run["attempt"] == 2
        stopped = [e for e in p.log_events() if e.get("event") == "run_leftover_stopped"]
        assert [(e["earlier_attempt"], e["run_id"]) for e in stopped] == [(1, run["run_id"])]
        assert p.stop() == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(survivor, signal.SIGKILL)


def test_a_noted_group_that_ended_is_left_alone(tmp_path: Path) -> None:
    """A run whose earlier attempt ended normally (its group is gone) starts without a stop:
    nothing is signalled, nothing logged."""
    (tmp_path / "job.py").write_text("raise SystemExit(1)\n")
    pipeline = PIPELINE.replace("retries: 2", "retries: 1\n      backoff: {initial: 100ms}")
    pipeline = pipeline.replace("job.py; echo done", "job.py && echo done")
    p = Project(tmp_path, pipeline)
    p.start()
    p.land("a/1.csv")
    run = wait_until(lambda: [r for r in p.runs() if r["status"] == "failed"], timeout=30)[0]
    assert run["attempt"] == 2
    assert run["notes"]["process"]["attempt"] == 2
    assert not [e for e in p.log_events() if e.get("event", "").startswith("run_leftover")]
    assert p.stop() == 0
