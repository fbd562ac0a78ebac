"""Rules for real pipelines through the real CLI: deadlines across a stop, batches across a
SIGKILL, quiet periods, and an hourly dataset rolled up into a daily rule."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from tests.acceptance.harness import Project, lines, wait_until

PY = sys.executable

COUNT = (
    "import json, os, sys\n"
    "events = json.load(open(os.environ['EVENTFLOW_EVENTS']))\n"
    "with open(sys.argv[1], 'a') as f:\n"
    "    f.write(json.dumps({'run': os.environ['EVENTFLOW_RUN_ID'],"
    " 'events': [e['position'] for e in events]}) + '\\n')\n"
)


def project(root: Path, rules: str, datasets: str) -> Project:
    (root / "count.py").write_text(COUNT)
    pipeline = f"""
name: rules
sensors:
  landing: {{type: directory, path: ./landing, ready: {{stable_for: 200ms}}}}
datasets:
{datasets}
rules:
{rules}
publish:
  - {{type: file, path: out/events.jsonl}}
"""
    return Project(root, pipeline)


def of_type(p: Project, type_: str) -> list[dict]:
    return [e for e in p.published() if e["type"] == type_]


def committed(p: Project, events: int) -> bool:
    return p.status()["counts"]["events"] >= events


def started(p: Project) -> int:
    """How many of the processes started so far got as far as running the pipeline."""
    return sum(1 for e in p.log_events() if e.get("event") == "pipeline_started")


def stamp(when: datetime) -> str:
    return when.strftime("%Y%m%dT%H%M%S")


def test_deadline_missed_while_stopped_is_published_at_start_once(tmp_path: Path) -> None:
    """A partition whose deadline fell due while eventflow was stopped is reported missed at
    the next start, once, with what arrived and what is missing."""
    p = project(
        tmp_path,
        f"""  report:
    when: {{all: [orders, inventory], by: [at]}}
    expect_by: "{{at}} + 0s"
    run: {{command: [{PY}, count.py, runs.log]}}""",
        """  orders:    {sensor: landing, key: "orders/at={at}/_SUCCESS"}
  inventory: {sensor: landing, key: "inventory/at={at}/_SUCCESS"}""",
    )
    due = datetime.now(UTC) + timedelta(seconds=15)  # start, land, commit and stop before it
    p.start()
    p.land(f"orders/at={stamp(due)}/_SUCCESS")
    wait_until(lambda: committed(p, 1))
    assert p.stop() == 0
    assert of_type(p, "eventflow.deadline.missed") == []
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.5)

    p.start()
    [missed] = wait_until(lambda: of_type(p, "eventflow.deadline.missed"))
    assert missed["data"]["missing"] == ["inventory"]
    assert [a["dataset"] for a in missed["data"]["arrived"]] == ["orders"]
    assert missed["data"]["deadline"].startswith(due.strftime("%Y-%m-%dT%H:%M:%S"))
    assert p.stop() == 0
    p.start()
    wait_until(lambda: started(p) == 3)
    time.sleep(0.5)
    assert p.stop() == 0
    assert len(of_type(p, "eventflow.deadline.missed")) == 1
    why = p.cli_json("why", "report", f"at={stamp(due)}")
    assert why["status"] == "missed"
    assert why["deadline"]["state"] == "missed"


def test_expected_partitions_miss_deadlines_without_any_input(tmp_path: Path) -> None:
    """`expect: {every: ...}` opens a partition per period, so a period with no input at all
    misses its deadline; the periods that began while eventflow was stopped are opened at
    start, each once, none skipped."""
    p = project(
        tmp_path,
        f"""  report:
    when: {{all: [orders], by: [at]}}
    expect: {{every: 2s, partition: {{at: "%Y%m%dT%H%M%S"}}}}
    expect_by: "{{at}}Z + 1s"
    run: {{command: [{PY}, count.py, runs.log]}}""",
        """  orders: {sensor: landing, key: "orders/at={at}/_SUCCESS"}""",
    )
    p.start()
    wait_until(lambda: len(of_type(p, "eventflow.deadline.missed")) >= 2, timeout=20)
    assert p.stop() == 0
    time.sleep(5)
    p.start()
    wait_until(lambda: len(of_type(p, "eventflow.deadline.missed")) >= 6, timeout=20)
    assert p.stop() == 0
    missed = [e["data"]["partition"]["at"] for e in of_type(p, "eventflow.deadline.missed")]
    assert len(missed) == len(set(missed))
    seconds = sorted(datetime.strptime(at, "%Y%m%dT%H%M%S") for at in missed)
    assert all(b - a == timedelta(seconds=2) for a, b in pairwise(seconds))


def test_batch_of_100_files_fires_once_across_a_sigkill(tmp_path: Path) -> None:
    """A batch half full when eventflow is SIGKILLed is kept: 100 files give one run with
    all 100 events in EVENTFLOW_EVENTS."""
    p = project(
        tmp_path,
        f"""  load:
    when: {{any: [files]}}
    batch: {{max_events: 100, max_wait: 1h}}
    run: {{command: [{PY}, count.py, runs.log]}}""",
        """  files: {sensor: landing, key: "in/{name}.csv"}""",
    )
    p.start()
    for i in range(50):
        p.land(f"in/f{i:03d}.csv")
    wait_until(lambda: committed(p, 50))
    p.kill()
    p.start()
    for i in range(50, 100):
        p.land(f"in/f{i:03d}.csv")
    wait_until(lambda: lines(tmp_path / "runs.log"))
    time.sleep(1)
    assert p.stop() == 0
    [run] = [json.loads(line)["events"] for line in lines(tmp_path / "runs.log")]
    assert sorted(pos["path"] for pos in run) == [f"in/f{i:03d}.csv" for i in range(100)]
    assert len(p.runs()) == 1


def test_rewritten_marker_within_the_quiet_period_fires_once(tmp_path: Path) -> None:
    """A `_SUCCESS` marker rewritten within `quiet` fires one run, with the last write."""
    p = project(
        tmp_path,
        f"""  publish_day:
    when: {{any: [commits], by: [dt]}}
    quiet: 4s
    run: {{command: [{PY}, count.py, runs.log]}}""",
        """  commits: {sensor: landing, key: "t/dt={dt}/_SUCCESS"}""",
    )
    p.start()
    p.land("t/dt=2024-01-01/_SUCCESS", "first\n")
    wait_until(lambda: committed(p, 1))
    p.land("t/dt=2024-01-01/_SUCCESS", "second, longer\n")
    wait_until(lambda: committed(p, 2))
    wait_until(lambda: lines(tmp_path / "runs.log"), timeout=15)
    time.sleep(3)
    assert p.stop() == 0
    [run] = [json.loads(line)["events"] for line in lines(tmp_path / "runs.log")]
    assert [pos["size"] for pos in run] == [len("second, longer\n")]


def test_daily_rollup_fires_when_the_24th_hour_arrives(tmp_path: Path) -> None:
    """An hourly dataset feeding a daily rule (`count: 24`) fires the day at its 24th hour."""
    p = project(
        tmp_path,
        f"""  daily:
    when: {{all: [{{dataset: hourly, count: 24}}], by: [dt]}}
    run: {{command: [{PY}, count.py, runs.log]}}""",
        """  hourly: {sensor: landing, key: "h/dt={dt}/hr={hr}/_SUCCESS"}""",
    )
    p.start()
    for hr in range(23):
        p.land(f"h/dt=2024-01-01/hr={hr:02d}/_SUCCESS")
    wait_until(lambda: committed(p, 23))
    assert p.runs() == []
    [partial] = p.status()["partial_matches"]
    assert partial["missing"] == ["hourly"]
    assert partial["counts"] == {"hourly": 23}
    assert (
        "hourly: 23 of 24 partitions" in p.cli("why", str(p.file), "daily", "dt=2024-01-01").stdout
    )
    p.land("h/dt=2024-01-01/hr=23/_SUCCESS")
    wait_until(lambda: lines(tmp_path / "runs.log"))
    assert p.stop() == 0
    [run] = [json.loads(line)["events"] for line in lines(tmp_path / "runs.log")]
    assert len(run) == 24
    assert len(p.runs()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("point", ["engine.before_commit:3", "engine.after_commit:3"])
def test_batches_and_deadlines_survive_sigkills_at_commit_points(
    tmp_path: Path, point: str
) -> None:
    """Killed before or after a commit while batches fill and a deadline falls due: every
    file is in exactly one batch of ten, and the deadline is reported once (by event id)."""
    due = datetime.now(UTC) + timedelta(seconds=4)
    p = project(
        tmp_path,
        f"""  load:
    when: {{any: [files]}}
    batch: {{max_events: 10, max_wait: 1h}}
    run: {{command: [{PY}, count.py, runs.log]}}
  report:
    when: {{all: [orders, inventory], by: [at]}}
    expect_by: "{{at}}"
    run: {{command: [{PY}, count.py, reports.log]}}""",
        """  files: {sensor: landing, key: "in/{name}.csv"}
  orders: {sensor: landing, key: "orders/at={at}/_SUCCESS"}
  inventory: {sensor: landing, key: "inventory/at={at}/_SUCCESS"}""",
    )
    p.land(f"orders/at={stamp(due)}/_SUCCESS")
    for i in range(40):
        p.land(f"in/f{i:03d}.csv")
    p.start(crash_at=point)
    for i in range(40, 60):
        p.land(f"in/f{i:03d}.csv")
        time.sleep(0.1)  # commits of their own, one of which is killed
    assert p.wait_exit(timeout=60) == -9, "the crash point was not reached"
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
    p.start()
    for i in range(60, 100):
        p.land(f"in/f{i:03d}.csv")
    wait_until(lambda: len(lines(tmp_path / "runs.log")) >= 10, timeout=60)
    wait_until(lambda: of_type(p, "eventflow.deadline.missed"), timeout=30)
    time.sleep(1)
    assert p.stop() == 0
    # A run in flight at the kill runs again with the same run id (at-least-once).
    runs = {r["run"]: r["events"] for r in map(json.loads, lines(tmp_path / "runs.log"))}
    batches = list(runs.values())
    paths = [pos["path"] for batch in batches for pos in batch]
    assert sorted(paths) == [f"in/f{i:03d}.csv" for i in range(100)]
    assert [len(b) for b in batches] == [10] * 10
    assert len({e["id"] for e in of_type(p, "eventflow.deadline.missed")}) == 1
