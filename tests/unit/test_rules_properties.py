"""Property tests of the rules core against reference models.

Random arrival orders, duplicates, random clock advances, and crashes simulated as a
restore of the last checkpoint followed by the redelivery of everything after it: the
fires, expiries, deadline misses and batches are those of a simple reference model.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from eventflow.events import InputRef
from eventflow.rules import BatchSpec, DeadlineExpr, Group, Need, RuleSpec
from tests.unit.rules_sim import Sim

T0 = datetime(2024, 1, 1, tzinfo=UTC)
S = timedelta(seconds=1)


def ref(dataset: str, partition: dict[str, str], n: int) -> InputRef:
    eid = f"{dataset}:{sorted(partition.items())}:{n}"
    return InputRef(eid, dataset, partition, "s", {"n": n}, T0.isoformat())


def deliver(
    sim: Sim, arrivals: list[tuple[InputRef, datetime]], commits: set[int], crashes: set[int]
) -> None:
    """Feed ``arrivals`` (each duplicated where the draw says so) with a checkpoint after
    the indices in ``commits`` and a crash after those in ``crashes``: the arrivals since
    the last checkpoint are delivered again, as a source redelivers what was not acked."""
    pending: list[tuple[InputRef, datetime]] = []
    for i, (r, t) in enumerate(arrivals):
        sim.feed(r, t)
        pending.append((r, t))
        if i in crashes:
            sim.crash()
            for again, when in pending:
                sim.feed(again, when)
        if i in commits:
            sim.commit()
            pending = []


schedules = st.tuples(st.sets(st.integers(0, 60)), st.sets(st.integers(0, 60)))


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from("abh"), st.integers(0, 2), st.integers(0, 3), st.integers(0, 1)),
        max_size=60,
    ),
    order=st.randoms(use_true_random=False),
    dup=st.lists(st.integers(0, 59), max_size=10),
    points=schedules,
)
def test_joins_fire_the_reference_partitions(
    events: list[tuple[str, int, int, int]],
    order,
    dup: list[int],
    points: tuple[set[int], set[int]],
) -> None:
    """all(a, b, h*4) by dt fires exactly the days where a, b and four hours of h arrived,
    whatever the order, duplicates and crashes."""
    spec = RuleSpec(
        "r",
        "all",
        ("a", "b", "h"),
        ("dt",),
        condition=Group("all", (Need("a"), Need("b"), Need("h", 4))),
        late="ignore",
    )
    refs = [ref(ds, {"dt": f"d{d}", "hr": str(h)}, v) for ds, d, h, v in events]
    refs += [refs[i] for i in dup if i < len(refs)]
    order.shuffle(refs)
    sim = Sim(spec)
    deliver(sim, [(r, T0) for r in refs], *points)
    expected = set()
    for d in {r.partition["dt"] for r in refs}:
        has = {
            ds: {r.partition["hr"] for r in refs if r.dataset == ds and r.partition["dt"] == d}
            for ds in "abh"
        }
        if has["a"] and has["b"] and len(has["h"]) >= 4:
            expected.add(d)
    assert {f.partition["dt"] for f in sim.d.fires.values()} == expected
    assert len(sim.d.fires) == len(expected)


@settings(max_examples=150, deadline=None)
@given(
    arrivals=st.lists(
        st.tuples(st.sampled_from("ab"), st.integers(0, 3), st.integers(0, 6 * 86400)),
        max_size=30,
    ),
    within=st.none() | st.integers(60, 2 * 86400),
    points=schedules,
)
def test_deadlines_and_expiry_match_the_reference(
    arrivals: list[tuple[str, int, int]], within: int | None, points: tuple[set[int], set[int]]
) -> None:
    """all(a, b) with `expect_by: {dt} + 1d` (and maybe `within`): a day misses its deadline
    exactly when it had not fired by then, once; matches expire per the window."""
    spec = RuleSpec(
        "r",
        "all",
        ("a", "b"),
        ("dt",),
        within=within * S if within is not None else None,
        deadline=DeadlineExpr.parse("{dt} + 1d"),
        late="ignore",
    )
    timed = sorted(
        (
            (ref(ds, {"dt": f"2024-01-0{d + 1}"}, i), T0 + secs * S)
            for i, (ds, d, secs) in enumerate(arrivals)
        ),
        key=lambda x: x[1],
    )
    sim = Sim(spec)
    deliver(sim, timed, *points)
    end = T0 + timedelta(days=30)
    sim.advance(end)

    # The reference: per day, walk the arrivals in time order with timers first.
    fired, missed, expired = set(), set(), 0
    for day in {r.partition["dt"] for r, _ in timed}:
        deadline = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
        seen: set[str] = set()
        opened: datetime | None = None
        closed = False  # fired, or expired with `late: ignore`
        fire_time = None
        for r, t in [x for x in timed if x[0].partition["dt"] == day]:
            if (
                within is not None
                and opened is not None
                and not closed
                and t >= opened + within * S
            ):
                expired, closed = expired + 1, True
            if closed:
                continue
            opened = opened or t
            seen.add(r.dataset)
            if seen == {"a", "b"}:
                closed, fire_time = True, t
                fired.add(day)
        if within is not None and opened is not None and not closed and end >= opened + within * S:
            expired += 1
        if fire_time is None or fire_time >= deadline:
            missed.add(day)
    assert {f.partition["dt"] for f in sim.d.fires.values()} == fired
    assert sorted(m.partition["dt"] for m in sim.d.missed) == sorted(missed)
    assert len(sim.d.expired) == expired


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 120), max_size=40),
    max_events=st.none() | st.integers(1, 8),
    max_wait=st.integers(1, 200),
    dup=st.lists(st.integers(0, 39), max_size=8),
    points=schedules,
)
def test_batches_match_the_reference(
    gaps: list[int],
    max_events: int | None,
    max_wait: int,
    dup: list[int],
    points: tuple[set[int], set[int]],
) -> None:
    """Every event lands in exactly one batch; a batch closes at `max_events` or `max_wait`
    after its first event, whichever comes first; crashes and redeliveries change nothing."""
    spec = RuleSpec("r", "any", ("f",), (), batch=BatchSpec(max_events, max_wait * S))
    times, t = [], T0
    for g in gaps:
        t += g * S
        times.append(t)
    timed = [(ref("f", {}, i), when) for i, when in enumerate(times)]
    for i in sorted(dup):
        if i < len(timed):
            timed.insert(i + 1, timed[i])
    sim = Sim(spec)
    deliver(sim, timed, *points)
    sim.advance(t + 1000 * S)

    batches: list[list[str]] = []
    current: list[str] = []
    start = T0
    for i, when in enumerate(times):
        eid = timed[0][0].event_id.rsplit(":", 1)[0] + f":{i}"
        if current and when >= start + max_wait * S:
            batches.append(current)
            current = []
        if not current:
            start = when
        current.append(eid)
        if max_events is not None and len(current) == max_events:
            batches.append(current)
            current = []
    if current:
        batches.append(current)
    got = sorted(sim.d.fires.values(), key=lambda f: f.generation)
    assert [[r.event_id for r in f.inputs] for f in got] == batches


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 30), min_size=1, max_size=30),
    quiet=st.integers(1, 20),
    points=schedules,
)
def test_quiet_periods_match_the_reference(
    gaps: list[int], quiet: int, points: tuple[set[int], set[int]]
) -> None:
    """A marker rewritten at random times fires once per burst (writes less than `quiet`
    apart), with the burst's last write."""
    spec = RuleSpec("r", "any", ("m",), ("dt",), quiet=quiet * S)
    times, t = [], T0
    for g in gaps:
        t += g * S
        times.append(t)
    timed = [(ref("m", {"dt": "d"}, i), when) for i, when in enumerate(times)]
    sim = Sim(spec)
    deliver(sim, timed, *points)
    sim.advance(t + 100 * S)

    bursts: list[int] = []
    for i, when in enumerate(times):
        if i and when - times[i - 1] >= quiet * S:
            bursts.append(i - 1)
    bursts.append(len(times) - 1)
    got = sorted(sim.d.fires.values(), key=lambda f: f.generation)
    assert [f.inputs[0].position["n"] for f in got] == bursts
