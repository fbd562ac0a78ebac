"""Versioned pipelines with the real CLI: plan against live state, refuse what would drop or
re-key it, start on what is accepted, survive a SIGKILL during a new version's first start,
and keep environments apart."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

from tests.acceptance.harness import Project, lines, wait_until

V1 = """
name: shop
sensors:
  landing: {type: directory, path: ./landing, ready: {stable_for: 200ms}, poll_interval: 1s}
datasets:
  a: {sensor: landing, key: "a/{p}.csv"}
  b: {sensor: landing, key: "b/{p}.csv"}
rules:
  join:
    when: {all: [a, b], by: [p], within: 1h}
    on_update: ignore
    run:
      command:
        - sh
        - -c
        - >-
          echo {run_id} "$EVENTFLOW_VAR_P" $EVENTFLOW_ATTEMPT >> runs.log;
          if [ $EVENTFLOW_ATTEMPT = 1 ] && [ "$EVENTFLOW_VAR_P" = slow ]; then sleep 60; fi
  audit:
    when: {any: [a], by: [p]}
    run: {command: ["true"]}
publish:
  - {type: file, path: out/events.jsonl}
engine: {poll_interval: 100ms}
"""
RENAMED = V1.replace("  join:\n", "  join_v2:\n    renamed_from: join\n").replace(
    "within: 1h", "within: 45m"
)
REMOVED = V1.split("  join:")[0] + "  audit:" + V1.split("  audit:")[1]


def with_live_state(tmp_path: Path) -> Project:
    """v1 ran: p1 fired, p2 and p3 open (with their expiry timers), `slow` running when
    the process was killed."""
    p = Project(tmp_path, V1)
    for x in ("p1", "p2", "p3", "slow"):
        p.land(f"a/{x}.csv")
    p.land("b/p1.csv")
    p.land("b/slow.csv")
    p.start()
    wait_until(lambda: any(" slow " in f" {x} " for x in lines(tmp_path / "runs.log")))
    wait_until(lambda: len(lines(tmp_path / "runs.log")) == 2)
    wait_until(lambda: p.status()["counts"]["runs_succeeded"] == 5, interval=0.3)
    p.kill()
    return p


def plan_json(p: Project, *args: str) -> tuple[int, dict[str, Any]]:
    result = p.cli("plan", str(p.file), "--json", *args, check=False)
    return result.returncode, json.loads(result.stdout)


def by_id(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {line["id"]: line for line in plan["lines"]}


def test_the_same_file_plans_nothing_and_exits_0(tmp_path: Path) -> None:
    """After a start, planning the same file (reformatted) lists nothing and exits 0."""
    p = with_live_state(tmp_path)
    p.file.write_text("# reformatted\n" + V1.replace("within: 1h", "within: 60m"))
    code, plan = plan_json(p)
    assert code == 0
    assert plan["lines"] == []
    assert plan["changed"] is False
    assert p.cli("plan", str(p.file)).returncode == 0


def test_a_removed_rule_with_live_state_is_planned_and_refused(tmp_path: Path) -> None:
    """Removing a rule with open matches, timers and a run in flight: plan lists them (exit
    1), run refuses naming the plan line and the flag, and starts once it is accepted."""
    p = with_live_state(tmp_path)
    p.file.write_text(REMOVED)
    code, plan = plan_json(p)
    assert code == 1
    removed = by_id(plan)["rules.join"]
    assert removed["kind"] == "rule_removed"
    assert removed["destructive"] is True
    assert removed["state"] == {
        "open_matches": 2,
        "fired_matches": 2,
        "expired_matches": 0,
        "timers": 2,
        "pending_runs": 0,
        "running_runs": 1,
    }
    assert plan["refused"] == ["rules.join"]
    p.start()
    assert p.wait_exit(60) == 1
    text = p.logs[-1].read_text()
    assert "plan line rules.join" in text
    assert "--accept rules.join" in text
    assert "migrations.orphans" in text
    p.start(args=["--accept", "rules.join"])
    wait_until(p.started)
    assert p.stop() == 0
    starts = p.cli_json("versions")["starts"]
    assert [s["accepted"][0]["id"] for s in starts[:1]] == ["rules.join"]
    assert len(starts) == 2


def test_orphans_expire_with_an_event_when_declared(tmp_path: Path) -> None:
    """`migrations.orphans: expire` closes the removed rule's open matches with
    eventflow.match.expired (reason pipeline_changed) and its timers."""
    p = with_live_state(tmp_path)
    p.file.write_text(REMOVED + "migrations: {orphans: expire}\n")
    code, plan = plan_json(p)
    assert code == 1
    assert plan["refused"] == []
    assert by_id(plan)["rules.join"]["accepted_by"] == "migrations.orphans: expire"
    p.start()
    wait_until(p.started)
    wait_until(
        lambda: len([e for e in p.published() if e["type"] == "eventflow.match.expired"]) == 2
    )
    assert p.stop() == 0
    expired = [e for e in p.published() if e["type"] == "eventflow.match.expired"]
    assert {e["data"]["partition"]["p"] for e in expired} == {"p2", "p3"}
    assert {e["data"]["reason"] for e in expired} == {"pipeline_changed"}
    status = p.status()
    assert status["counts"]["matches_open"] == 0
    assert status["counts"]["timers"] == 0


def test_a_rename_survives_a_sigkill_during_its_first_start(tmp_path: Path) -> None:
    """A renamed rule killed right after its migration and started again keeps every open
    match, fires each partition once, and reruns the run in flight with its run id."""
    p = with_live_state(tmp_path)
    v1_version = p.cli_json("versions")["starts"][0]["rules"]["join"]
    p.file.write_text(RENAMED)
    code, plan = plan_json(p)
    assert code == 1
    lines_ = by_id(plan)
    assert lines_["rules.join_v2"]["kind"] == "rule_renamed"
    assert lines_["rules.join_v2"]["accepted_by"] == "renamed_from"
    assert lines_["rules.join_v2.when.within"]["kind"] == "within_changed"
    p.start(crash_at="versions.after_migrate")
    assert p.wait_exit(60) == -9, "the crash point was not reached"
    p.start()
    wait_until(p.started)
    p.land("b/p2.csv")
    p.land("b/p1.csv", "again\n")  # an update of a fired partition: on_update ignore
    wait_until(lambda: len(lines(tmp_path / "runs.log")) == 4, timeout=60)
    wait_until(lambda: p.status()["counts"]["runs_succeeded"] == 4 + 3, timeout=60)
    assert p.stop() == 0
    runs = p.runs()
    fired = collections.Counter(
        (r["rule"], r["partition"]["p"]) for r in runs if r["rule"].startswith("join")
    )
    assert fired == {("join", "p1"): 1, ("join", "slow"): 1, ("join_v2", "p2"): 1}
    slow = [x.split() for x in lines(tmp_path / "runs.log") if x.split()[1] == "slow"]
    assert [s[2] for s in slow] == ["1", "2"]
    assert slow[0][0] == slow[1][0]
    version = {r["rule"]: r["pipeline_version"] for r in runs}
    assert version["join"] == v1_version
    assert version["join_v2"] != v1_version
    table = p.cli("runs", str(p.file)).stdout
    assert "version" in table
    assert v1_version in table
    assert version["join_v2"] in table
    assert p.cli_json("why", "join_v2", "p=p3")["status"] == "open"
    starts = p.cli_json("versions")["starts"]
    assert len(starts) == 2  # the killed start recorded nothing
    events = [e for e in p.published() if e["type"] == "eventflow.run.succeeded"]
    assert {e["pipelineversion"] for e in events if e["data"]["rule"] == "join_v2"} == {
        version["join_v2"]
    }


def test_a_staging_run_against_a_production_store_is_refused(tmp_path: Path) -> None:
    """A store made by one environment refuses a start of another, naming both."""
    text = V1 + "environments:\n  production: {}\n  staging: {values: {X: y}}\n"
    p = Project(tmp_path, text)
    p.start(args=["--env", "production"])
    wait_until(p.started)
    assert p.stop() == 0
    p.start(args=["--env", "staging"])
    assert p.wait_exit(60) == 1
    text = p.logs[-1].read_text()
    assert "belongs to environment `production`" in text
    assert "environment `staging`" in text
    identity = p.cli_json("versions", "--env", "production")["store"]
    assert identity["environment"] == "production"
