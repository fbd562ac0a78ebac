"""The real CLI end to end: files land, joins fire, runs and completion events follow."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.acceptance.harness import Project, lines, wait_until

PY = sys.executable

# Small task programs the pipelines below run (written next to each pipeline).
TASKS = {
    "record.py": (
        "import os, sys\n"
        "env = [os.environ[k] for k in ('EVENTFLOW_RUN_ID', 'EVENTFLOW_ATTEMPT',"
        " 'EVENTFLOW_PARTITION')]\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    f.write(' '.join(sys.argv[2:] + env) + '\\n')\n"
    ),
    "flaky.py": (
        "import os, sys\n"
        "print('hello from', os.environ['EVENTFLOW_RUN_ID'])\n"
        "sys.exit(0 if os.path.exists('fixed') else 3)\n"
    ),
    "slow.py": (
        "import time\n"
        "open('started', 'w').close()\n"
        "time.sleep(1.5)\n"
        "open('finished', 'w').close()\n"
    ),
}


def project(root: Path, pipeline: str) -> Project:
    for name, code in TASKS.items():
        (root / name).write_text(code)
    return Project(root, pipeline)


JOIN = f"""
name: e2e
sensors:
  landing: {{type: directory, path: ./landing, ready: {{stable_for: 300ms}}}}
datasets:
  orders:    {{sensor: landing, key: "orders/dt={{dt}}/_SUCCESS"}}
  inventory: {{sensor: landing, key: "inventory/dt={{dt}}/inventory.csv"}}
rules:
  report:
    when: {{all: [orders, inventory], by: [dt], within: 1500ms}}
    run:
      command: [{PY}, record.py, runs.log, "--date={{dt}}", "{{run_id}}"]
    produces: report
  announce:
    when: {{any: [report], by: [dt]}}
    run:
      command: [{PY}, record.py, announce.log]
publish:
  - {{type: file, path: out/events.jsonl}}
engine: {{poll_interval: 100ms}}
"""


def test_join_fires_once_per_partition_with_the_right_arguments(tmp_path: Path) -> None:
    """A two-dataset join fires once per partition, only when both inputs are there, and the
    task gets the partition values, run id and environment."""
    p = project(tmp_path, JOIN)
    p.start()
    try:
        p.land("orders/dt=2024-01-01/_SUCCESS")
        p.land("orders/dt=2024-01-02/_SUCCESS")
        p.land("inventory/dt=2024-01-01/inventory.csv")
        got = wait_until(lambda: lines(tmp_path / "runs.log"))
        [line] = got
        args = line.split()
        assert args[0] == "--date=2024-01-01"
        assert args[1] == args[2]  # {run_id} in argv equals EVENTFLOW_RUN_ID
        assert args[3] == "1"  # EVENTFLOW_ATTEMPT
        assert json.loads(args[4]) == {"dt": "2024-01-01"}
        # The chained rule runs on the produced dataset.
        wait_until(lambda: lines(tmp_path / "announce.log"))
        runs = wait_until(
            lambda: [r for r in p.runs() if r["status"] == "succeeded"][1:] and p.runs()
        )
        assert sorted((r["rule"], r["partition"]["dt"]) for r in runs) == [
            ("announce", "2024-01-01"),
            ("report", "2024-01-01"),
        ]
        for r in runs:
            assert {"run_id", "rule", "partition", "status", "attempt"} <= set(r)
            assert r["attempt"] == 1
    finally:
        assert p.stop() == 0
    assert len(lines(tmp_path / "runs.log")) == 1


def test_partial_match_expires_and_is_published_and_shown(tmp_path: Path) -> None:
    """A join missing an input past `within` expires: the expiry is published, `status`
    shows it, and `why` names the missing input with the arrived one's source position."""
    p = project(tmp_path, JOIN)
    p.start()
    try:
        p.land("orders/dt=2024-02-01/_SUCCESS")
        expired = wait_until(
            lambda: [e for e in p.published() if e["type"] == "eventflow.match.expired"], timeout=15
        )
        assert expired[0]["data"]["missing"] == ["inventory"]
        assert expired[0]["data"]["partition"] == {"dt": "2024-02-01"}
        assert expired[0]["subject"] == "report/dt=2024-02-01"
        status = p.status()
        [partial] = status["partial_matches"]
        assert partial["status"] == "expired"
        assert partial["missing"] == ["inventory"]
        why = p.cli("why", str(p.file), "report", "dt=2024-02-01").stdout
        assert "inventory" in why
        assert "missing" in why
        assert "orders/dt=2024-02-01/_SUCCESS" in why  # the source position of what arrived
        report = p.cli_json("why", "report", "dt=2024-02-01")
        assert report["missing"] == ["inventory"]
    finally:
        assert p.stop() == 0


def test_completion_events_are_cloudevents(tmp_path: Path) -> None:
    """Completion events are CloudEvents 1.0 JSON lines with stable ids, subjects and data."""
    p = project(tmp_path, JOIN)
    p.start()
    try:
        p.land("orders/dt=2024-03-01/_SUCCESS")
        p.land("inventory/dt=2024-03-01/inventory.csv")
        wait_until(
            lambda: [
                e
                for e in p.published()
                if e["type"] == "eventflow.run.succeeded" and e["data"]["rule"] == "announce"
            ]
        )
    finally:
        assert p.stop() == 0
    events = p.published()
    types = {e["type"] for e in events}
    assert {
        "eventflow.dataset.available",
        "eventflow.run.started",
        "eventflow.run.succeeded",
    } <= types
    for e in events:
        assert e["specversion"] == "1.0"
        assert e["source"].startswith("/eventflow/e2e/")
        assert e["id"]
        assert e["time"]
        assert e["subject"]
    [succeeded] = [
        e
        for e in events
        if e["type"] == "eventflow.run.succeeded" and e["data"]["rule"] == "report"
    ]
    data = succeeded["data"]
    assert data["partition"] == {"dt": "2024-03-01"}
    assert data["attempt"] == 1
    assert data["duration"] >= 0
    positions = sorted(i["position"]["path"] for i in data["inputs"])
    assert positions == ["inventory/dt=2024-03-01/inventory.csv", "orders/dt=2024-03-01/_SUCCESS"]
    assert len({e["id"] for e in events}) == len(events)


def test_files_landed_while_stopped_are_picked_up_once(tmp_path: Path) -> None:
    """Files that land while eventflow is down fire once at the next start, and a restart
    after that fires nothing again."""
    p = project(tmp_path, JOIN)
    p.land("orders/dt=2024-04-01/_SUCCESS")
    p.land("inventory/dt=2024-04-01/inventory.csv")
    p.start()
    wait_until(lambda: lines(tmp_path / "announce.log"))
    assert p.stop() == 0
    p.start()
    try:
        p.land("orders/dt=2024-04-02/_SUCCESS")
        p.land("inventory/dt=2024-04-02/inventory.csv")
        wait_until(lambda: len(lines(tmp_path / "announce.log")) == 2)
    finally:
        assert p.stop() == 0
    assert sorted(json.loads(x.split()[4])["dt"] for x in lines(tmp_path / "runs.log")) == [
        "2024-04-01",
        "2024-04-02",
    ]


def test_updated_input_runs_again_as_a_new_generation(tmp_path: Path) -> None:
    """A rewritten marker of a fired partition (late data) runs the rule again, generation 2."""
    p = project(tmp_path, JOIN)
    p.start()
    try:
        p.land("orders/dt=2024-05-01/_SUCCESS")
        p.land("inventory/dt=2024-05-01/inventory.csv")
        wait_until(lambda: len(lines(tmp_path / "runs.log")) == 1)
        p.land("orders/dt=2024-05-01/_SUCCESS", "rewritten\n")
        wait_until(lambda: len(lines(tmp_path / "runs.log")) == 2)
        runs = [r for r in p.runs() if r["rule"] == "report"]
        assert sorted(r["generation"] for r in runs) == [1, 2]
    finally:
        assert p.stop() == 0


def test_emit_and_retry(tmp_path: Path) -> None:
    """`emit` announces a partition by hand; a failed run is run again by `retry` with the
    same run id, and `runs RUN_ID` shows its captured output."""
    flaky = f"""
name: flaky
sensors:
  landing: {{type: directory, path: ./landing}}
datasets:
  ready: {{sensor: landing, key: "ready/{{dt}}"}}
rules:
  job:
    when: {{any: [ready], by: [dt]}}
    run:
      command: [{PY}, flaky.py]
      retries: 0
publish:
  - {{type: file, path: out/events.jsonl}}
engine: {{poll_interval: 100ms}}
"""
    p = project(tmp_path, flaky)
    p.start()
    try:
        p.cli("emit", str(p.file), "ready", "dt=2024-06-01")
        [failed] = wait_until(lambda: [r for r in p.runs() if r["status"] == "failed"])
        assert "exit code 3" in failed["error"]
        shown = p.cli("runs", str(p.file), failed["run_id"]).stdout
        assert f"hello from {failed['run_id']}" in shown
        assert any(e["type"] == "eventflow.run.failed" for e in p.published())
        (tmp_path / "fixed").write_text("")
        p.cli("retry", str(p.file), failed["run_id"])
        [ok] = wait_until(lambda: [r for r in p.runs() if r["status"] == "succeeded"])
        assert ok["run_id"] == failed["run_id"]
        assert ok["attempt"] == 2
    finally:
        assert p.stop() == 0


def test_sigterm_lets_a_running_task_finish(tmp_path: Path) -> None:
    """SIGTERM drains: the running task finishes, its success is recorded, exit code 0."""
    slow = f"""
sensors:
  landing: {{type: directory, path: ./landing}}
datasets:
  ready: {{sensor: landing, key: "ready/{{dt}}"}}
rules:
  job:
    when: {{any: [ready], by: [dt]}}
    run:
      command: [{PY}, slow.py]
engine: {{poll_interval: 100ms}}
"""
    p = project(tmp_path, slow)
    p.start()
    p.cli("emit", str(p.file), "ready", "dt=x")
    wait_until(lambda: (tmp_path / "started").exists())
    assert p.stop() == 0
    assert (tmp_path / "finished").exists()
    [run] = p.runs()
    assert run["status"] == "succeeded"
