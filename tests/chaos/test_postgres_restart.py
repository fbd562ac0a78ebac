"""PostgreSQL crashes (immediate shutdown: every server process exits at once, no
checkpoint) under two ``eventflow run`` workers sharing it, and comes back after longer than
their lease. Nothing is lost, nothing fires twice, the attempt numbers of each run strictly
grow (claims are durable), and the workers say their lease expired."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.harness import Project, lines, wait_until
from tests.services._process import unavailable
from tests.services.postgres import BIN, PostgresProcess, PostgresServer

LEASE = 2
PIPELINE = """
name: pgcrash
state: {dsn}?lease={lease}&reconnect_timeout=120
sensors:
  landing: {{type: directory, path: {landing}, ready: {{stable_for: 200ms}}, poll_interval: 1s}}
datasets:
  part: {{sensor: landing, key: "{{p}}.csv"}}
rules:
  each:
    when: {{any: [part], by: [p]}}
    run:
      command:
        - sh
        - -c
        - "echo {{run_id}} $EVENTFLOW_VAR_P $EVENTFLOW_ATTEMPT >> {shared}/runs.log; sleep 0.2"
      retries: 5
engine: {{poll_interval: 100ms, max_runs: 4}}
"""


@pytest.fixture
def durable_postgres() -> Iterator[PostgresProcess]:
    """A server of this test's own that commits like a production one (the shared test
    server runs with ``synchronous_commit=off``, which a server crash is allowed to lose)."""
    if not (BIN / "postgres").exists():
        unavailable(f"no PostgreSQL server binaries in {BIN}")
    server = PostgresProcess(durable=True)
    server.start()
    try:
        yield server
    finally:
        for project in Project.live:
            project.kill()
        Project.live.clear()
        server.remove()


def worker(root: Path, shared: Path, dsn: str) -> Project:
    root.mkdir()
    text = PIPELINE.format(dsn=dsn, lease=LEASE, landing=shared / "landing", shared=shared)
    project = Project(root, text)
    project.landing = shared / "landing"
    return project


def land(p: Project, parts: range) -> None:
    for i in parts:
        p.land(f"{i}.csv")


def settled(p: Project, n: int) -> dict[str, Any] | None:
    try:
        counts = p.status()["counts"]
    except AssertionError:
        return None
    done = counts["runs_succeeded"] == n and counts["runs_running"] == 0
    return counts if done else None


def logged(p: Project, name: str) -> list[dict[str, Any]]:
    return [e for e in p.log_events() if e.get("event") == name]


def test_a_postgres_crash_under_two_workers_loses_nothing_and_repeats_no_attempt(
    tmp_path: Path, durable_postgres: PostgresProcess
) -> None:
    """Crash the server while both workers claim and run, keep it away for longer than the
    lease while files land, start it again: every partition fires once and succeeds, no run
    executes the same attempt twice, both workers are still running."""
    dsn = PostgresServer(durable_postgres.dsn()).create_database()
    shared = tmp_path / "shared"
    (shared / "landing").mkdir(parents=True)
    a = worker(tmp_path / "a", shared, dsn)
    b = worker(tmp_path / "b", shared, dsn)
    a.start()
    b.start()
    wait_until(lambda: a.started() and b.started(), timeout=60)

    land(a, range(0, 30))
    wait_until(lambda: len(lines(shared / "runs.log")) >= 5, timeout=60)
    durable_postgres.crash()  # runs in flight, claims and results being committed
    land(a, range(30, 40))
    time.sleep(LEASE * 3)  # longer than the lease: both leases expire meanwhile
    durable_postgres.start()
    land(a, range(40, 50))

    wait_until(lambda: settled(a, 50), timeout=120)
    assert a.proc is not None
    assert a.proc.poll() is None, "worker A exited"
    assert b.proc is not None
    assert b.proc.poll() is None, "worker B exited"
    expired = logged(a, "worker_lease_expired") + logged(b, "worker_lease_expired")
    assert expired, "no worker logged that its lease expired during the outage"
    assert a.stop() == 0
    assert b.stop() == 0

    runs = a.runs()
    per_partition = collections.Counter(r["partition"]["p"] for r in runs)
    assert set(per_partition) == {str(i) for i in range(50)}, "a partition did not fire"
    assert max(per_partition.values()) == 1, "a partition fired twice"
    assert {r["status"] for r in runs} == {"succeeded"}
    attempts: dict[str, list[int]] = collections.defaultdict(list)
    run_ids = {r["partition"]["p"]: r["run_id"] for r in runs}
    for line in lines(shared / "runs.log"):
        run_id, part, attempt = line.split()
        assert run_ids[part] == run_id
        attempts[run_id].append(int(attempt))
    repeated = {r: seen for r, seen in attempts.items() if seen != sorted(set(seen))}
    assert not repeated, f"attempt numbers that did not grow: {repeated}"
