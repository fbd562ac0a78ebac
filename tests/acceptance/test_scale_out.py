"""Two ``eventflow run`` workers on one PostgreSQL store: the directory sensor runs on the
worker holding its lease; SIGKILL that worker and the other takes the sensor, the outbox and
the killed worker's running runs over. Nothing is lost and nothing fires twice."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from tests.acceptance.harness import Project, lines, wait_until

PIPELINE = """
name: shared
state: {dsn}
sensors:
  landing: {{type: directory, path: {landing}, ready: {{stable_for: 200ms}}, poll_interval: 1s}}
datasets:
  a: {{sensor: landing, key: "a/{{p}}.csv"}}
  b: {{sensor: landing, key: "b/{{p}}.csv"}}
rules:
  join:
    when: {{all: [a, b], by: [p]}}
    on_update: ignore
    run:
      command:
        - sh
        - -c
        - "echo {{run_id}} $EVENTFLOW_VAR_P $EVENTFLOW_ATTEMPT >> {shared}/runs.log; sleep 0.3"
publish:
  - {{type: file, path: {shared}/events.jsonl}}
engine: {{poll_interval: 100ms, max_runs: 4}}
"""


def worker(root: Path, shared: Path, dsn: str) -> Project:
    root.mkdir()
    landing = shared / "landing"
    sep = "&" if "?" in dsn else "?"  # an external server's DSN may have options
    text = PIPELINE.format(dsn=f"{dsn}{sep}lease=3", landing=landing, shared=shared)
    project = Project(root, text)
    project.landing = landing
    return project


def holds_sensor(p: Project) -> bool:
    return any(
        e.get("event") == "lease_acquired" and e.get("lease") == "sensor:shared:landing"
        for e in p.log_events()
    )


def land(p: Project, parts: range) -> None:
    for i in parts:
        p.land(f"a/{i}.csv")
        p.land(f"b/{i}.csv")


def settled(p: Project, n: int) -> dict[str, Any] | None:
    try:
        counts = p.status()["counts"]
    except AssertionError:
        return None
    done = counts["runs_succeeded"] == n and counts["outbox"] == 0 and counts["runs_running"] == 0
    return counts if done else None


def test_killing_the_lease_holder_hands_everything_to_the_other_worker(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Worker A holds the directory sensor; B waits. Files land, A is SIGKILLed mid-work;
    B takes over the sensor, the outbox and A's running runs (after A's lease expires):
    every partition fires exactly once, every run and completion event is there."""
    shared = tmp_path / "shared"
    (shared / "landing").mkdir(parents=True)
    a = worker(tmp_path / "a", shared, postgres_dsn)
    b = worker(tmp_path / "b", shared, postgres_dsn)
    a.start()
    wait_until(lambda: holds_sensor(a), timeout=30)
    b.start()
    wait_until(lambda: any(e.get("event") == "pipeline_started" for e in b.log_events()))
    assert not holds_sensor(b)
    # B says what it waits for; `status` (a third process) shows both workers, A holding
    # the lease, the sensor connected on A and on standby on B.
    lease = "sensor:shared:landing"
    wait_until(lambda: any(e.get("event") == "sensor_waiting" for e in b.log_events()))
    [waiting] = [e for e in b.log_events() if e.get("event") == "sensor_waiting"]
    assert waiting["waiting_for"] == "lease"
    assert waiting["lease"] == lease

    def both_live() -> dict[str, Any] | None:
        status = b.status()
        live = [w for w in status["workers"] if w["state"] == "live"]
        settled = all(s["state"] != "starting" for s in status["sensors"])  # reported once up
        return status if len(live) == 2 and len(status["sensors"]) == 2 and settled else None

    status = wait_until(both_live, timeout=30)
    by_pid = {w["pid"]: w for w in status["workers"]}
    assert a.proc is not None
    assert b.proc is not None
    assert by_pid[a.proc.pid]["leases"] == [lease]
    assert by_pid[b.proc.pid]["leases"] == []
    states = {s["worker"]: s["state"] for s in status["sensors"]}
    assert states == {
        by_pid[a.proc.pid]["worker"]: "connected",
        by_pid[b.proc.pid]["worker"]: "standby",
    }

    land(a, range(0, 12))
    wait_until(lambda: len(lines(shared / "runs.log")) >= 3, timeout=30)
    a.kill()  # mid-work: runs in flight, files not yet committed
    land(b, range(12, 20))
    wait_until(lambda: holds_sensor(b), timeout=30)
    [took] = [e for e in b.log_events() if e.get("event") == "sensor_waited"]
    assert took["waiting_for"] == "lease"
    assert took["seconds"] > 0
    print(f"worker B waited {took['seconds']} s for the sensor lease")
    counts = wait_until(lambda: settled(b, 20), timeout=60)
    assert counts["runs_pending"] == 0
    assert b.stop() == 0

    runs = b.runs()
    per_partition = collections.Counter(r["partition"]["p"] for r in runs)
    assert set(per_partition) == {str(i) for i in range(20)}, "a partition did not fire"
    assert max(per_partition.values()) == 1, "a partition fired twice"
    assert all(r["status"] == "succeeded" for r in runs)
    run_ids = {r["partition"]["p"]: r["run_id"] for r in runs}
    for line in lines(shared / "runs.log"):  # a run A was running may run again, same id
        run_id, part, _attempt = line.split()
        assert run_ids[part] == run_id
    published = [e for e in b.published(str(shared / "events.jsonl"))]
    succeeded = {e["data"]["run_id"] for e in published if e["type"] == "eventflow.run.succeeded"}
    assert succeeded == set(run_ids.values())
