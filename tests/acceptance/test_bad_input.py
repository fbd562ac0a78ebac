"""Bad input gets a clear error and loses nothing."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

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


VALID = """\
state: sqlite:///.eventflow/state.db
sensors:
  landing: {type: directory, path: ./landing}
datasets:
  orders: {sensor: landing, key: "orders/{dt}/_SUCCESS", where: "payload.ok || `true`"}
rules:
  report:
    when: {all: [orders], by: [dt], within: 2h}
    expect_by: "{dt}T06:00Z + 1d"
    run: {command: ["true"], timeout: 30m, retries: 3, backoff: {multiplier: 2}}
"""
"""A valid pipeline; each case below replaces one text of it (and so sits at its line)."""

HOSTILE = {
    "deep-yaml": ("within: 2h}", "within: 2h, x: " + "[" * 5000 + "]" * 5000 + "}"),
    "within-overflow": ("within: 2h", "within: 999999999999d"),
    "where-parens": ("payload.ok || `true`", "(" * 500 + "payload.ok" + ")" * 500),
    "where-not": ("payload.ok || `true`", "!" * 2000 + "payload.ok"),
    "timeout-overflow": ("timeout: 30m", "timeout: 99999999999999999999999w"),
    "seconds-overflow": ("timeout: 30m", "timeout: 1.0e+400"),
    "retries-overflow": ("retries: 3", "retries: 99999999999999999999"),
    "multiplier-inf": ("multiplier: 2", "multiplier: .inf"),
    "deadline-overflow": ("+ 1d", " + ".join(["36500d"] * 3)),
    "bad-date": ("retries: 3", "retries: 2024-13-45"),
    "dsn-lease-sqlite": (".db\n", ".db?lease=abc\n"),
    "dsn-synchronous": (".db\n", ".db?synchronous=banana\n"),
    "dsn-busy-timeout": (".db\n", ".db?busy_timeout=nan\n"),
    "dsn-not-a-url": ("sqlite:///.eventflow/state.db", "sqlite://[::1/state.db"),
    "dsn-lease-postgres": ("sqlite:///.eventflow/state.db", "postgresql://ef@db/ef?lease=-5"),
    "dsn-timeout-postgres": (
        "sqlite:///.eventflow/state.db",
        "postgresql://ef@db/ef?reconnect_timeout=1e400",
    ),
    "dsn-libpq-option": ("sqlite:///.eventflow/state.db", "postgresql://ef@db/ef?sslmod=require"),
}
"""Input that made `validate` trace back, or pass and fail only at `run` (issue 16)."""

EXPECTED = {
    "deep-yaml": (8, "nested more than 64 levels"),
    "within-overflow": (8, "too long"),
    "where-parens": (5, "nests more than 50 levels"),
    "where-not": (5, "nests more than 50 levels"),
    "timeout-overflow": (10, "too long"),
    "seconds-overflow": (10, "`.inf` is not a number"),
    "retries-overflow": (10, "the number is too large"),
    "multiplier-inf": (10, "`.inf` is not a number"),
    "deadline-overflow": (9, "add up to more than 36500d"),
    "bad-date": (10, "month must be in 1..12"),
    "dsn-lease-sqlite": (1, "unknown option(s) lease='abc'"),
    "dsn-synchronous": (1, "synchronous='banana' in 'sqlite:///.eventflow/state.db"),
    "dsn-busy-timeout": (1, "busy_timeout='nan'"),
    "dsn-not-a-url": (1, "is not a URL"),
    "dsn-lease-postgres": (1, "lease='-5'"),
    "dsn-timeout-postgres": (1, "reconnect_timeout='1e400'"),
    "dsn-libpq-option": (1, 'invalid URI query parameter: "sslmod"'),
}
"""The line each case is reported at and what its message says."""


def test_the_valid_pipeline_the_hostile_cases_start_from_validates(tmp_path: Path) -> None:
    """The pipeline every hostile case edits is valid, so each case's problem is its own."""
    p = Project(tmp_path, VALID)
    result = p.cli("validate", str(p.file), check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_config_is_one_clear_line_at_validate(tmp_path: Path, case: str) -> None:
    """Deep nesting, overflowing durations and numbers, deeply nested expressions and bad
    state DSN options are each one problem line naming the file, the line and a fix, with
    the exit code of an invalid pipeline (2), never a traceback."""
    old, new = HOSTILE[case]
    assert old in VALID
    p = Project(tmp_path, VALID.replace(old, new, 1))
    result = p.cli("validate", str(p.file), check=False)
    line, says = EXPECTED[case]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [problem, summary] = result.stderr.splitlines()
    assert problem.startswith(f"{p.file}:{line}: "), problem
    assert says in problem
    assert "(hint: " in problem
    assert summary == f"1 problem(s) in {p.file}"


def test_a_bad_dsn_option_stops_run_before_it_opens_the_store(tmp_path: Path) -> None:
    """`run` refuses a bad DSN option with the same message as `validate`, creating nothing."""
    p = Project(tmp_path, VALID.replace(".db\n", ".db?busy_timeout=-1\n"))
    result = p.cli("run", str(p.file), check=False)
    assert result.returncode == 2, result.stderr
    assert "busy_timeout='-1'" in result.stderr
    assert not (tmp_path / ".eventflow").exists()
