"""Crash safety, tested by crashing: SIGKILL at named points and at random moments.

After each crash the process is started again; then every partition must have fired exactly
once (one run per key; a task may run again with the same run id), no completion event may
be missing, and files that landed while the process was down are picked up once.
"""

from __future__ import annotations

import collections
import random
import sys
import threading
import time
from pathlib import Path

import pytest

from eventflow.crashpoints import POINTS
from tests.acceptance.harness import Project, lines, wait_until

PY = sys.executable

PIPELINE = """
name: crashy
sensors:
  landing: {type: directory, path: ./landing, ready: {stable_for: 200ms}, poll_interval: 2s}
datasets:
  a: {sensor: landing, key: "a/{p}.csv"}
  b: {sensor: landing, key: "b/{p}.csv"}
rules:
  join:
    when: {all: [a, b], by: [p]}
    on_update: ignore
    run:
      command: [sh, -c, "echo {run_id} $EVENTFLOW_VAR_P $EVENTFLOW_ATTEMPT >> runs.log; {sleep}"]
publish:
  - {type: file, path: out/events.jsonl}
engine: {poll_interval: 100ms, max_runs: 8}
"""


def project(root: Path, sleep: float = 0.0) -> Project:
    text = PIPELINE.replace("{sleep}", f"sleep {sleep}" if sleep else "true")
    return Project(root, text)


def settled(p: Project, partitions: int) -> bool:
    """All runs succeeded and every completion event is published."""
    try:
        status = p.status()
    except AssertionError:
        return False
    counts = status["counts"]
    return (
        counts["runs_succeeded"] == partitions
        and counts["outbox"] == 0
        and counts["runs_pending"] == 0
        and counts["runs_running"] == 0
    )


def check_exactly_once(p: Project, partitions: set[str]) -> None:
    runs = p.runs()
    by_partition = collections.Counter(r["partition"]["p"] for r in runs)
    assert set(by_partition) == partitions, "a partition did not fire"
    assert max(by_partition.values()) == 1, "a partition fired twice"
    assert all(r["status"] == "succeeded" and r["generation"] == 1 for r in runs)
    run_ids = {r["partition"]["p"]: r["run_id"] for r in runs}
    # A task may run again after a crash, but only with the same run id.
    for line in lines(p.root / "runs.log"):
        run_id, part, _attempt = line.split()
        assert run_ids[part] == run_id
    assert {line.split()[1] for line in lines(p.root / "runs.log")} == partitions
    # No completion event is missing (duplicates are allowed: consumers dedupe by id).
    published = p.published()
    succeeded = {e["data"]["run_id"] for e in published if e["type"] == "eventflow.run.succeeded"}
    assert succeeded == set(run_ids.values())
    started = {e["data"]["run_id"] for e in published if e["type"] == "eventflow.run.started"}
    assert started == set(run_ids.values())
    available = {
        (e["data"]["dataset"], e["data"]["partition"]["p"])
        for e in published
        if e["type"] == "eventflow.dataset.available"
    }
    assert available == {(d, x) for d in "ab" for x in partitions}
    by_id: dict[str, dict] = {}
    for e in published:
        assert by_id.setdefault(e["id"], e)["type"] == e["type"]


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_named_point_loses_and_duplicates_nothing(tmp_path: Path, point: str) -> None:
    """Killed at a named crash point and restarted, each partition fires exactly once and
    every completion event is published."""
    p = project(tmp_path)
    partitions = {f"p{i}" for i in range(5)}
    for x in sorted(partitions):
        p.land(f"a/{x}.csv")
    p.start(crash_at=point)
    for x in sorted(partitions):
        p.land(f"b/{x}.csv")
    assert p.wait_exit(timeout=60) == -9, "the crash point was not reached"
    p.land("a/late.csv")  # lands while eventflow is down
    p.land("b/late.csv")
    partitions.add("late")
    p.start()
    try:
        wait_until(lambda: settled(p, len(partitions)), timeout=60, interval=0.3)
    finally:
        assert p.stop() == 0
    check_exactly_once(p, partitions)


def test_sigkill_while_task_runs_reruns_it_with_the_same_run_id(tmp_path: Path) -> None:
    """Killed while a task runs, the run is retried after restart with the same run id and
    the next attempt number, and the partition still fires once."""
    p = project(tmp_path, sleep=2)
    p.land("a/x.csv")
    p.land("b/x.csv")
    p.start()
    wait_until(lambda: lines(tmp_path / "runs.log"), timeout=30)
    p.kill()
    p.start()
    try:
        wait_until(lambda: settled(p, 1), timeout=60, interval=0.3)
    finally:
        assert p.stop() == 0
    [first, second] = lines(tmp_path / "runs.log")
    assert first.split()[:2] == second.split()[:2]
    assert (first.split()[2], second.split()[2]) == ("1", "2")
    check_exactly_once(p, {"x"})


@pytest.mark.slow
def test_random_sigkills_while_2000_files_land(tmp_path: Path) -> None:
    """SIGKILL at random moments while 2,000 files land (1,000 two-file joins): after the
    last restart every partition fired exactly once and no completion event is missing."""
    rng = random.Random(20261121)
    p = project(tmp_path)
    names = [f"{d}/p{i:04d}.csv" for i in range(1000) for d in "ab"]
    rng.shuffle(names)
    partitions = {f"p{i:04d}" for i in range(1000)}
    done = threading.Event()

    def land_all() -> None:
        for i, name in enumerate(names):
            p.land(name)
            if i % 25 == 0:
                time.sleep(0.1)  # about 8 s of landing
        done.set()

    lander = threading.Thread(target=land_all, daemon=True)
    lander.start()
    kills = 0
    while not done.is_set() or kills < 8:
        p.start()
        time.sleep(rng.uniform(0.4, 1.5))
        p.kill()
        kills += 1
        if rng.random() < 0.3:
            time.sleep(rng.uniform(0.1, 0.5))  # files land while eventflow is down
    lander.join()
    p.start()
    try:
        wait_until(lambda: settled(p, len(partitions)), timeout=180, interval=0.5)
    finally:
        assert p.stop() == 0
    check_exactly_once(p, partitions)
    assert kills >= 8
