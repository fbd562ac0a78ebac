"""``eventflow pause`` and ``resume`` against a running ``eventflow run``: a paused rule takes
its events and holds its fires across a SIGKILL, then fires each partition once; a paused
sensor reads nothing until the resume, and nothing is lost."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tests.acceptance.harness import Project, wait_until

PARTITIONS = 500
"""Two events each: 1,000 events to the paused rule."""

PIPELINE = """
name: pausing
sensors:
  landing: {type: directory, path: ./landing, poll_interval: 100ms}
datasets:
  a: {sensor: landing, key: "a/{p}.csv"}
  b: {sensor: landing, key: "b/{p}.csv"}
rules:
  join:
    when: {all: [a, b], by: [p]}
    run:
      command: [sh, -c, "echo $EVENTFLOW_VAR_P >> fired.txt"]
engine: {poll_interval: 100ms}
"""


def store_rows(p: Project, sql: str) -> list[tuple[object, ...]]:
    """Rows of ``sql`` read straight from the pipeline's SQLite file."""
    conn = sqlite3.connect(p.root / ".eventflow" / "state.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def noticed(p: Project, event: str) -> int:
    return sum(1 for e in p.log_events() if e.get("event") == event)


def test_a_paused_rule_holds_1000_events_across_a_sigkill_and_fires_each_partition_once(
    tmp_path: Path,
) -> None:
    """Paused from the CLI while running, the rule takes 1,000 events (committed, acked, its
    matches advance) and starts no run, through a SIGKILL mid-stream and a restart; `status`
    shows the pause and what is held; after `resume` each of the 500 partitions runs once."""
    p = Project(tmp_path, PIPELINE)
    p.start(crash_at="engine.after_commit:3")
    wait_until(p.started)
    p.cli("pause", str(p.file), "--rule", "join", "--reason", "upstream backfill")
    wait_until(lambda: noticed(p, "pause_noticed") == 1)
    for i in range(PARTITIONS):
        p.land(f"a/{i}.csv")
        p.land(f"b/{i}.csv")
    assert p.wait_exit() == -9, "the crash point did not kill the process"

    p.start()
    status = wait_until(
        lambda: (s := p.status())["counts"]["events"] == 2 * PARTITIONS and s, timeout=90
    )
    held = wait_until(lambda: (s := p.status())["pauses"][0]["held"] == PARTITIONS and s)
    [pause] = held["pauses"]
    assert (pause["kind"], pause["name"], pause["reason"]) == ("rule", "join", "upstream backfill")
    assert pause["by"].startswith("cli:")
    assert held["counts"]["matches_fired"] == PARTITIONS
    assert held["rules"][0]["paused"]["held"] == PARTITIONS
    assert held["counts"]["runs_running"] == held["counts"]["runs_succeeded"] == 0
    assert not (tmp_path / "fired.txt").exists(), "a run of the paused rule started"
    assert status["counts"]["deadletters"] == 0
    why = p.cli_json("why", "join", "p=7")
    assert why["paused"]["by"] == pause["by"]
    assert "paused by cli:" in p.cli("why", str(p.file), "join", "p=7").stdout

    p.cli("resume", str(p.file), "--rule", "join")
    wait_until(lambda: p.status()["counts"]["runs_succeeded"] == PARTITIONS, timeout=180)
    fired = (tmp_path / "fired.txt").read_text().split()
    assert sorted(fired, key=int) == [str(i) for i in range(PARTITIONS)]
    runs = store_rows(p, "SELECT key, status, attempt FROM runs")
    assert len(runs) == PARTITIONS
    assert {(status, attempt) for _, status, attempt in runs} == {("succeeded", 1)}
    assert store_rows(p, "SELECT count(*) FROM pauses") == [(0,)]
    audit = store_rows(p, "SELECT action, changed, actor FROM pause_actions ORDER BY seq")
    assert [(a, c) for a, c, _ in audit] == [("pause", 1), ("resume", 1)]
    assert all(str(actor).startswith("cli:") for _, _, actor in audit)
    assert p.status()["pauses"] == []
    assert p.stop() == 0


def test_a_paused_sensor_reads_nothing_until_resumed_and_loses_nothing(tmp_path: Path) -> None:
    """A sensor paused from the CLI stops within the poll interval: files landed meanwhile
    are not read (no event is committed); after `resume` every one arrives and fires once.
    Pausing twice is idempotent and both are audited."""
    p = Project(tmp_path, PIPELINE)
    p.land("a/0.csv")
    p.land("b/0.csv")
    p.start()
    wait_until(lambda: p.status()["counts"]["runs_succeeded"] == 1)
    p.cli("pause", str(p.file), "--sensor", "landing")
    again = p.cli("pause", str(p.file), "--sensor", "landing")
    assert "already paused" in again.stdout
    wait_until(lambda: noticed(p, "sensor_stopped_paused") == 1)
    sensors = p.status()["pauses"]
    assert [(s["kind"], s["name"], s["held"]) for s in sensors] == [("sensor", "landing", None)]
    for i in range(1, 21):
        p.land(f"a/{i}.csv")
        p.land(f"b/{i}.csv")
    # Ten poll intervals of the sensor and the pause watch: nothing may be read.
    time.sleep(1.0)
    assert p.status()["counts"]["events"] == 2

    p.cli("resume", str(p.file), "--sensor", "landing")
    wait_until(lambda: p.status()["counts"]["runs_succeeded"] == 21)
    assert p.status()["counts"]["events"] == 42
    assert noticed(p, "sensor_started_resumed") == 1
    fired = (tmp_path / "fired.txt").read_text().split()
    assert sorted(fired, key=int) == [str(i) for i in range(21)]
    audit = store_rows(p, "SELECT action, changed FROM pause_actions ORDER BY seq")
    assert audit == [("pause", 1), ("pause", 0), ("resume", 1)]
    assert p.stop() == 0
