"""The rules core's pipeline features: conditions, quiet periods, deadlines, late data, batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from eventflow.events import InputRef
from eventflow.rules import (
    BatchSpec,
    DeadlineExpr,
    Group,
    MatchState,
    Need,
    RuleSpec,
    Schedule,
)
from eventflow.rules.expr import describe
from eventflow.rules.timing import parse_time, zone
from tests.unit.rules_sim import Sim

T0 = datetime(2024, 1, 1, tzinfo=UTC)
S = timedelta(seconds=1)


def ref(dataset: str, n: int = 0, v: int = 0, **partition: str) -> InputRef:
    partition = partition or {"dt": "2024-01-01"}
    return InputRef(
        f"{dataset}:{sorted(partition.items())}:{n}:{v}",
        dataset,
        partition,
        "s",
        {"n": n, "v": v},
        T0.isoformat(),
    )


def test_nested_condition_and_at_least() -> None:
    """`all(a, any(b, c), at_least 2 of (d, e, f))` fires exactly when each part holds."""
    cond = Group(
        "all",
        (
            Need("a"),
            Group("any", (Need("b"), Need("c"))),
            Group("at_least", tuple(map(Need, "def")), 2),
        ),
    )
    spec = RuleSpec("r", "all", tuple("abcdef"), ("dt",), condition=cond)
    sim = Sim(spec)
    for ds in ("a", "c", "d"):
        sim.feed(ref(ds), T0)
    assert not sim.d.fires
    [state] = sim.d.states.values()
    assert state.missing(spec) == ("b", "e", "f")
    sim.feed(ref("f"), T0)
    [fire] = sim.d.fires.values()
    assert {r.dataset for r in fire.inputs} == {"a", "c", "d", "f"}
    assert describe(cond) == "all(a, any(b, c), at_least 2 of (d, e, f))"


def test_hourly_dataset_feeds_a_daily_rule_on_the_24th_hour() -> None:
    """A `count: 24` leaf fires the day once 24 distinct hours arrived; a rewritten hour
    replaces its older event and does not count twice."""
    spec = RuleSpec("daily", "all", ("hourly",), ("dt",), condition=Need("hourly", 24))
    sim = Sim(spec)
    for h in range(23):
        sim.feed(ref("hourly", dt="2024-01-01", hr=f"{h:02d}"), T0)
    sim.feed(ref("hourly", v=1, dt="2024-01-01", hr="05"), T0)
    assert not sim.d.fires
    sim.feed(ref("hourly", dt="2024-01-01", hr="23"), T0)
    [fire] = sim.d.fires.values()
    assert len(fire.inputs) == 24
    assert fire.partition == {"dt": "2024-01-01"}


def test_quiet_period_restarts_on_each_update_and_fires_once() -> None:
    """With `quiet`, a marker rewritten within the period fires once, after the last write."""
    spec = RuleSpec("r", "any", ("marker",), ("dt",), quiet=10 * S)
    sim = Sim(spec)
    sim.feed(ref("marker", v=0), T0)
    sim.feed(ref("marker", v=1), T0 + 5 * S)
    sim.advance(T0 + 14 * S)
    assert not sim.d.fires
    sim.advance(T0 + 15 * S)
    [fire] = sim.d.fires.values()
    assert [r.position["v"] for r in fire.inputs] == [1]


def test_deadline_missed_once_with_what_arrived_and_what_is_missing() -> None:
    """A partition not fired by its deadline reports once; it still fires when complete."""
    spec = RuleSpec(
        "r", "all", ("a", "b"), ("dt",), deadline=DeadlineExpr.parse("{dt}T06:00Z + 1d")
    )
    sim = Sim(spec)
    sim.feed(ref("a"), T0)
    sim.advance(datetime(2024, 1, 2, 6, tzinfo=UTC))
    [missed] = sim.d.missed
    assert missed.deadline == datetime(2024, 1, 2, 6, tzinfo=UTC)
    assert missed.missing == ("b",)
    assert [r.dataset for r in missed.arrived] == ["a"]
    assert sim.d.states['{"dt":"2024-01-01"}'].status == "missed"
    sim.advance(datetime(2024, 1, 3, tzinfo=UTC))
    sim.feed(ref("b"), datetime(2024, 1, 3, tzinfo=UTC))
    assert len(sim.d.missed) == 1
    assert len(sim.d.fires) == 1


def test_deadline_met_cancels_its_timer() -> None:
    """A partition that fires before its deadline never reports a miss."""
    spec = RuleSpec("r", "all", ("a", "b"), ("dt",), deadline=DeadlineExpr.parse("{dt} + 1d"))
    sim = Sim(spec)
    sim.feed(ref("a"), T0)
    sim.feed(ref("b"), T0 + S)
    sim.advance(T0 + timedelta(days=5))
    assert sim.d.missed == []
    assert not sim.d.timers
    assert sim.d.states['{"dt":"2024-01-01"}'].deadline == "met"


def test_run_partial_fires_a_degraded_run_then_a_full_one() -> None:
    """`on_deadline: run_partial` fires with what arrived; the rest arriving reruns in full."""
    spec = RuleSpec(
        "r",
        "all",
        ("a", "b"),
        ("dt",),
        deadline=DeadlineExpr.parse("{dt}T06:00Z"),
        on_deadline="run_partial",
    )
    sim = Sim(spec)
    sim.feed(ref("a"), T0)
    sim.advance(T0 + timedelta(hours=6))
    [missed] = sim.d.missed
    [partial] = sim.d.fires.values()
    assert partial.partial
    assert partial.missing == ("b",)
    assert missed.partial_run == partial.run_id
    sim.feed(ref("b"), T0 + timedelta(hours=7))
    full = [f for f in sim.d.fires.values() if not f.partial]
    assert len(full) == 1
    assert full[0].generation == 2


def test_expected_partition_without_input_misses_its_deadline() -> None:
    """A partition opened by a schedule reports a miss even though nothing ever arrived."""
    spec = RuleSpec("r", "all", ("a",), ("dt",), deadline=DeadlineExpr.parse("{dt}T06:00Z + 1d"))
    schedule = Schedule(timedelta(days=1), {"dt": "%Y-%m-%d"})
    sim = Sim(spec)
    k = schedule.index(T0)
    sim.expect(schedule.partition_of(k), schedule.start(k))
    sim.advance(T0 + timedelta(days=2))
    [missed] = sim.d.missed
    assert missed.partition == {"dt": "2024-01-01"}
    assert missed.arrived == ()


@pytest.mark.parametrize(
    ("late", "fires", "events"), [("rerun", 2, 0), ("ignore", 1, 0), ("event", 1, 1)]
)
def test_late_policy_for_fired_partitions(late: str, fires: int, events: int) -> None:
    """`late` decides what an input of a fired partition does."""
    spec = RuleSpec("r", "any", ("a",), ("dt",), late=late)  # type: ignore[arg-type]
    sim = Sim(spec)
    sim.feed(ref("a", v=0), T0)
    sim.feed(ref("a", v=1), T0 + S)
    assert len(sim.d.fires) == fires
    assert len(sim.d.late) == events


def test_late_policy_for_expired_partitions() -> None:
    """With `late: ignore`, an input after the `within` window expired does not reopen it."""
    spec = RuleSpec("r", "all", ("a", "b"), ("dt",), within=10 * S, late="ignore")
    sim = Sim(spec)
    sim.feed(ref("a"), T0)
    sim.advance(T0 + 11 * S)
    sim.feed(ref("b"), T0 + 12 * S)
    assert len(sim.d.expired) == 1
    assert not sim.d.fires
    assert sim.d.states['{"dt":"2024-01-01"}'].late == 1


def test_batch_fires_on_max_events_and_on_max_wait() -> None:
    """A batch fires at `max_events`, and a short one fires `max_wait` after its first input."""
    spec = RuleSpec("r", "any", ("f",), (), batch=BatchSpec(3, 60 * S))
    sim = Sim(spec)
    for n in range(4):
        sim.feed(ref("f", n=n), T0 + n * S)
    assert [len(f.inputs) for f in sim.d.fires.values()] == [3]
    sim.advance(T0 + 63 * S)
    assert [len(f.inputs) for f in sim.d.fires.values()] == [3, 1]
    assert [f.generation for f in sim.d.fires.values()] == [1, 2]


def test_match_state_round_trips_with_the_new_fields() -> None:
    """Deadline, quiet and late fields survive the store's JSON."""
    spec = RuleSpec(
        "r", "all", ("a", "b"), ("dt",), quiet=S, deadline=DeadlineExpr.parse("{dt} + 1d")
    )
    sim = Sim(spec)
    sim.feed(ref("a"), T0)
    sim.feed(ref("b"), T0)
    [state] = sim.d.states.values()
    assert state.quiet_until is not None
    assert state.deadline == "pending"
    assert MatchState.from_dict(state.to_dict()) == state


def test_deadline_expressions() -> None:
    """`expect_by` reads dates, hours without padding, zones and offsets."""
    assert DeadlineExpr.parse("{dt}T06:00Z + 1d").at({"dt": "2024-01-31"}) == datetime(
        2024, 2, 1, 6, tzinfo=UTC
    )
    assert DeadlineExpr.parse("{dt} {hr}:00 + 90m").at({"dt": "2024-01-31", "hr": "5"}) == (
        datetime(2024, 1, 31, 6, 30, tzinfo=UTC)
    )
    berlin = DeadlineExpr.parse("{dt} 06:00 + 1d - 30m", zone("Europe/Berlin"))
    assert berlin.at({"dt": "2024-07-01"}) == datetime(2024, 7, 2, 3, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a date"):
        DeadlineExpr.parse("{dt}T06:00Z").at({"dt": "yesterday"})
    with pytest.raises(ValueError, match="not a date"):
        parse_time("soon", UTC)


def test_schedule_periods_in_a_timezone() -> None:
    """Daily periods start at local midnight and name their partition by strftime."""
    schedule = Schedule(timedelta(days=1), {"dt": "%Y-%m-%d"}, zone("Europe/Berlin"))
    now = datetime(2024, 7, 1, 22, 30, tzinfo=UTC)  # 00:30 on July 2nd in Berlin
    k = schedule.index(now)
    assert schedule.partition_of(k) == {"dt": "2024-07-02"}
    assert schedule.start(k) == datetime(2024, 7, 1, 22, tzinfo=UTC)
    assert list(schedule.due(k - 3, now, 10)) == [k - 2, k - 1, k]


def test_key_mapping_joins_datasets_keyed_differently() -> None:
    """`vars` maps a dataset's variables onto the rule's: hourly `date`/`hour` partitions
    and a daily `dt` marker join on the same day."""
    spec = RuleSpec(
        "daily",
        "all",
        ("hourly", "daily_fx"),
        ("dt",),
        condition=Group("all", (Need("hourly", 24), Need("daily_fx"))),
        keys={"hourly": {"dt": "{date}"}},
    )
    sim = Sim(spec)
    sim.feed(ref("daily_fx", dt="2024-01-01"), T0)
    for h in range(24):
        sim.feed(ref("hourly", date="2024-01-01", hour=f"{h:02d}"), T0)
    [fire] = sim.d.fires.values()
    assert fire.partition == {"dt": "2024-01-01"}
    assert len(fire.inputs) == 25
