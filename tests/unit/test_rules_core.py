"""The pure rules core: joins per partition key, expiry, generations, order independence."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from eventflow.events import InputRef, partition_key
from eventflow.rules import (
    CancelTimer,
    Expired,
    Fire,
    Ignored,
    MatchState,
    RuleSpec,
    ScheduleTimer,
    on_expiry,
    on_input,
    run_id_for,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
JOIN = RuleSpec("report", "all", ("orders", "inventory"), ("dt",))


def ref(dataset: str, dt: str, n: str = "0", version: int = 0) -> InputRef:
    partition = {"dt": dt, "n": n}
    return InputRef(
        event_id=f"{dataset}:{dt}:{n}:{version}",
        dataset=dataset,
        partition=partition,
        sensor="s",
        position={"path": f"{dataset}/{dt}/{n}", "v": version},
        time=T0.isoformat(),
    )


def feed(spec: RuleSpec, refs: list[InputRef], now: datetime = T0) -> tuple[dict, list]:
    states: dict[str, MatchState] = {}
    effects: list = []
    for r in refs:
        key = partition_key(spec.key_of(r.partition))
        step = on_input(spec, states.get(key), r, now)
        states[key] = step.state
        effects.extend(step.effects)
    return states, effects


def fires(effects: list) -> list[Fire]:
    return [e for e in effects if isinstance(e, Fire)]


def test_all_join_fires_only_when_every_dataset_arrived() -> None:
    """An `all` join fires once both datasets have arrived for the same partition key."""
    _, effects = feed(JOIN, [ref("orders", "d1")])
    assert fires(effects) == []
    _, effects = feed(JOIN, [ref("orders", "d1"), ref("inventory", "d1")])
    [fire] = fires(effects)
    assert fire.partition == {"dt": "d1"}
    assert fire.generation == 1
    assert {r.dataset for r in fire.inputs} == {"orders", "inventory"}


def test_join_is_per_partition_key() -> None:
    """Inputs for different partition keys never complete each other."""
    _, effects = feed(JOIN, [ref("orders", "d1"), ref("inventory", "d2")])
    assert fires(effects) == []


def test_any_fires_on_first_input() -> None:
    """An `any` rule fires on the first input of a partition."""
    spec = RuleSpec("r", "any", ("a", "b"), ("dt",))
    _, effects = feed(spec, [ref("a", "d1")])
    assert len(fires(effects)) == 1


def test_update_after_fire_opens_next_generation() -> None:
    """An updated input of a fired partition fires generation 2 with the other inputs kept."""
    refs = [ref("orders", "d1"), ref("inventory", "d1"), ref("orders", "d1", version=1)]
    states, effects = feed(JOIN, refs)
    first, second = fires(effects)
    assert (first.generation, second.generation) == (1, 2)
    assert first.run_id != second.run_id
    assert {r.event_id for r in second.inputs} == {"orders:d1:0:1", "inventory:d1:0:0"}
    assert states[partition_key({"dt": "d1"})].generation == 2


def test_on_update_ignore_fires_once() -> None:
    """With on_update: ignore, an update of a fired partition is ignored, visibly."""
    spec = RuleSpec("r", "all", ("orders", "inventory"), ("dt",), on_update="ignore")
    refs = [ref("orders", "d1"), ref("inventory", "d1"), ref("orders", "d1", version=1)]
    _, effects = feed(spec, refs)
    assert len(fires(effects)) == 1
    assert any(isinstance(e, Ignored) and "on_update" in e.reason for e in effects)


def test_duplicate_event_is_ignored() -> None:
    """The same event twice changes nothing the second time."""
    r = ref("orders", "d1")
    states, effects = feed(JOIN, [r, r])
    assert any(isinstance(e, Ignored) and e.reason == "duplicate" for e in effects)
    assert len(states[partition_key({"dt": "d1"})].inputs["orders"]) == 1


def test_parts_of_one_dataset_accumulate_before_fire() -> None:
    """Several partitions of one dataset that share the join key are all passed to the run."""
    refs = [ref("orders", "d1", "1"), ref("orders", "d1", "2"), ref("inventory", "d1")]
    _, effects = feed(JOIN, refs)
    [fire] = fires(effects)
    assert sorted(r.event_id for r in fire.inputs if r.dataset == "orders") == [
        "orders:d1:1:0",
        "orders:d1:2:0",
    ]


def test_within_schedules_and_cancels_expiry() -> None:
    """A `within` join schedules an expiry timer at its first input and cancels it on fire."""
    spec = RuleSpec("r", "all", ("orders", "inventory"), ("dt",), within=timedelta(hours=2))
    _, effects = feed(spec, [ref("orders", "d1")])
    [timer] = [e for e in effects if isinstance(e, ScheduleTimer)]
    assert timer.due == T0 + timedelta(hours=2)
    _, effects = feed(spec, [ref("orders", "d1"), ref("inventory", "d1")])
    assert any(isinstance(e, CancelTimer) for e in effects)


def test_expiry_reports_arrived_and_missing_then_a_new_generation_opens() -> None:
    """An expired partial match names what arrived and what is missing; a later input
    opens a fresh generation instead of completing the expired one."""
    spec = RuleSpec("r", "all", ("orders", "inventory"), ("dt",), within=timedelta(hours=2))
    states, _ = feed(spec, [ref("orders", "d1")])
    key = partition_key({"dt": "d1"})
    assert on_expiry(spec, states[key], 1, T0 + timedelta(hours=1)) is None  # not yet due
    step = on_expiry(spec, states[key], 1, T0 + timedelta(hours=2))
    assert step is not None
    [expired] = step.effects
    assert isinstance(expired, Expired)
    assert expired.missing == ("inventory",)
    assert [r.dataset for r in expired.arrived] == ["orders"]
    assert step.state.status == "expired"
    late = on_input(spec, step.state, ref("inventory", "d1"), T0 + timedelta(hours=3))
    assert late.state.generation == 2
    assert fires(list(late.effects)) == []


def test_stale_expiry_timer_is_a_no_op() -> None:
    """A timer for a generation that already fired does nothing."""
    spec = RuleSpec("r", "all", ("orders", "inventory"), ("dt",), within=timedelta(hours=2))
    states, _ = feed(spec, [ref("orders", "d1"), ref("inventory", "d1")])
    assert on_expiry(spec, states[partition_key({"dt": "d1"})], 1, T0 + timedelta(days=1)) is None


def test_state_round_trips_through_dict() -> None:
    """MatchState survives to_dict/from_dict unchanged (what the store keeps)."""
    spec = RuleSpec("r", "all", ("orders", "inventory"), ("dt",), within=timedelta(hours=2))
    states, _ = feed(spec, [ref("orders", "d1")])
    state = states[partition_key({"dt": "d1"})]
    assert MatchState.from_dict(state.to_dict()) == state


def test_run_id_is_deterministic() -> None:
    """The run id depends only on rule, partition key and generation."""
    assert run_id_for("r", '{"dt":"d1"}', 1) == run_id_for("r", '{"dt":"d1"}', 1)
    assert run_id_for("r", '{"dt":"d1"}', 1) != run_id_for("r", '{"dt":"d1"}', 2)


# -- properties -------------------------------------------------------------------------------

DATASETS = ("a", "b", "c")
arrivals = st.lists(
    st.tuples(
        st.sampled_from(DATASETS), st.sampled_from(["d1", "d2", "d3"]), st.sampled_from(["1", "2"])
    ),
    unique=True,
    max_size=14,
)


@settings(max_examples=300, deadline=None)
@given(arrivals, st.randoms(use_true_random=False))
def test_fired_keys_do_not_depend_on_arrival_order(items: list, rnd) -> None:
    """Whatever the arrival order, the same partition keys fire, and with on_update: ignore
    the same fires (rule, key, generation 1) happen."""
    spec = RuleSpec("r", "all", DATASETS, ("dt",), on_update="ignore")
    refs = [ref(d, dt, n) for d, dt, n in items]
    shuffled = list(refs)
    rnd.shuffle(shuffled)
    _, first = feed(spec, refs)
    _, second = feed(spec, shuffled)
    assert {f.run_id for f in fires(first)} == {f.run_id for f in fires(second)}
    rerun = RuleSpec("r", "all", DATASETS, ("dt",))
    _, first = feed(rerun, refs)
    _, second = feed(rerun, shuffled)
    assert {f.key for f in fires(first)} == {f.key for f in fires(second)}


@settings(max_examples=300, deadline=None)
@given(arrivals)
def test_feeding_the_same_events_again_fires_nothing_new(items: list) -> None:
    """Replaying the events into the state they built fires nothing new, whatever on_update."""
    refs = [ref(d, dt, n) for d, dt, n in items]
    for on_update in ("ignore", "rerun"):
        spec = RuleSpec("r", "all", DATASETS, ("dt",), on_update=on_update)  # type: ignore[arg-type]
        states, _ = feed(spec, refs)
        effects: list = []
        for r in refs:
            key = partition_key(spec.key_of(r.partition))
            step = on_input(spec, states[key], r, T0)
            states[key] = step.state
            effects.extend(step.effects)
        assert fires(effects) == []


def test_a_match_carries_the_version_it_opened_under_until_its_next_generation() -> None:
    """The core never sets a match's version; it keeps it through inputs and the fire of
    the generation, and a new generation starts without one (the engine sets it)."""
    first = on_input(JOIN, None, ref("orders", "d1"), T0).state
    assert first.version is None
    opened = replace(first, version="v1aaaaaaaaaa")
    fired = on_input(JOIN, opened, ref("inventory", "d1"), T0).state
    assert (fired.status, fired.version) == ("fired", "v1aaaaaaaaaa")
    again = on_input(JOIN, fired, ref("orders", "d1", version=1), T0).state
    assert (again.generation, again.version) == (2, None)
