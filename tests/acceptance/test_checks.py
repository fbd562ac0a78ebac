"""Data-quality checks, through the real CLI: a blocked partition holds the rules downstream
(``why`` names the check, ``eventflow.check.failed`` is published) until an operator fixes
the data and re-runs the checks; a SIGKILL while checks run re-runs them after restart."""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

import pytest

from tests.acceptance.harness import Project, lines, wait_until

PY = sys.executable

ROOT = Path(__file__).resolve().parents[2]
CHAIN = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs/howto/checks.md").read_text(), re.S)[0]
"""The first pipeline of the how-to: what it describes is what this test runs."""

SLOW = """
name: slowcheck
sensors:
  landing: {type: directory, path: ./landing, ready: {stable_for: 200ms}, poll_interval: 200ms}
datasets:
  raw: {sensor: landing, key: "raw/{dt}.csv"}
rules:
  load:
    when: {any: [raw], by: [dt]}
    run:
      command: [sh, -c, 'echo "$EVENTFLOW_RUN_ID" >> load.log']
    produces: loaded
    checks:
      - name: slow
        command: [sh, -c, 'echo "$EVENTFLOW_RUN_ID" >> checks.log; sleep {sleep}']
        timeout: 30s
  report:
    when: {any: [loaded], by: [dt]}
    run:
      command: [sh, -c, 'echo "$EVENTFLOW_RUN_ID $EVENTFLOW_VAR_DT" >> report.log']
publish:
  - {type: file, path: out/events.jsonl}
engine: {poll_interval: 100ms}
"""


def gates(p: Project) -> list[dict[str, object]]:
    return p.cli_json("checks", "list")  # type: ignore[no-any-return]


def gate_status(p: Project) -> str | None:
    found = gates(p)
    return str(found[0]["status"]) if found else None


def test_an_empty_file_blocks_the_chain_until_fixed_and_rerun(tmp_path: Path) -> None:
    """A first step that produces an empty file is blocked by its check: the second rule
    never fires, `why` and `status` name the check, `eventflow.check.failed` is published;
    after the data is fixed and the check re-run, the second rule fires exactly once."""
    p = Project(tmp_path, CHAIN)
    (tmp_path / "data").mkdir()
    p.start()
    p.land("raw/2026-01-01.csv", "")
    wait_until(lambda: gate_status(p) == "blocked")

    (load,) = p.runs()
    assert load["rule"] == "load"
    assert load["status"] == "succeeded"
    assert load["pipeline_version"]  # the gate records the version that produced it
    assert gates(p)[0]["pipeline_version"] == load["pipeline_version"]
    # `runs` shows the outcome of the run's checks (the warning `rows` failed too).
    assert load["checks"]["outcome"] == "blocked"
    assert load["checks"]["text"] == "failed: not_empty"
    assert load["checks"]["failed"] == ["not_empty", "rows"]
    assert load["checks"]["pipeline_version"] == load["pipeline_version"]
    table = p.cli("runs", str(p.file)).stdout
    assert "checks" in table.splitlines()[1]
    assert "not_empty" in table
    why = p.cli_json("why", "report", "dt=2026-01-01")
    assert why["blocked"]["loaded"]["reason"] == "blocked by check not_empty"
    assert why["blocked"]["loaded"]["run_id"] == load["run_id"]
    human = p.cli("why", str(p.file), "report", "dt=2026-01-01").stdout
    assert "blocked by check not_empty" in human
    held = p.status()["held_by_checks"]
    assert [(h["dataset"], h["reason"]) for h in held] == [("loaded", "blocked by check not_empty")]
    failed = wait_until(lambda: [e for e in p.published() if e["type"] == "eventflow.check.failed"])
    by_check = {e["data"]["check"]: e["data"] for e in failed}
    assert by_check["not_empty"]["blocking"] is True
    assert "is empty" in by_check["not_empty"]["result"]["detail"]
    assert by_check["rows"]["blocking"] is False  # a warning, published too
    assert not lines(tmp_path / "report.log")

    # The operator fixes the data and re-runs the checks.
    (tmp_path / "data" / "loaded-2026-01-01.csv").write_text("id\n1\n2\n")
    out = p.cli("checks", str(p.file), "rerun", load["run_id"], "--reason", "reloaded").stdout
    assert "will be checked again" in out
    wait_until(lambda: len(lines(tmp_path / "report.log")) == 1)
    wait_until(lambda: gate_status(p) == "passed")
    (g,) = gates(p)
    assert g["actions"][0]["action"] == "rerun"
    assert g["actions"][0]["reason"] == "reloaded"
    assert str(g["actions"][0]["by"]).startswith("cli:")
    assert all(r["passed"] for r in g["results"])  # type: ignore[union-attr]
    passed = wait_until(lambda: [e for e in p.published() if e["type"] == "eventflow.check.passed"])
    assert passed[0]["data"]["run_id"] == load["run_id"]

    # Re-running checks that pass again announces the same partition again: it fires once.
    p.cli("checks", str(p.file), "rerun", load["run_id"])
    wait_until(lambda: gate_status(p) == "passed" and len(gates(p)[0]["actions"]) == 2)  # type: ignore[arg-type]
    p.stop()
    listed = p.runs()
    runs = collections.Counter(r["rule"] for r in listed)
    assert runs == {"load": 1, "report": 1}
    checks = {r["rule"]: r["checks"] for r in listed}
    assert checks["load"]["text"] == "passed"
    assert checks["load"]["evaluation"] == 3  # blocked, re-run, re-run
    assert checks["report"] is None  # its rule has no checks
    assert len(lines(tmp_path / "report.log")) == 1


def test_override_announces_a_blocked_partition_audited(tmp_path: Path) -> None:
    """An operator's override announces a blocked partition as it is (the second rule
    fires once) and is recorded with who did it and why."""
    p = Project(tmp_path, CHAIN)
    (tmp_path / "data").mkdir()
    p.start()
    p.land("raw/2026-01-02.csv", "")
    wait_until(lambda: gate_status(p) == "blocked")
    (load,) = p.runs()
    p.cli("checks", str(p.file), "override", load["run_id"], "--reason", "known empty day")
    wait_until(lambda: len(lines(tmp_path / "report.log")) == 1)
    (g,) = gates(p)
    assert g["status"] == "overridden"
    assert g["actions"][0]["action"] == "override"  # type: ignore[index]
    assert g["actions"][0]["reason"] == "known empty day"  # type: ignore[index]
    refused = p.cli("checks", str(p.file), "override", load["run_id"], check=False)
    assert refused.returncode == 1
    assert "overridden" in refused.stderr
    p.stop()


@pytest.mark.parametrize("crash", ["checks.before_record", "checks.after_claim", "while"])
def test_a_sigkill_during_checks_reruns_them_after_restart(tmp_path: Path, crash: str) -> None:
    """Killed while a partition's checks run (or just before their result is recorded), the
    partition stays held (checks `running`), and after the restart the checks run again and
    the rule downstream fires exactly once."""
    sleep = "3" if crash == "while" else "0.2"
    p = Project(tmp_path, SLOW.replace("{sleep}", sleep))
    p.start(crash_at=None if crash == "while" else crash)
    p.land("raw/2026-01-01.csv", "x\n")
    wait_until(lambda: len(lines(tmp_path / "checks.log")) >= (0 if crash.endswith("claim") else 1))
    if crash == "while":
        p.kill()
    else:
        assert p.wait_exit(30) == -9
    assert gate_status(p) == "running"  # held: pending its checks, never announced
    why = p.cli_json("why", "report", "dt=2026-01-01")
    assert why["blocked"]["loaded"]["reason"] == "checks running"
    assert not lines(tmp_path / "report.log")

    p.start()
    wait_until(lambda: len(lines(tmp_path / "report.log")) == 1)
    p.stop()
    (load_run,) = set(lines(tmp_path / "load.log"))
    checked = lines(tmp_path / "checks.log")
    assert set(checked) == {load_run}
    assert len(checked) == (1 if crash.endswith("claim") else 2)  # run again, not skipped
    assert gate_status(p) == "passed"
    assert collections.Counter(r["rule"] for r in p.runs()) == {"load": 1, "report": 1}
    recovered = [e for e in p.log_events() if e["event"] == "checks_recovered"]
    assert recovered
    assert recovered[0]["runs"] == [load_run]
