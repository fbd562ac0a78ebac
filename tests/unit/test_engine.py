"""The engine on the in-memory store: dedupe, dead letters, timers, inbox, order independence."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from eventflow.config.loader import load_pipeline
from eventflow.engine import Engine
from eventflow.events import Observation, utcnow
from eventflow.pipeline import EMIT_SENSOR, CompiledPipeline
from eventflow.records import InboxItem
from eventflow.store.memory import MemoryStore

PIPELINE = """
sensors:
  landing: {type: directory, path: ./landing}
  feed: {type: directory, path: ./feed}
datasets:
  orders:    {sensor: landing, key: "orders/{dt}/_SUCCESS"}
  inventory: {sensor: landing, key: "inventory/{dt}.csv"}
  metrics:   {sensor: feed, key: "m/{n}", partition: {dt: payload.dt}}
rules:
  report:
    when: {all: [orders, inventory], by: [dt], within: 1h}
    on_update: ignore
    run: {command: ["true"]}
  watch:
    when: {any: [metrics], by: [dt]}
    run: {command: ["true"]}
publish:
  - {type: file, path: out.jsonl}
"""


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def pipeline(tmp_path: Path) -> CompiledPipeline:
    (tmp_path / "p.yaml").write_text(PIPELINE)
    return load_pipeline(tmp_path / "p.yaml")


def file_obs(key: str, version: int = 0, acks: list[str] | None = None) -> Observation:
    position = {"path": key, "size": 1, "mtime_ns": version}
    return Observation(
        sensor="landing",
        position=position,
        key=key,
        time=datetime(2024, 1, 1, tzinfo=UTC),
        cursor=(key, {"size": 1, "mtime_ns": version}),
        on_commit=(lambda: acks.append(key)) if acks is not None else None,
    )


async def runs(store: MemoryStore) -> list[tuple[str, str, int]]:
    return sorted(
        (r.rule, r.partition["dt"], r.generation) for r in await store.list_runs(limit=10**6)
    )


async def test_join_fires_once_and_records_everything_in_one_commit(tmp_path: Path) -> None:
    """Both inputs in one batch fire one run; cursors, events, the match and the outbox are
    written and the sources acknowledged after the commit."""
    acks: list[str] = []
    async with MemoryStore() as store:
        engine = Engine(pipeline(tmp_path), store, clock=Clock())
        stats = await engine.process(
            [file_obs("orders/d1/_SUCCESS", acks=acks), file_obs("inventory/d1.csv", acks=acks)]
        )
        assert (stats.events, stats.fires) == (2, 1)
        assert await runs(store) == [("report", "d1", 1)]
        assert acks == ["orders/d1/_SUCCESS", "inventory/d1.csv"]
        assert set(await store.load_cursors("landing")) == {
            "orders/d1/_SUCCESS",
            "inventory/d1.csv",
        }
        types = [i.event.type for i in await store.fetch_outbox("file", 100)]
        assert types == ["eventflow.dataset.available"] * 2


async def test_redelivered_observation_is_a_duplicate_but_still_acknowledged(
    tmp_path: Path,
) -> None:
    """An observation seen again in a later batch (or twice in one) fires nothing new, and
    is still acknowledged so the source moves on."""
    acks: list[str] = []
    async with MemoryStore() as store:
        engine = Engine(pipeline(tmp_path), store, clock=Clock())
        await engine.process([file_obs("orders/d1/_SUCCESS"), file_obs("inventory/d1.csv")])
        stats = await engine.process(
            [file_obs("orders/d1/_SUCCESS", acks=acks), file_obs("orders/d1/_SUCCESS", acks=acks)]
        )
        assert (stats.duplicates, stats.fires, stats.events) == (2, 0, 0)
        assert acks == ["orders/d1/_SUCCESS"] * 2
        assert await runs(store) == [("report", "d1", 1)]


async def test_observation_announcing_nothing_only_moves_the_cursor(tmp_path: Path) -> None:
    """An observation that matches no dataset writes no event and costs no id lookup: its
    cursor advances and it is acknowledged; redelivered, it again does nothing."""
    acks: list[str] = []
    async with MemoryStore() as store:
        looked_up: list[set[str]] = []
        lookup = store.committed_seen_events

        async def spy(ids: set[str]) -> set[str]:
            looked_up.append(set(ids))
            return await lookup(ids)

        store.committed_seen_events = spy  # type: ignore[method-assign]
        engine = Engine(pipeline(tmp_path), store, clock=Clock())
        for _ in range(2):
            stats = await engine.process([file_obs("elsewhere/x.csv", acks=acks)])
            assert (stats.events, stats.duplicates, stats.arrivals) == (0, 0, 0)
        assert acks == ["elsewhere/x.csv"] * 2
        assert looked_up == []
        assert await store.load_cursors("landing") == {
            "elsewhere/x.csv": {"size": 1, "mtime_ns": 0}
        }
        assert (await store.counts())["events"] == 0


async def test_malformed_message_is_dead_lettered_and_the_batch_goes_on(tmp_path: Path) -> None:
    """A payload the dataset cannot read is recorded as a dead letter with its position; the
    other observations of the batch are processed."""
    bad = Observation(sensor="feed", position={"offset": 1}, key="m/1", payload={"no": "dt"})
    good = Observation(sensor="feed", position={"offset": 2}, key="m/2", payload={"dt": "d9"})
    async with MemoryStore() as store:
        engine = Engine(pipeline(tmp_path), store, clock=Clock())
        stats = await engine.process([bad, good])
        assert (stats.deadletters, stats.fires) == (1, 1)
        [letter] = await store.list_deadletters()
        assert letter.position == {"offset": 1}
        assert "dt" in letter.error
        # Publishers that take `eventflow.event.deadlettered` (a dead-letter file or topic)
        # get it, with the position and the error.
        [event] = [
            i.event
            for i in await store.fetch_outbox("file", 100)
            if i.event.type == "eventflow.event.deadlettered"
        ]
        assert event.data["position"] == {"offset": 1}
        assert event.data["error"] == letter.error
        # A redelivery of the bad message is recognised, not dead-lettered twice.
        stats = await engine.process([bad])
        assert (stats.duplicates, stats.deadletters) == (1, 0)


async def test_partial_match_expires_through_a_durable_timer(tmp_path: Path) -> None:
    """A join missing an input past `within` expires when its timer falls due, and the
    expiry is published with what is missing."""
    clock = Clock()
    async with MemoryStore() as store:
        engine = Engine(pipeline(tmp_path), store, clock=clock)
        await engine.process([file_obs("orders/d1/_SUCCESS")])
        assert await store.next_timer_due() == clock.now + timedelta(hours=1)
        clock.now += timedelta(minutes=59)
        await engine.process([])
        assert [m.status for m in await store.list_matches()] == ["open"]
        clock.now += timedelta(minutes=2)
        stats = await engine.process([])
        assert stats.expired == 1
        [match] = await store.list_matches()
        assert match.status == "expired"
        expired = [
            i.event
            for i in await store.fetch_outbox("file", 100)
            if i.event.type == "eventflow.match.expired"
        ]
        assert expired[0].data["missing"] == ["inventory"]
        assert await store.next_timer_due() is None


async def test_inbox_items_are_consumed_once(tmp_path: Path) -> None:
    """An emitted dataset partition fires its rule, is deleted from the inbox, and the same
    emit id again counts once."""
    async with MemoryStore() as store:
        engine = Engine(pipeline(tmp_path), store, clock=Clock())
        item = InboxItem(EMIT_SENSOR, "metrics", {"dt": "d5"}, {"emit_id": "x"}, None, utcnow())
        await store.add_inbox(item)
        await store.add_inbox(item)
        engine.wake()
        stats = await engine.process([])
        assert (stats.inbox, stats.duplicates, stats.fires) == (2, 1, 1)
        assert await store.fetch_inbox(10) == []


observation_sets = st.lists(
    st.tuples(
        st.sampled_from(["orders/{}/_SUCCESS", "inventory/{}.csv"]),
        st.sampled_from(["d1", "d2", "d3", "d4"]),
        st.integers(0, 1),
    ),
    unique=True,
    min_size=1,
    max_size=16,
)


@settings(max_examples=40, deadline=None)
@given(observation_sets, st.randoms(use_true_random=False), st.integers(1, 5))
def test_what_fires_does_not_depend_on_order_or_batching(
    tmp_path_factory: object, items: list[tuple[str, str, int]], rnd: random.Random, size: int
) -> None:
    """Whatever the arrival order and batch boundaries, the same runs are created, and
    feeding everything again creates none."""
    root = Path(tmp_path_factory.mktemp("p"))  # type: ignore[attr-defined]
    obs = [file_obs(k.format(dt), v) for k, dt, v in items]

    async def feed(order: list[Observation]) -> list[tuple[str, str, int]]:
        async with MemoryStore() as store:
            engine = Engine(pipeline(root), store, clock=Clock())
            for i in range(0, len(order), size):
                await engine.process(order[i : i + size])
            first = await runs(store)
            for i in range(0, len(order), size):
                stats = await engine.process(order[i : i + size])
                assert stats.fires == 0
            assert await runs(store) == first
            return first

    shuffled = list(obs)
    rnd.shuffle(shuffled)
    assert asyncio.run(feed(obs)) == asyncio.run(feed(shuffled))


async def test_pipelined_batches_see_the_state_of_the_batch_still_committing(
    tmp_path: Path,
) -> None:
    """Through the run loop, with batches of two, a join whose inputs fall into consecutive
    batches (the second evaluated while the first commits) fires exactly once."""
    (tmp_path / "p.yaml").write_text(PIPELINE + "engine: {batch_size: 2}\n")
    acks: list[str] = []
    async with MemoryStore() as store:
        engine = Engine(load_pipeline(tmp_path / "p.yaml"), store)
        runner = asyncio.create_task(engine.run())
        order = []
        for d in range(20):
            order += [
                file_obs(f"orders/d{d}/_SUCCESS", acks=acks),
                file_obs(f"inventory/d{d}.csv", acks=acks),
            ]
        # Shift by one so that every join straddles two batches, and send duplicates too.
        order = order[1:] + order[:1] + order[:6]
        for obs in order:
            await engine.submit(obs)
        async with asyncio.timeout(10):
            while len(acks) < len(order):  # noqa: ASYNC110 - acks come from the engine
                await asyncio.sleep(0.01)
        engine.stop()
        await runner
        assert await runs(store) == [("report", f"d{d}", 1) for d in sorted(range(20), key=str)]


async def test_a_redrive_feeds_the_kept_message_through_the_fixed_pipeline_once(
    tmp_path: Path,
) -> None:
    """A dead letter whose redrive is requested is evaluated with the engine's (fixed)
    pipeline: its event keeps the dead letter's id and fires the rule once, and the dead
    letter is redriven in the same commit; a message that still fails stays open."""
    bad = Observation(sensor="feed", position={"offset": 1}, key="m/1", payload={"day": "d9"})
    worse = Observation(sensor="feed", position={"offset": 2}, key="m/2", payload={"no": 1})
    async with MemoryStore() as store:
        stats = await Engine(pipeline(tmp_path), store, clock=Clock()).process([bad, worse])
        assert stats.deadletters == 2
        (tmp_path / "p.yaml").write_text(PIPELINE.replace("payload.dt", "payload.day"))
        fixed = Engine(load_pipeline(tmp_path / "p.yaml"), store, clock=Clock())
        for letter in (bad, worse):
            await store.act_on_deadletter(letter.id, "redrive", "cli:ops", Clock()())
        stats = await fixed.process([])
        assert (stats.events, stats.fires) == (1, 1)
        done, still = await store.get_deadletter(bad.id), await store.get_deadletter(worse.id)
        assert done is not None
        assert still is not None
        assert (done.status, [h["action"] for h in done.history]) == (
            "redriven",
            ["redrive_requested", "redriven"],
        )
        assert still.status == "open"
        assert still.history[-1]["action"] == "redrive_failed"
        assert [e.id for e in await store.get_events([bad.id])] == [bad.id]
        fixed.wake()
        stats = await fixed.process([bad])  # a redelivery of the original: a duplicate
        assert (stats.fires, stats.duplicates) == (0, 1)
        assert (await store.counts())["runs_pending"] == 1
