"""Several workers on one PostgreSQL store: conflicts between engines, claims, worker leases,
sensor leases, and a server restart under a running worker."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from eventflow.config.loader import load_pipeline
from eventflow.dispatcher import Dispatcher
from eventflow.engine import Engine
from eventflow.errors import StoreConflict, StoreError
from eventflow.events import Event, Observation, utcnow
from eventflow.pipeline import CompiledPipeline
from eventflow.records import Changes, InboxItem, NewRun, OutboxItem, RunUpdate, StoredEvent, Timer
from eventflow.rules.core import MatchState
from eventflow.store import redact_dsn
from eventflow.store.postgres import PostgresStore
from eventflow.types import PluginEnv, TaskRunner
from tests.services.postgres import PostgresProcess

PIPELINE = """
sensors:
  landing: {type: directory, path: ./landing}
datasets:
  orders:    {sensor: landing, key: "orders/{dt}/_SUCCESS"}
  inventory: {sensor: landing, key: "inventory/{dt}.csv"}
rules:
  report:
    when: {all: [orders, inventory], by: [dt]}
    on_update: ignore
    run: {command: ["sh", "-c", "echo {run_id} >> ran.log"]}
engine: {batch_size: 4, poll_interval: 50ms}
"""
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def pipeline(tmp_path: Path) -> CompiledPipeline:
    (tmp_path / "p.yaml").write_text(PIPELINE)
    return load_pipeline(tmp_path / "p.yaml")


def obs(key: str) -> Observation:
    return Observation(
        sensor="landing",
        position={"path": key, "size": 1, "mtime_ns": 0},
        key=key,
        time=T0,
        cursor=(key, {"size": 1, "mtime_ns": 0}),
    )


def state(key: str, generation: int = 1) -> MatchState:
    return MatchState(
        rule="report",
        key=key,
        partition={"dt": key},
        generation=generation,
        status="open",
        inputs={},
        opened_at=T0,
        updated_at=T0,
    )


def event(eid: str) -> StoredEvent:
    return StoredEvent(
        id=eid,
        sensor="landing",
        key=eid,
        time=T0,
        position={"path": eid},
        payload=None,
        attributes={},
        datasets=(),
        received_at=T0,
    )


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - the store has no change notification
            await asyncio.sleep(0.02)


@pytest.fixture
async def stores(postgres_dsn: str, tmp_path: Path) -> AsyncIterator[list[PostgresStore]]:
    """Two stores on one database, as two workers would open them."""
    async with AsyncExitStack() as stack:
        found = []
        for _ in range(2):
            sep = "&" if "?" in postgres_dsn else "?"  # an external server's DSN may have options
            store = PostgresStore.from_dsn(f"{postgres_dsn}{sep}lease=2", tmp_path)
            found.append(await stack.enter_async_context(store))
        yield found


async def test_a_commit_built_on_a_match_another_worker_changed_is_refused(
    stores: list[PostgresStore],
) -> None:
    """Worker A reads a rule state, worker B changes it, A's commit raises StoreConflict and
    writes nothing; after reading again A commits."""
    a, b = stores
    assert await a.committed_matches([("report", "k")]) == {}
    async with b.transaction() as tx:
        await tx.apply(Changes(matches={("report", "k"): state("k")}))
    with pytest.raises(StoreConflict, match="another worker"):
        async with a.transaction() as tx:
            await tx.apply(Changes(events=[event("e1")], matches={("report", "k"): state("k", 2)}))
    assert await a.committed_seen_events(["e1"]) == set()
    assert (await a.committed_matches([("report", "k")]))[("report", "k")].generation == 1
    async with a.transaction() as tx:
        await tx.apply(Changes(matches={("report", "k"): state("k", 2)}))
    found = await b.get_match("report", "k")
    assert found is not None
    assert found.generation == 2


async def test_an_event_another_worker_logged_meanwhile_is_a_conflict(
    stores: list[PostgresStore],
) -> None:
    """An event id A reported unseen that B logs before A commits makes A's commit fail."""
    a, b = stores
    assert await a.committed_seen_events(["e1"]) == set()
    async with b.transaction() as tx:
        await tx.apply(Changes(events=[event("e1")]))
    with pytest.raises(StoreConflict, match="logged by another worker"):
        async with a.transaction() as tx:
            await tx.apply(Changes(events=[event("e1")]))


async def test_two_engines_writing_the_same_partitions_lose_no_update(
    stores: list[PostgresStore], tmp_path: Path
) -> None:
    """Two engines get the two inputs of each partition (one each, concurrently, in small
    batches): every partition fires exactly once, whichever engine commits last."""
    a, b = stores
    engines = [Engine(pipeline(tmp_path), s) for s in stores]
    tasks = [asyncio.create_task(e.run()) for e in engines]
    dts = [f"d{i:02}" for i in range(40)]
    orders = [obs(f"orders/{dt}/_SUCCESS") for dt in dts]
    inventory = [obs(f"inventory/{dt}.csv") for dt in dts]
    random.Random(7).shuffle(inventory)
    with capture_logs() as logs:
        for first, second in zip(orders, inventory, strict=True):
            await asyncio.gather(engines[0].submit(first), engines[1].submit(second))
            await asyncio.sleep(0)

        async def fired() -> bool:
            return (await a.counts())["runs_pending"] >= len(dts)

        await until(fired)
        for e in engines:
            e.stop()
        await asyncio.gather(*tasks)
    runs = await b.list_runs(limit=1000)
    assert sorted((r.partition["dt"], r.generation) for r in runs) == [(dt, 1) for dt in dts]
    assert (await b.counts())["events"] == 2 * len(dts)
    retried = [entry for entry in logs if entry["event"] == "batch_retried"]
    print(f"{len(retried)} batch(es) evaluated again after a conflict")


async def test_two_dispatchers_never_run_the_same_run(
    stores: list[PostgresStore], tmp_path: Path
) -> None:
    """Two dispatchers claim from one store (SKIP LOCKED): every run executes exactly once."""
    p = pipeline(tmp_path)
    env = PluginEnv(p.name, p.base_dir)
    runners: dict[str, TaskRunner] = {
        n: r.task_plugin(r.task_config, env) for n, r in p.rules.items()
    }
    for s in stores:
        await s.lock_worker()
    now = utcnow()
    new = [
        NewRun(f"run-{i:03}", "report", f'{{"dt":"{i}"}}', {"dt": str(i)}, 1, (), 1, now)
        for i in range(60)
    ]
    async with stores[0].transaction() as tx:
        await tx.apply(Changes(runs=new))
    dispatchers = [Dispatcher(p, s, runners) for s in stores]
    tasks = [asyncio.create_task(d.run()) for d in dispatchers]

    async def done() -> bool:
        return (await stores[0].counts())["runs_succeeded"] == len(new)

    await until(done, timeout=60)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ran = (tmp_path / "ran.log").read_text().split()
    assert sorted(ran) == sorted(r.run_id for r in new)
    workers = {r.run_id: r for r in await stores[0].list_runs(limit=1000)}
    assert all(r.attempt == 1 for r in workers.values())


async def test_a_live_workers_runs_are_not_recovered_but_a_dead_workers_are(
    stores: list[PostgresStore],
) -> None:
    """recover_running leaves the running runs of a worker whose lease is live and takes
    back those of a worker whose lease expired."""
    a, b = stores
    await a.lock_worker()
    await b.lock_worker()
    now = utcnow()
    async with a.transaction() as tx:
        await tx.apply(Changes(runs=[NewRun("r1", "report", "k", {}, 1, (), 1, now)]))
        [claimed] = await tx.claim_runs(now, 10, {})
    assert claimed.run_id == "r1"
    assert await b.recover_running(utcnow()) == []
    assert a._heartbeat is not None
    a._heartbeat.cancel()  # A hangs: its lease (2 s) runs out

    async def recovered() -> bool:
        run = await b.get_run("r1")
        return run is not None and run.status == "pending"

    await until(recovered, timeout=15)  # B's heartbeat sweeps it back to pending


async def test_a_late_result_of_an_older_attempt_does_not_overwrite_a_newer_one(
    stores: list[PostgresStore],
) -> None:
    """A worker that finishes attempt 1 after the run was taken back and started again as
    attempt 2 elsewhere does not overwrite attempt 2's state."""
    a, _ = stores
    now = utcnow()
    async with a.transaction() as tx:
        await tx.apply(Changes(runs=[NewRun("r1", "report", "k", {}, 1, (), 3, now)]))
        await tx.claim_runs(now, 10, {})
    await a.recover_running(now)  # no live worker holds it: back to pending
    async with a.transaction() as tx:
        [second] = await tx.claim_runs(now, 10, {})
    assert second.attempt == 2
    late = RunUpdate("r1", "failed", 1, utcnow(), finished_at=utcnow(), error="late")
    async with a.transaction() as tx:
        await tx.apply(Changes(run_updates=[late]))
    run = await a.get_run("r1")
    assert run is not None
    assert (run.status, run.attempt, run.error) == ("running", 2, None)


async def test_one_worker_drains_each_outbox_and_polls_timers_and_inbox(
    stores: list[PostgresStore],
) -> None:
    """With two workers, the outbox of a publisher, the due timers and the inbox are read by
    the worker that holds their lease; the other gets nothing until it holds it."""
    a, b = stores
    await a.lock_worker()
    await b.lock_worker()
    item = OutboxItem("file", Event(id="ce-1", source="t", type="t", time=T0, data={}))
    async with a.transaction() as tx:
        await tx.apply(
            Changes(
                outbox=[item],
                timers_add=[Timer("expiry", "report", "k", 1, T0)],
                inbox_add=[InboxItem("emit", "orders", {"dt": "1"}, {"n": 1}, None, T0)],
            )
        )
    now = utcnow()
    assert len(await a.fetch_outbox("file", 10)) == 1
    assert await b.fetch_outbox("file", 10) == []
    assert len(await b.due_timers(now, 10)) == 1  # B polls first: it holds engine:polls
    assert len(await b.fetch_inbox(10)) == 1
    assert await a.due_timers(now, 10) == []
    assert await a.fetch_inbox(10) == []
    assert len(await a.timers(10)) == 1  # what plan and a version's start read: any worker
    await b.close()  # the holder goes: its leases pass on (once its session has ended)

    async def taken_over() -> bool:
        return len(await a.due_timers(now, 10)) == 1

    await until(taken_over, timeout=10)


async def test_a_lease_is_held_by_one_worker_and_passes_on_when_the_holder_goes(
    stores: list[PostgresStore],
) -> None:
    """The holder of a lease keeps it; another worker gets it once the holder's connection
    is gone (a killed process), and the holder learns it lost it."""
    a, b = stores
    await a.lock_worker()
    await b.lock_worker()
    lost_a = await a.try_lease("sensor:p:landing")
    assert lost_a is not None
    assert await b.try_lease("sensor:p:landing") is None
    assert a._lease_conn is not None
    pid = a._lease_conn.conn.info.backend_pid
    async with b.transaction() as tx:  # the server ends A's session, as if A had died
        await tx.claim_runs(utcnow(), 0, {})
    async with b._exclusive():
        writer = await b._writer_ops()
        await writer.conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    async with asyncio.timeout(10):
        async with b.lease("sensor:p:landing") as lost_b:
            assert not lost_b.is_set()
    await a._lease_call("probe", lambda ops: ops.conn.execute("SELECT 1"))
    assert lost_a.is_set()


async def test_the_engine_survives_a_server_restart(tmp_path: Path) -> None:
    """With the PostgreSQL server stopped and started again under a running engine, the
    store reconnects with backoff and every observation is committed exactly once."""
    server = PostgresProcess()
    server.start()
    try:
        async with PostgresStore.from_dsn(server.dsn(), tmp_path) as store:
            await store.lock_worker()
            engine = Engine(pipeline(tmp_path), store)
            task = asyncio.create_task(engine.run())
            for i in range(10):
                await engine.submit(obs(f"orders/d{i}/_SUCCESS"))
            await until(lambda: _events(store, 10))
            with capture_logs() as logs:
                await asyncio.to_thread(server.restart)
                for i in range(10):
                    await engine.submit(obs(f"inventory/d{i}.csv"))
                    await engine.submit(obs(f"orders/d{i}/_SUCCESS"))  # a duplicate
                await until(lambda: _events(store, 20))
            engine.stop()
            await task
            assert (await store.counts())["runs_pending"] == 10
            assert any(e["event"] in ("store_reconnecting", "batch_retried") for e in logs)
    finally:
        server.remove()


async def _events(store: PostgresStore, n: int) -> bool:
    return (await store.counts())["events"] >= n


def test_the_dsn_password_never_shows(tmp_path: Path) -> None:
    """A password in the DSN is redacted in the store's repr and in its errors."""
    store = PostgresStore.from_dsn("postgresql://ef:s3cret@127.0.0.1:1/db?lease=5", tmp_path)
    assert "s3cret" not in repr(store)
    assert store.lease_seconds == 5
    assert "s3cret" not in redact_dsn(store.dsn)
    with pytest.raises(StoreError, match="not a number"):
        PostgresStore.from_dsn("postgresql://ef:s3cret@h/db?lease=soon", tmp_path)


async def test_an_unreachable_server_fails_after_the_reconnect_timeout(tmp_path: Path) -> None:
    """Opening a store whose server does not answer retries until reconnect_timeout, then
    raises a StoreError that names the server without its password."""
    from tests.services._process import free_port

    dsn = f"postgresql://ef:s3cret@127.0.0.1:{free_port()}/db?reconnect_timeout=0.5"
    store = PostgresStore.from_dsn(dsn, tmp_path)
    started = asyncio.get_running_loop().time()
    with pytest.raises(StoreError) as info:
        await store.open()
    assert "s3cret" not in str(info.value)
    assert asyncio.get_running_loop().time() - started < timedelta(seconds=10).total_seconds()
