"""Two ``eventflow run`` workers on one PostgreSQL store share the data-quality checks:
each gate's checks are claimed by one worker at a time, so they run once; when a worker is
SIGKILLed mid-check, the other takes its claims over once their lease expires."""

from __future__ import annotations

import collections
from pathlib import Path

from tests.acceptance.harness import Project, lines, wait_until

PIPELINE = """
name: sharedchecks
state: {dsn}
sensors:
  landing: {{type: directory, path: {landing}, ready: {{stable_for: 200ms}}, poll_interval: 200ms}}
datasets:
  raw: {{sensor: landing, key: "raw/{{p}}.csv"}}
rules:
  load:
    when: {{any: [raw], by: [p]}}
    run:
      command: [sh, -c, "echo $EVENTFLOW_RUN_ID >> {shared}/load.log"]
    produces: loaded
    checks:
      - name: slow
        command:
          - sh
          - -c
          - "echo $EVENTFLOW_RUN_ID $PPID start >> {shared}/checks.log;
             if [ $EVENTFLOW_VAR_P = 0 ]; then sleep {slowest}; else sleep {sleep}; fi;
             echo $EVENTFLOW_RUN_ID $PPID done >> {shared}/checks.log"
        timeout: 60s
  report:
    when: {{any: [loaded], by: [p]}}
    run:
      command: [sh, -c, "echo $EVENTFLOW_RUN_ID $EVENTFLOW_VAR_P >> {shared}/report.log"]
engine: {{poll_interval: 50ms, max_runs: 4}}
"""


def worker(root: Path, shared: Path, dsn: str, sleep: str, slowest: str | None = None) -> Project:
    """A worker with a 3 s lease whose check sleeps ``sleep`` (``slowest`` for p=0)."""
    root.mkdir()
    sep = "&" if "?" in dsn else "?"
    text = PIPELINE.format(
        dsn=f"{dsn}{sep}lease=3",
        landing=shared / "landing",
        shared=shared,
        sleep=sleep,
        slowest=slowest or sleep,
    )
    project = Project(root, text)
    project.landing = shared / "landing"
    return project


def started(p: Project) -> bool:
    return any(e.get("event") == "pipeline_started" for e in p.log_events())


def checks(shared: Path) -> list[tuple[str, str, str]]:
    """``(run_id, worker pid, start | done)`` of each line the check wrote."""
    return [tuple(line.split()) for line in lines(shared / "checks.log")]  # type: ignore[misc]


def test_two_workers_run_each_gates_checks_once(tmp_path: Path, postgres_dsn: str) -> None:
    """Twelve partitions' checks on two workers polling every 50 ms: every check runs
    exactly once (no gate claimed twice; the one that outlasts the 3 s lease keeps its
    claim by renewing it), every partition passes with one evaluation and fires the rule
    downstream once."""
    shared = tmp_path / "shared"
    (shared / "landing").mkdir(parents=True)
    a = worker(tmp_path / "a", shared, postgres_dsn, "0.3", slowest="4.5")
    b = worker(tmp_path / "b", shared, postgres_dsn, "0.3", slowest="4.5")
    a.start()
    b.start()
    wait_until(lambda: started(a) and started(b), timeout=60)
    for i in range(12):
        a.land(f"raw/{i}.csv")
    wait_until(lambda: len(lines(shared / "report.log")) >= 12, timeout=90)
    assert a.stop() == 0
    assert b.stop() == 0

    starts = collections.Counter(run for run, _, what in checks(shared) if what == "start")
    assert len(starts) == 12
    assert set(starts.values()) == {1}, f"a gate's checks ran twice: {starts}"
    pids = {pid for _, pid, _ in checks(shared)}
    assert a.proc is not None
    assert b.proc is not None
    assert pids <= {str(a.proc.pid), str(b.proc.pid)}
    share = collections.Counter(pid for _, pid, what in checks(shared) if what == "done")
    print(f"checks done per worker: {dict(share)}")
    reports = collections.Counter(line.split()[1] for line in lines(shared / "report.log"))
    assert reports == {str(i): 1 for i in range(12)}
    gates = a.cli_json("checks", "list")
    assert len(gates) == 12
    assert {g["status"] for g in gates} == {"passed"}
    assert {g["attempt"] for g in gates} == {1}  # one evaluation each


def test_a_killed_workers_claims_are_taken_over_after_its_lease(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Worker A is SIGKILLed while its checks run: B leaves them alone while A's claims
    hold, then claims and runs them (once each) when they expire; every partition fires
    downstream exactly once."""
    shared = tmp_path / "shared"
    (shared / "landing").mkdir(parents=True)
    a = worker(tmp_path / "a", shared, postgres_dsn, "2")
    a.start()
    wait_until(lambda: started(a), timeout=60)
    for i in range(3):
        a.land(f"raw/{i}.csv")
    assert a.proc is not None
    pid_a = str(a.proc.pid)
    wait_until(lambda: len([c for c in checks(shared) if c[2] == "start"]) == 3, timeout=60)
    a.kill()  # its three checks were running: none wrote `done`
    b = worker(tmp_path / "b", shared, postgres_dsn, "0.2")
    b.start()
    wait_until(lambda: len(lines(shared / "report.log")) >= 3, timeout=90)
    assert b.stop() == 0
    assert b.proc is not None
    pid_b = str(b.proc.pid)

    by_run: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for run, pid, what in checks(shared):
        by_run[run].append((pid, what))
    assert len(by_run) == 3
    for run, seen in by_run.items():
        # started by A (killed before done), then once by B: run again, not skipped
        assert seen[0] == (pid_a, "start"), run
        assert [s for s in seen if s[0] == pid_b] == [(pid_b, "start"), (pid_b, "done")], run
    reports = collections.Counter(line.split()[1] for line in lines(shared / "report.log"))
    assert reports == {"0": 1, "1": 1, "2": 1}
    recovered = [e for e in b.log_events() if e["event"] == "checks_recovered"]
    assert sorted(r for e in recovered for r in e["runs"]) == sorted(by_run)
