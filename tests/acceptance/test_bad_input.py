"""Bad input gets a clear error and loses nothing."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.acceptance.harness import Project, lines, wait_until

PY = sys.executable

BROKEN = """\
sensors:
  landing: {type: directory, path: ./landing}
datasets:
  orders: {sensor: landng, key: "orders/{dt}/_SUCCESS"}
rules:
  report:
    when: {all: [orders], by: [dt], within: 2 hours}
    run: {command: ["true"]}
"""


def test_malformed_config_fails_validate_and_run_with_file_and_line(tmp_path: Path) -> None:
    """`validate` and `run` reject a malformed file with every problem's file:line and a
    hint, exit code 2, and `run` starts nothing."""
    p = Project(tmp_path, BROKEN)
    for command in ("validate", "run"):
        result = p.cli(command, str(p.file), check=False)
        assert result.returncode == 2, result.stderr
        err = result.stderr
        assert f"{p.file}:4: datasets.orders.sensor" in err
        assert "did you mean `landing`" in err
        assert f"{p.file}:7: rules.report.when.within" in err
        assert "not a duration" in err
    assert not (tmp_path / ".eventflow").exists()


def test_half_written_file_does_not_fire_until_it_is_stable(tmp_path: Path) -> None:
    """A file still being written (in place, not renamed) fires only once its size and mtime
    have been stable for `stable_for`, and the task sees the whole file."""
    (tmp_path / "size.py").write_text("import os, sys\nprint(os.path.getsize(sys.argv[1]))\n")
    p = Project(
        tmp_path,
        f"""
sensors:
  landing: {{type: directory, path: ./landing, ready: {{stable_for: 1s}}}}
datasets:
  data: {{sensor: landing, key: "{{name}}.csv"}}
rules:
  load:
    when: {{any: [data], by: [name]}}
    run:
      command: [{PY}, size.py, "landing/{{name}}.csv"]
engine: {{poll_interval: 100ms}}
""",
    )
    p.start()
    try:
        time.sleep(1.0)  # let the watcher start
        with (p.landing / "big.csv").open("w") as f:
            for i in range(10):  # ~3 s of writing, each pause shorter than stable_for
                f.write("a" * 500)
                f.flush()
                last_write = datetime.now(UTC)
                if i < 9:
                    time.sleep(0.3)
        [run] = wait_until(lambda: [r for r in p.runs() if r["status"] == "succeeded"])
        time.sleep(1.5)
        assert len(p.runs()) == 1, "the file fired more than once"
        created = datetime.fromisoformat(run["created_at"])
        assert created >= last_write + timedelta(seconds=0.9), "fired before the file was stable"
        shown = p.cli("runs", str(p.file), run["run_id"]).stdout
        assert "5000" in shown  # the task saw all 5,000 bytes
    finally:
        assert p.stop() == 0


def test_missing_directory_is_a_clear_error_while_other_sensors_go_on(tmp_path: Path) -> None:
    """A sensor whose directory does not exist logs a clear error naming it and is retried,
    while another sensor's files still fire."""
    p = Project(
        tmp_path,
        f"""
sensors:
  good: {{type: directory, path: ./landing}}
  gone: {{type: directory, path: ./does-not-exist}}
datasets:
  a: {{sensor: good, key: "{{x}}.csv"}}
  b: {{sensor: gone, key: "{{x}}.csv"}}
rules:
  ra:
    when: {{any: [a], by: [x]}}
    run: {{command: [{PY}, "-c", "open('ra.log', 'a').write('ok\\\\n')"]}}
  rb:
    when: {{any: [b], by: [x]}}
    run: {{command: ["true"]}}
engine: {{poll_interval: 100ms}}
""",
    )
    p.start()
    try:
        p.land("one.csv")
        wait_until(lambda: lines(tmp_path / "ra.log"))
        failures = wait_until(
            lambda: [e for e in p.log_events() if e.get("event") == "sensor_failed"]
        )
        assert failures[0]["sensor"] == "gone"
        assert "does-not-exist" in failures[0]["error"]
    finally:
        assert p.stop() == 0


def test_second_run_on_the_same_state_is_refused(tmp_path: Path) -> None:
    """A second `eventflow run` on the same SQLite state exits with a clear error instead of
    taking the first one's running runs for abandoned ones."""
    p = Project(tmp_path, "sensors:\n  landing: {type: directory, path: ./landing}\n")
    p.start()
    try:
        wait_until(lambda: any(e.get("event") == "pipeline_started" for e in p.log_events()))
        second = p.cli("run", str(p.file), "--log-format", "json", check=False)
        assert second.returncode == 1
        assert "another eventflow process is running" in second.stderr
    finally:
        assert p.stop() == 0
