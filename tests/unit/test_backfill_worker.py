"""The live backfill worker over the in-memory store and a running engine: it fires each
partition once at its rate, skips what fired live meanwhile, resumes after its cursor,
stops when cancelled, and says why a backfill found nothing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from eventflow import backfill as bf
from eventflow.backfill_requests import BackfillRequest, new_request
from eventflow.backfill_worker import SLOWEST, BackfillWorker, _Pace, chunk_size, cursor_sensor
from eventflow.config.loader import load_pipeline
from eventflow.engine import Engine
from eventflow.errors import StoreError
from eventflow.events import Observation, utcnow
from eventflow.pipeline import CompiledPipeline
from eventflow.records import Changes, RunUpdate
from eventflow.store.memory import MemoryStore

PIPELINE = """
name: live
state: memory://
sensors:
  landing: {type: directory, path: ./landing}
datasets:
  orders: {sensor: landing, key: "orders/dt={dt}/_SUCCESS"}
rules:
  daily:
    when: {all: [orders], by: [dt]}
    run: {command: ["true"]}
engine: {backfill_max_runs: 100}  # no dispatcher here: the runs stay pending
"""
DAYS = [f"2024-05-{d:02d}" for d in range(1, 11)]


def land(root: Path, dt: str) -> None:
    path = root / "landing" / "orders" / f"dt={dt}" / "_SUCCESS"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")


@pytest.fixture
def pipeline(tmp_path: Path) -> CompiledPipeline:
    (tmp_path / "p.yaml").write_text(PIPELINE)
    (tmp_path / "landing").mkdir()
    return load_pipeline(tmp_path / "p.yaml")


class Live:
    """A memory store with its engine running, as inside ``eventflow run``."""

    def __init__(self, pipeline: CompiledPipeline) -> None:
        self.store = MemoryStore()
        self.engine = Engine(pipeline, self.store)
        self.worker = BackfillWorker(pipeline, self.store, self.engine)

    async def request(self, **options: Any) -> BackfillRequest:
        request = new_request("daily", "2024-05-01", "2024-05-31", "test", utcnow(), **options)
        await self.store.save_backfill(request)
        return request

    async def fired(self) -> list[str]:
        return sorted(r.partition["dt"] for r in await self.store.list_runs(limit=1000))


@pytest.fixture
async def live(pipeline: CompiledPipeline) -> AsyncIterator[Live]:
    running = Live(pipeline)
    async with running.store:
        task = asyncio.create_task(running.engine.run())
        yield running
        running.engine.stop()
        await task


async def test_a_live_backfill_fires_each_partition_once_in_chunks_and_records_its_progress(
    tmp_path: Path, live: Live
) -> None:
    """Ten days land: the request ends done with 10 fired of 10 planned, one run each, and
    a second request for the range fires nothing (all skipped)."""
    for dt in DAYS:
        land(tmp_path, dt)
    done = await live.worker.carry_out(await live.request(rate=40))
    assert (done.status, done.planned, done.fired, done.skipped) == ("done", 10, 10, 0)
    assert done.finished_at is not None
    assert done.message is None
    assert await live.fired() == DAYS
    version = live.worker.pipeline.version.rule("daily")
    assert {r.pipeline_version for r in await live.store.list_runs(limit=100)} == {version}
    assert await live.store.load_cursors(cursor_sensor(done.id)) == {}  # finished with it
    again = await live.worker.carry_out(await live.request(rate=1000))
    assert (again.status, again.planned, again.fired, again.skipped) == ("done", 0, 0, 10)
    assert await live.fired() == DAYS


async def test_the_rate_spaces_the_chunks(tmp_path: Path, live: Live) -> None:
    """At 20 partitions a second (chunks of 2), ten partitions take about half a second."""
    for dt in DAYS:
        land(tmp_path, dt)
    assert chunk_size(20) == 2
    assert chunk_size(0.5) == 1
    assert chunk_size(1e9) == 100
    started = asyncio.get_running_loop().time()
    await live.worker.carry_out(await live.request(rate=20))
    assert asyncio.get_running_loop().time() - started >= 0.4


async def test_a_partition_that_fires_live_after_the_plan_is_skipped_not_fired_twice(
    tmp_path: Path, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan saw day 5 unfired; it fires live before its chunk: the chunk, decided again
    with the engine held, skips it, and day 5 has one run."""
    for dt in DAYS:
        land(tmp_path, dt)
    planning = bf.plan

    async def plan_then_live(*args: Any, **kwargs: Any) -> bf.Plan:
        the_plan = await planning(*args, **kwargs)
        key = "orders/dt=2024-05-05/_SUCCESS"
        await live.engine.submit(Observation("landing", {"path": key, "live": 1}, key=key))
        await wait_for(lambda: live.store.list_runs(limit=100), lambda runs: len(runs) == 1)
        return the_plan

    monkeypatch.setattr(bf, "plan", plan_then_live)
    done = await live.worker.carry_out(await live.request(rate=1000))
    assert (done.planned, done.fired, done.skipped) == (10, 9, 1)
    assert await live.fired() == DAYS


async def test_a_partition_that_fires_live_between_its_decision_and_the_hold_is_skipped(
    tmp_path: Path, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk is decided before the engine is held; day 5 fires live in between: the
    read under the hold sees its rule state changed, decides it again and skips it."""
    for dt in DAYS:
        land(tmp_path, dt)
    holding = live.engine.held

    @contextlib.asynccontextmanager
    async def live_fire_first() -> AsyncIterator[None]:
        key = "orders/dt=2024-05-05/_SUCCESS"
        if not await live.store.list_runs(limit=100):
            await live.engine.submit(Observation("landing", {"path": key, "live": 1}, key=key))
            await wait_for(lambda: live.store.list_runs(limit=100), lambda runs: len(runs) == 1)
        async with holding():
            yield

    monkeypatch.setattr(live.engine, "held", live_fire_first)
    done = await live.worker.carry_out(await live.request(rate=1000))  # one chunk of ten
    assert (done.planned, done.fired, done.skipped) == (10, 9, 1)
    assert await live.fired() == DAYS


async def test_the_backfill_keeps_its_runs_within_backfill_max_runs(
    tmp_path: Path, pipeline: CompiledPipeline
) -> None:
    """With ``backfill_max_runs: 3`` the backfill fires a chunk only while its rule has room
    for it: never more than three runs pending or running, and it goes on as they finish
    (chunks of three at most, whatever the rate)."""
    for dt in DAYS:
        land(tmp_path, dt)
    limited = dataclasses.replace(
        pipeline, engine=pipeline.engine.model_copy(update={"backfill_max_runs": 3})
    )
    live = Live(limited)
    most = 0

    async def finish_runs() -> None:
        nonlocal most
        while True:
            pending = await live.store.list_runs(status="pending", limit=100)
            most = max(most, len(pending))
            if pending:
                await asyncio.sleep(0.05)  # the runs take a while
                updates = [RunUpdate(r.run_id, "succeeded", 1, utcnow()) for r in pending]
                async with live.store.transaction() as tx:
                    await tx.apply(Changes(run_updates=updates))
            await asyncio.sleep(0.01)

    async with live.store:
        engine = asyncio.create_task(live.engine.run())
        finisher = asyncio.create_task(finish_runs())
        done = await live.worker.carry_out(await live.request(rate=1000))
        finisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await finisher
        live.engine.stop()
        await engine
        assert await live.fired() == DAYS
    assert (done.status, done.fired) == ("done", 10)
    assert 1 <= most <= 3


async def test_a_request_resumes_after_the_cursor_its_last_chunk_committed(
    tmp_path: Path, live: Live
) -> None:
    """A running request whose cursor says days 1-4 fired (as a SIGKILL after that chunk
    leaves it) fires only days 5-10 and counts all ten."""
    for dt in DAYS:
        land(tmp_path, dt)
    request = await live.request(rate=1000)
    request = request.progressed(status="running", planned=10, fired=2)
    await live.store.save_backfill(request)
    cursor = {"after": ["2024-05-04"], "planned": 10, "base_skipped": 0, "fired": 4, "skipped": 0}
    async with live.store.transaction() as tx:
        await tx.apply(Changes(cursors={(cursor_sensor(request.id), "after"): cursor}))
    done = await live.worker.carry_out(request)
    assert (done.status, done.planned, done.fired) == ("done", 10, 10)
    assert await live.fired() == DAYS[4:]


async def test_a_cancel_request_stops_the_backfill_between_chunks(
    tmp_path: Path, live: Live
) -> None:
    """Cancelled after its first chunk, a slow backfill ends cancelled with that chunk fired
    and nothing more; one cancelled before it starts fires nothing."""
    for dt in DAYS:
        land(tmp_path, dt)
    request = await live.request(rate=5)  # chunks of one, 0.2 s apart
    task = asyncio.create_task(live.worker.carry_out(request))
    await wait_for(live.fired, lambda fired: len(fired) >= 1)
    await live.store.request_backfill_cancel(request.id, "cli:ana", utcnow())
    done = await task
    assert done.status == "cancelled"
    assert 1 <= done.fired < 10
    assert done.cancel_requested is not None
    assert done.cancel_requested["by"] == "cli:ana"
    assert len(await live.fired()) == done.fired
    early = await live.request(rate=1000, force=True)
    await live.store.request_backfill_cancel(early.id, "cli:ana", utcnow())
    assert (await live.worker.carry_out(early)).fired == 0


async def test_a_backfill_that_finds_nothing_says_why(tmp_path: Path, live: Live) -> None:
    """Nothing under the prefix, nothing matching the pattern, or everything outside the
    range: each is said, never a silent 0."""
    empty = await live.worker.carry_out(await live.request())
    assert empty.status == "done"
    assert empty.planned == 0
    assert empty.message is not None
    assert "sensor landing listed 0 under 'orders/dt='" in empty.message
    (tmp_path / "landing" / "orders" / "dt=2024-05-01").mkdir(parents=True)
    (tmp_path / "landing" / "orders" / "dt=2024-05-01" / "data.csv").write_text("")
    wrong = await live.worker.carry_out(await live.request())
    assert wrong.message is not None
    assert "none matching the datasets' patterns" in wrong.message
    assert "orders: orders/dt={dt}/_SUCCESS" in wrong.message
    land(tmp_path, "2024-06-01")
    outside = await live.worker.carry_out(await live.request())
    assert outside.message == (
        "1 partitions found, from 2024-06-01 to 2024-06-01, all outside"
        " --from 2024-05-01 --to 2024-05-31"
    )


async def test_a_request_for_a_rule_no_longer_in_the_pipeline_fails_with_the_reason(
    live: Live,
) -> None:
    """The row ends failed and says which rule is gone."""
    request = new_request("gone", "a", "b", "test", utcnow())
    await live.store.save_backfill(request)
    failed = await live.worker.carry_out(request)
    assert failed.status == "failed"
    assert failed.message == "rule 'gone' is no longer in the pipeline"


async def test_an_unexpected_error_fails_the_request_and_the_worker_goes_on(
    tmp_path: Path, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug met while carrying out a request ends that request failed with the error, and
    the worker carries out the next one."""
    for dt in DAYS[:2]:
        land(tmp_path, dt)
    broken, fine = await live.request(), await live.request()
    real = bf.plan

    async def once_broken(*args: Any, **kw: Any) -> bf.Plan:
        monkeypatch.setattr(bf, "plan", real)
        raise OverflowError("cannot convert float infinity to integer")

    monkeypatch.setattr(bf, "plan", once_broken)
    failed = await live.worker.carry_out(broken)
    assert failed.status == "failed"
    assert failed.message == "OverflowError: cannot convert float infinity to integer"
    assert (await live.store.get_backfill(broken.id)).status == "failed"  # type: ignore[union-attr]
    assert (await live.worker.carry_out(fine)).status == "done"
    assert await live.fired() == DAYS[:2]


async def test_a_worker_that_lost_the_lease_stops_before_its_next_chunk(
    tmp_path: Path, live: Live
) -> None:
    """With the backfills' lease lost (another worker may take the request over) no chunk
    fires: the store error ends the attempt, the request stays running to be resumed."""
    land(tmp_path, DAYS[0])
    request = await live.request()
    lost = asyncio.Event()
    lost.set()
    live.worker._lost = lost
    with pytest.raises(StoreError, match="lease was lost"):
        await live.worker.carry_out(request)
    assert await live.fired() == []
    assert (await live.store.get_backfill(request.id)).status == "running"  # type: ignore[union-attr]


async def test_the_engine_commits_nothing_while_it_is_held(pipeline: CompiledPipeline) -> None:
    """An observation queued while a backfill holds the engine is committed after, not
    during; a held engine that is not running lets the holder go at once."""
    live = Live(pipeline)
    async with live.store:
        async with live.engine.held():
            pass  # not running: no wait
        task = asyncio.create_task(live.engine.run())
        await asyncio.sleep(0.05)  # running
        key = "orders/dt=2024-05-01/_SUCCESS"
        async with live.engine.held():
            await live.engine.submit(Observation("landing", {"path": key}, key=key))
            await asyncio.sleep(0.2)
            assert (await live.store.counts())["events"] == 0
        await wait_for(live.store.counts, lambda counts: counts["events"] == 1)
        live.engine.stop()
        await task


async def wait_for(
    read: Callable[[], Coroutine[Any, Any, Any]], ok: Callable[[Any], bool], timeout: float = 5
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not ok(await read()):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_the_backfill_slows_down_while_the_event_loop_is_behind() -> None:
    """A wait that ends late (the loop was busy: another task held it 50 ms) doubles the
    next waits; punctual waits bring them back to the rate's pace, never below."""
    pace = _Pace()
    loop = asyncio.get_running_loop()
    loop.call_later(0.001, time.sleep, 0.05)  # blocks the loop, as a busy process does
    await pace.pause(0.01)
    assert pace.slower == 2.0
    for _ in range(10):
        loop.call_later(0.001, time.sleep, 0.05)
        await pace.pause(0.001)
    assert pace.slower == SLOWEST
    while pace.slower > 1.0:
        await pace.pause(0.0)
    assert pace.slower == 1.0
