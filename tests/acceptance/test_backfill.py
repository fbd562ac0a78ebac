"""``eventflow backfill`` through the real CLI: missing partitions run once, within limits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.acceptance.harness import EVENTFLOW, Project, lines, wait_until

PY = sys.executable

# Records its partition, and how many runs were executing at once (via marker files).
TASK = """
import os, sys, time
dt = sys.argv[1]
os.makedirs("running", exist_ok=True)
open(f"running/{dt}", "w").close()
now = len(os.listdir("running"))
time.sleep(0.3)
os.remove(f"running/{dt}")
with open("runs.log", "a") as f:
    f.write(f"{dt} {now}\\n")
"""

PIPELINE = f"""
name: backfill
sensors:
  landing: {{type: directory, path: ./landing, ready: {{stable_for: 200ms}}}}
datasets:
  orders: {{sensor: landing, key: "orders/dt={{dt}}/_SUCCESS"}}
  customers: {{sensor: landing, key: "customers/dt={{dt}}/part.csv"}}
rules:
  daily:
    when: {{all: [orders, customers], by: [dt]}}
    run:
      command: [{PY}, task.py, "{{dt}}"]
"""

MAY = [f"2024-05-{d:02d}" for d in range(1, 31)]


def land_day(p: Project, dt: str) -> None:
    p.land(f"customers/dt={dt}/part.csv")
    p.land(f"orders/dt={dt}/_SUCCESS")


def ran(p: Project) -> Counter[str]:
    return Counter(line.split()[0] for line in lines(p.root / "runs.log"))


def backfill(p: Project, *args: str) -> dict[str, list[dict[str, object]]]:
    return p.cli_json("backfill", "daily", "--from", "2024-05-01", "--to", "dt=2024-05-30", *args)


def actions(report: dict[str, list[dict[str, object]]]) -> Counter[str]:
    return Counter(str(row["action"]) for row in report["partitions"])


def test_backfill_runs_each_missing_partition_once_within_the_concurrency_limit(
    tmp_path: Path,
) -> None:
    """30 days: the 5 that ran live are skipped, the 25 others run once each, at most 3 at a
    time; a second backfill runs nothing, and the live pipeline does not run them again."""
    (tmp_path / "task.py").write_text(TASK)
    p = Project(tmp_path, PIPELINE)
    p.start()
    for dt in MAY[:5]:
        land_day(p, dt)
    wait_until(lambda: len(ran(p)) == 5)
    assert p.stop() == 0
    for dt in MAY[5:]:  # landed while eventflow was stopped
        land_day(p, dt)
    p.land("orders/dt=2024-06-01/_SUCCESS")  # out of the range
    p.land("customers/dt=2024-06-01/part.csv")
    p.land("orders/dt=2024-04-30/_SUCCESS")  # in no range: its customers never came

    dry = backfill(p, "--dry-run")
    assert actions(dry) == {"run": 25, "skip": 5}
    assert ran(p) == Counter(MAY[:5])  # a dry run changes nothing
    assert len(p.runs()) == 5

    report = backfill(p, "--concurrency", "3")
    assert actions(report) == {"run": 25, "skip": 5}
    assert {row["status"] for row in report["partitions"] if row["action"] == "run"} == {
        "succeeded"
    }
    assert ran(p) == Counter(MAY)  # every day exactly once
    at_once = [int(line.split()[1]) for line in lines(tmp_path / "runs.log")[5:]]
    assert 2 <= max(at_once) <= 3

    assert actions(backfill(p)) == {"skip": 30}

    p.start()  # the sensor now sees the files landed while stopped: only June fires
    wait_until(lambda: "2024-06-01" in ran(p))
    assert p.stop() == 0
    assert ran(p) == Counter([*MAY, "2024-06-01"])


def test_backfill_reports_incomplete_partitions_and_forces_a_rerun(tmp_path: Path) -> None:
    """A day missing an input is reported, not run; --force runs a succeeded day again as a
    new generation, once."""
    (tmp_path / "task.py").write_text(TASK)
    p = Project(tmp_path, PIPELINE)
    land_day(p, "2024-05-01")
    p.land("orders/dt=2024-05-02/_SUCCESS")
    report = backfill(p)
    rows = {row["partition"]["dt"]: row for row in report["partitions"]}  # type: ignore[index]
    assert rows["2024-05-01"]["status"] == "succeeded"
    assert rows["2024-05-02"]["action"] == "incomplete"
    assert rows["2024-05-02"]["reason"] == "missing customers"

    forced = p.cli_json(
        "backfill", "daily", "--from", "2024-05-01", "--to", "2024-05-01", "--force"
    )
    assert [(r["action"], r["reason"], r["generation"]) for r in forced["partitions"]] == [
        ("run", "forced", 2)
    ]
    assert ran(p) == Counter({"2024-05-01": 2})
    assert (
        "no rule 'nope'"
        in p.cli("backfill", str(p.file), "nope", "--from", "a", "--to", "b", check=False).stderr
    )


def test_a_backfill_killed_mid_way_resumes_without_firing_twice(tmp_path: Path) -> None:
    """SIGKILL after a task finished but before its result was recorded: the next backfill
    resumes the same runs (same run ids, no new generation) and every day succeeds; only
    runs that were in flight ran twice."""
    (tmp_path / "task.py").write_text(TASK)
    p = Project(tmp_path, PIPELINE)
    days = MAY[:8]
    for dt in days:
        land_day(p, dt)
    args = ["backfill", str(p.file), "daily", "--from", days[0], "--to", days[-1]]
    killed = subprocess.run(
        [*EVENTFLOW, *args, "--concurrency", "2"],
        cwd=tmp_path,
        env={**os.environ, "EVENTFLOW_CRASH_AT": "dispatcher.after_task:3"},
        capture_output=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL
    first = {r["run_id"] for r in p.runs()}
    assert len(first) == 8  # every run was created before any executed

    report = p.cli_json("backfill", "daily", "--from", days[0], "--to", days[-1])
    assert {row["action"] for row in report["partitions"]} <= {"resume", "skip"}
    runs = p.runs()
    assert {r["run_id"] for r in runs} == first
    assert {r["status"] for r in runs} == {"succeeded"}
    counts = ran(p)
    assert set(counts) == set(days)
    assert sum(counts.values()) <= len(days) + 2  # at most the runs in flight ran twice
