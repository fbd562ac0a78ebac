"""eventflow plan: each kind of change gives its effect on live state, and which are refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventflow.config.loader import load_pipeline
from eventflow.plan import LiveState, Plan, make_plan, plan_definition
from eventflow.version_records import VersionStart

BASE = """
name: shop
sensors: {landing: {type: directory, path: ./landing}}
datasets:
  orders: {sensor: landing, key: "orders/{dt}.csv"}
  stock: {sensor: landing, key: "stock/{dt}.csv"}
rules:
  daily:
    when: {all: [orders, stock], by: [dt], within: 2h}
    expect_by: "{dt}T06:00Z + 1d"
    run: {command: [echo, "{dt}"], retries: 1, concurrency: 2}
  audit:
    when: {any: [orders], by: [dt]}
    run: {command: [echo, audit]}
"""
LIVE = {
    "daily": LiveState(open=3, fired=2, timers=4, pending=1, running=1),
    "audit": LiveState(fired=5),
}


def plan_of(tmp_path: Path, text: str, accept: tuple[str, ...] = ()) -> Plan:
    (tmp_path / "landing").mkdir(exist_ok=True)
    (tmp_path / "old.yaml").write_text(BASE)
    (tmp_path / "new.yaml").write_text(text)
    old = load_pipeline(tmp_path / "old.yaml", environ={})
    new = load_pipeline(tmp_path / "new.yaml", environ={})
    previous = VersionStart(
        old.version.id,
        "shop",
        "default",
        "h:1",
        datetime(2024, 1, 1, tzinfo=UTC),
        dict(old.version.rules),
        dict(old.version.definition),
    )
    return make_plan(
        previous,
        plan_definition(new),
        new.version.id,
        environment="default",
        state=LIVE,
        accept=accept,
    )


def line(plan: Plan, id_: str, kind: str | None = None) -> dict[str, object]:
    found = [x for x in plan.lines if x.id == id_ and (kind is None or x.kind == kind)]
    assert found, [x.id for x in plan.lines]
    return found[0].to_dict()


def test_the_same_file_plans_nothing(tmp_path: Path) -> None:
    """A file whose version the store last ran (here only reformatted) has no plan lines."""
    plan = plan_of(tmp_path, BASE.replace("within: 2h", "within: 120m") + "# a comment\n")
    assert not plan.changed
    assert plan.lines == ()


def test_a_removed_rule_with_live_state_is_refused(tmp_path: Path) -> None:
    """Removing a rule that holds open matches, timers and runs is destructive and refused."""
    text = BASE.split("  daily:")[0] + "  audit:\n" + BASE.split("  audit:\n")[1]
    plan = plan_of(tmp_path, text)
    removed = line(plan, "rules.daily", "rule_removed")
    assert removed["destructive"] is True
    assert removed["accepted_by"] is None
    assert "3 open matches, 4 timers, 1 pending run, 1 running run" in str(removed["effect"])
    assert [x.id for x in plan.refused] == ["rules.daily"]


@pytest.mark.parametrize(
    ("accept", "extra", "by"),
    [
        (("rules.daily",), "", "--accept rules.daily"),
        ((), "migrations: {orphans: expire}\n", "migrations.orphans: expire"),
        ((), "migrations: {accept: [rules.daily]}\n", "--accept rules.daily"),
    ],
)
def test_a_removed_rule_is_accepted_by_flag_or_declaration(
    tmp_path: Path, accept: tuple[str, ...], extra: str, by: str
) -> None:
    """--accept, `migrations.accept` or a `migrations.orphans` choice accept the removal."""
    text = BASE.split("  daily:")[0] + "  audit:\n" + BASE.split("  audit:\n")[1] + extra
    plan = plan_of(tmp_path, text, accept)
    assert line(plan, "rules.daily")["accepted_by"] == by
    assert plan.refused == []


def test_a_renamed_rule_keeps_its_state(tmp_path: Path) -> None:
    """`renamed_from` makes a removal and an addition one rename whose state moves."""
    text = BASE.replace("  daily:\n", "  daily_v2:\n    renamed_from: daily\n")
    plan = plan_of(tmp_path, text)
    renamed = line(plan, "rules.daily_v2", "rule_renamed")
    assert renamed["accepted_by"] == "renamed_from"
    assert "3 open matches" in str(renamed["effect"])
    assert "move to daily_v2" in str(renamed["effect"])
    assert plan.renames == {"daily": "daily_v2"}
    assert plan.refused == []
    assert [x.kind for x in plan.lines] == ["rule_renamed"]


def test_a_changed_by_re_keys_open_matches_and_is_refused(tmp_path: Path) -> None:
    """A new `by` leaves the open matches keyed by the old variables: refused."""
    text = (
        BASE.replace('key: "orders/{dt}.csv"', 'key: "orders/{dt}/{hr}.csv"')
        .replace('key: "stock/{dt}.csv"', 'key: "stock/{dt}/{hr}.csv"')
        .replace("by: [dt], within", "by: [dt, hr], within")
    )
    plan = plan_of(tmp_path, text)
    by = line(plan, "rules.daily.when.by")
    assert by["destructive"] is True
    assert "3 open matches are keyed by the old" in str(by["effect"])
    pattern = line(plan, "datasets.orders.key", "pattern_changed")
    assert pattern["destructive"] is True
    assert {"rules.daily.when.by", "datasets.orders.key", "datasets.stock.key"} <= {
        x.id for x in plan.refused
    }


def test_inputs_added_and_removed_say_what_open_matches_do(tmp_path: Path) -> None:
    """An added input makes open matches wait for it; a removed one lets them fire sooner."""
    added = (
        BASE.replace("prices", "x")
        .replace("  stock: {", '  prices: {sensor: landing, key: "prices/{dt}.csv"}\n  stock: {')
        .replace("all: [orders, stock]", "all: [orders, stock, prices]")
    )
    plan = plan_of(tmp_path, added)
    assert "3 open matches now also wait for prices" in str(
        line(plan, "rules.daily.when")["effect"]
    )
    assert plan.refused == []
    removed = plan_of(tmp_path, BASE.replace("all: [orders, stock]", "all: [orders]"))
    effect = str(line(removed, "rules.daily.when", "inputs_removed")["effect"])
    assert "no longer wait for stock" in effect


def test_windows_deadlines_retries_and_concurrency_are_listed_not_refused(tmp_path: Path) -> None:
    """Shorter `within`, another deadline, retries and concurrency: effects on timers and
    runs in flight, none refused."""
    text = (
        BASE.replace("within: 2h", "within: 30m")
        .replace("T06:00Z", "T08:00Z")
        .replace("retries: 1", "retries: 3")
        .replace("concurrency: 2", "concurrency: 1")
    )
    plan = plan_of(tmp_path, text)
    assert "the expiry timers of 3 open matches move to their opening time + 30m" in str(
        line(plan, "rules.daily.when.within")["effect"]
    )
    assert line(plan, "rules.daily.expect_by")["kind"] == "deadline_changed"
    assert "pending deadlines move to the new time" in str(
        line(plan, "rules.daily.expect_by")["effect"]
    )
    assert "2 runs in flight keep their attempt limit; new runs get 4 attempts" in str(
        line(plan, "rules.daily.run.retries")["effect"]
    )
    assert "1 running, 1 pending" in str(line(plan, "rules.daily.run.concurrency")["effect"])
    assert plan.refused == []


def test_a_first_start_lists_every_rule_as_added(tmp_path: Path) -> None:
    """On a store where nothing ran, every rule starts empty and nothing is refused."""
    (tmp_path / "landing").mkdir()
    (tmp_path / "p.yaml").write_text(BASE)
    p = load_pipeline(tmp_path / "p.yaml", environ={})
    plan = make_plan(None, plan_definition(p), p.version.id, environment="default", state={})
    assert sorted(x.id for x in plan.lines) == ["rules.audit", "rules.daily"]
    assert plan.refused == []
