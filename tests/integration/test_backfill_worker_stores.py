"""The live backfill worker over the memory, SQLite and PostgreSQL stores, with the engine
running and live events arriving: each partition fires once (a partition that fires live
between the chunk's decision and its commit is skipped), the backfill keeps its runs within
``engine.backfill_max_runs`` while they are executed, and a file it listed still reaches the
pipeline's other rules once the sensor observes it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventflow import backfill as bf
from eventflow.backfill_requests import new_request
from eventflow.backfill_worker import BackfillWorker
from eventflow.config.loader import load_pipeline
from eventflow.engine import Engine
from eventflow.events import Observation, utcnow
from eventflow.pipeline import CompiledPipeline
from eventflow.records import Changes, RunUpdate
from eventflow.store.memory import MemoryStore
from eventflow.store.postgres import PostgresStore
from eventflow.store.sqlite import SQLiteStore
from eventflow.types import Store
from eventflow.views import backfills

PIPELINE = """
name: live
sensors:
  landing: {type: directory, path: ./landing}
datasets:
  orders: {sensor: landing, key: "orders/dt={dt}/_SUCCESS"}
rules:
  daily:
    when: {all: [orders], by: [dt]}
    run: {command: ["true"]}
engine: {max_runs: 8, backfill_max_runs: 4}
"""
DAYS = [f"2024-05-{d:02d}" for d in range(1, 21)]


def landed(root: Path, text: str, days: list[str]) -> CompiledPipeline:
    """The pipeline ``text`` in ``root``, with each day's ``_SUCCESS`` landed."""
    (root / "p.yaml").write_text(text)
    for dt in days:
        path = root / "landing" / "orders" / f"dt={dt}" / "_SUCCESS"
        path.parent.mkdir(parents=True)
        path.write_text("")
    return load_pipeline(root / "p.yaml")


@pytest.fixture
def pipeline(tmp_path: Path) -> CompiledPipeline:
    return landed(tmp_path, PIPELINE, DAYS)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store
    if request.param == "memory":
        s = MemoryStore()
    elif request.param == "sqlite":
        s = SQLiteStore(tmp_path / "s.db")
    else:
        s = PostgresStore.from_dsn(request.getfixturevalue("postgres_dsn"), tmp_path)
    async with s:
        yield s


async def finish_runs(store: Store, most: list[int]) -> None:
    """Plays the dispatcher: the runs pending take 30 ms and succeed; notes the most seen."""
    while True:
        pending = await store.list_runs(status="pending", limit=100)
        most.append(len([r for r in pending if r.rule == "daily"]))
        if pending:
            await asyncio.sleep(0.03)
            updates = [RunUpdate(r.run_id, "succeeded", 1, utcnow()) for r in pending]
            async with store.transaction() as tx:
                await tx.apply(Changes(run_updates=updates))
        await asyncio.sleep(0.01)


async def test_a_live_backfill_fires_each_partition_once_within_its_share_of_runs(
    pipeline: CompiledPipeline, store: Store
) -> None:
    """Day 7 fires live while the backfill runs: twenty days, one run each, the request
    done with 19 fired and 1 skipped, never more than four of its runs unfinished."""
    engine = Engine(pipeline, store)
    worker = BackfillWorker(pipeline, store, engine)
    request = new_request("daily", "2024-05-01", "2024-05-31", "test", utcnow(), rate=200)
    await store.save_backfill(request)
    holding = engine.held
    key = "orders/dt=2024-05-07/_SUCCESS"

    async def fired() -> set[str]:
        return {r.partition["dt"] for r in await store.list_runs(rule="daily", limit=100)}

    @contextlib.asynccontextmanager
    async def live_first() -> AsyncIterator[None]:
        # The second chunk (days 5-8, of four) is decided, day 7 to run; it fires live
        # before the engine is held for the chunk's commit.
        if await fired() == set(DAYS[:4]):
            await engine.submit(Observation("landing", {"path": key, "live": 1}, key=key))
            deadline = asyncio.get_running_loop().time() + 10
            while "2024-05-07" not in await fired():
                assert asyncio.get_running_loop().time() < deadline, "day 7 did not fire"
                await asyncio.sleep(0.01)
        async with holding():
            yield

    engine.held = live_first  # type: ignore[method-assign]
    most: list[int] = []
    running = asyncio.create_task(engine.run())
    finisher = asyncio.create_task(finish_runs(store, most))
    try:
        done = await asyncio.wait_for(worker.carry_out(request), 60)
    finally:
        finisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await finisher
        engine.stop()
        await running
    assert (done.status, done.planned, done.fired, done.skipped) == ("done", 20, 19, 1)
    runs = await store.list_runs(rule="daily", limit=100)
    assert sorted(r.partition["dt"] for r in runs) == DAYS  # one run per day
    assert max(most) <= 4


TWO_RULES = PIPELINE.replace(
    "engine:",
    '  audit:\n    when: {all: [orders], by: [dt]}\n    run: {command: ["true"]}\nengine:',
)
"""The pipeline with a second rule, `audit`, on the same dataset."""


async def test_a_file_a_backfill_listed_reaches_the_other_rules_when_observed_live(
    tmp_path: Path, store: Store
) -> None:
    """A backfill of `daily` logs the files it listed (the sensor has not observed them).
    When the sensor observes one, `audit` (another rule of the same dataset) fires on it as
    it would have without the backfill, `daily` does not fire again, and a redelivery of
    the same file fires nothing."""
    pipeline = landed(tmp_path, TWO_RULES, DAYS[:3])
    engine = Engine(pipeline, store)
    worker = BackfillWorker(pipeline, store, engine)
    request = new_request("daily", "2024-05-01", "2024-05-31", "test", utcnow(), rate=200)
    await store.save_backfill(request)

    async def fired(rule: str) -> list[str]:
        return sorted(r.partition["dt"] for r in await store.list_runs(rule=rule, limit=100))

    async def observe(position: dict[str, object], key: str) -> None:
        """Hand the engine the sensor's observation; return once it is committed."""
        committed = asyncio.Event()
        await engine.submit(Observation("landing", position, key=key, on_commit=committed.set))
        await asyncio.wait_for(committed.wait(), 10)

    running = asyncio.create_task(engine.run())
    try:
        done = await asyncio.wait_for(worker.carry_out(request), 60)
        assert (done.status, done.fired) == ("done", 3)
        assert await fired("daily") == DAYS[:3]
        assert await fired("audit") == []
        [first] = [r for r in await store.list_runs(rule="daily", limit=100)
                   if r.partition["dt"] == DAYS[0]]  # fmt: skip
        [ref] = first.inputs
        key = f"orders/dt={DAYS[0]}/_SUCCESS"
        await observe(dict(ref.position), key)  # what the listing saw, observed live
        assert await fired("audit") == [DAYS[0]]
        await observe(dict(ref.position), key)  # a redelivery
    finally:
        engine.stop()
        await running
    assert await fired("daily") == DAYS[:3]
    assert await fired("audit") == [DAYS[0]]
    assert len(await store.get_events([ref.event_id])) == 1


async def test_a_backfill_of_a_renamed_rule_skips_what_ran_under_its_former_name(
    tmp_path: Path, store: Store
) -> None:
    """Days that succeeded under `daily` are skipped by a backfill of `report` (`renamed_from:
    daily`), the rest fire as `report`; without the former name's runs the backfill took
    them for never run and fired them a second time."""
    pipeline = landed(tmp_path, PIPELINE, DAYS[:4])
    engine = Engine(pipeline, store)
    running = asyncio.create_task(engine.run())
    try:
        for dt in DAYS[:2]:
            key = f"orders/dt={dt}/_SUCCESS"
            committed = asyncio.Event()
            await engine.submit(Observation("landing", {"path": key}, key=key,
                                            on_commit=committed.set))  # fmt: skip
            await asyncio.wait_for(committed.wait(), 10)
    finally:
        engine.stop()
        await running
    first = await store.list_runs(rule="daily", limit=100)
    assert sorted(r.partition["dt"] for r in first) == DAYS[:2]
    updates = [RunUpdate(r.run_id, "succeeded", 1, utcnow()) for r in first]
    async with store.transaction() as tx:
        await tx.apply(Changes(run_updates=updates))

    (tmp_path / "p.yaml").write_text(
        PIPELINE.replace("  daily:\n", "  report:\n    renamed_from: daily\n")
    )
    renamed = load_pipeline(tmp_path / "p.yaml")
    lo, hi = backfills.bounds(renamed, "report", DAYS[0], DAYS[-1])
    the_plan = await bf.plan(renamed, store, "report", lo, hi)
    actions = {i.partition["dt"]: (i.action, i.reason) for i in the_plan.items}
    assert actions == {
        DAYS[0]: ("skip", "succeeded before"),
        DAYS[1]: ("skip", "succeeded before"),
        DAYS[2]: ("run", "never ran"),
        DAYS[3]: ("run", "never ran"),
    }
