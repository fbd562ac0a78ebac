"""The event log as replay, backfill and retention read it: pages in write order, pruning."""

from __future__ import annotations

import asyncio
from pathlib import Path

from eventflow.config.loader import load_pipeline
from eventflow.records import Changes
from eventflow.replay import retention_loop
from eventflow.types import Store
from tests.integration.test_store_contract import at, store, stored_event

__all__ = ["store"]  # the contract's fixture: every store (memory, SQLite, PostgreSQL)


async def log(store: Store, *events: tuple[str, float, str]) -> None:
    async with store.transaction() as tx:
        await tx.apply(Changes(events=[stored_event(e, m, s) for e, m, s in events]))


async def test_pages_come_in_commit_order_and_end_with_an_empty_page(store: Store) -> None:
    """Paging with the last sequence number visits every event once, commit after commit."""
    await log(store, ("c", 0, "lake"), ("a", 1, "lake"), ("b", 2, "lake"))
    await log(store, ("e", 3, "lake"), ("d", 3, "lake"))
    seen, after = [], 0
    while page := await store.read_events(after=after, limit=2):
        seen += [e.id for _, e in page]
        after = page[-1][0]
    assert sorted(seen[:3]) == ["a", "b", "c"]
    assert sorted(seen[3:]) == ["d", "e"]


async def test_since_and_sensors_filter_the_log(store: Store) -> None:
    """Only events received at or after ``since``, of the named sensors, are read."""
    await log(store, ("a", 0, "lake"), ("b", 10, "dir"), ("c", 20, "lake"), ("d", 30, "lake"))
    page = await store.read_events(since=at(10.5), limit=10)
    assert [e.id for _, e in page] == ["b", "c", "d"]  # received at minutes + 0.5
    page = await store.read_events(since=at(10.5), sensors=["lake"], limit=10)
    assert [e.id for _, e in page] == ["c", "d"]
    assert await store.read_events(since=at(60), limit=10) == []


async def test_prune_deletes_the_oldest_events_in_chunks(store: Store) -> None:
    """Events received before the cut are deleted, at most ``limit`` per call."""
    await log(store, *((f"e{i}", i, "lake") for i in range(5)))
    assert await store.prune_events(at(3), limit=2) == 2
    assert await store.prune_events(at(3), limit=2) == 1
    assert await store.prune_events(at(3), limit=2) == 0
    assert [e.id for _, e in await store.read_events(limit=10)] == ["e3", "e4"]
    assert (await store.counts())["events"] == 2


async def test_retention_prunes_at_start_and_keeps_the_recent_events(
    store: Store, tmp_path: Path
) -> None:
    """``retention: {events: 1h}``: the loop deletes what was received over an hour ago at
    once, keeps the rest, and keeps running until cancelled."""
    await log(store, ("old", 0, "lake"), ("new", 100, "lake"))
    (tmp_path / "p.yaml").write_text(
        "sensors: {lake: {type: directory, path: .}}\nretention: {events: 1h}\n"
    )
    pipeline = load_pipeline(tmp_path / "p.yaml")
    loop = asyncio.create_task(retention_loop(pipeline, store, clock=lambda: at(120)))
    for _ in range(200):
        if (await store.counts())["events"] == 1:
            break
        await asyncio.sleep(0.01)
    assert not loop.done()
    loop.cancel()
    assert [e.id for _, e in await store.read_events(limit=10)] == ["new"]
