"""Backfill requests in the store: the same rows and answers in memory, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventflow.backfill_requests import new_request
from eventflow.errors import StoreError
from eventflow.records import Changes, NewRun, RunUpdate
from eventflow.store.memory import MemoryStore
from eventflow.store.postgres import PostgresStore
from eventflow.store.sqlite import SQLiteStore
from eventflow.types import Store

T0 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)


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


async def test_a_backfill_request_round_trips_and_keeps_who_asked_when_progress_is_saved(
    store: Store,
) -> None:
    """Saving progress updates the counts and status but never the request or its asker."""
    request = new_request("daily", "2024-05-01", "2024-05-31", "cli:ana", T0, rate=12.5, preview=30)
    await store.save_backfill(request)
    assert await store.get_backfill(request.id) == request
    later = T0 + timedelta(minutes=1)
    moved = request.progressed(
        status="running", planned=30, fired=7, skipped=2, incomplete=1, updated_at=later
    )
    await store.save_backfill(moved.progressed(requested_by="someone else"))
    found = await store.get_backfill(request.id)
    assert found == moved
    assert found is not None
    assert found.requested_by == "cli:ana"
    assert found.rate == 12.5
    assert await store.get_backfill("bf-none") is None


async def test_backfills_list_newest_first_and_by_status(store: Store) -> None:
    """The list is newest first; ``active`` selects pending and running ones."""
    first = new_request("daily", "a", "b", "api:ops", T0)
    second = new_request("daily", "c", "d", "api:ops", T0 + timedelta(seconds=1))
    third = new_request("daily", "e", "f", "api:ops", T0 + timedelta(seconds=2))
    for r in (first, second, third):
        await store.save_backfill(r)
    await store.save_backfill(second.progressed(status="done", finished_at=T0))
    assert [r.id for r in await store.list_backfills()] == [third.id, second.id, first.id]
    assert [r.id for r in await store.list_backfills(status="active")] == [third.id, first.id]
    assert [r.id for r in await store.list_backfills(status="done")] == [second.id]
    assert [r.id for r in await store.list_backfills(limit=1)] == [third.id]


async def test_a_cancel_request_is_kept_once_and_refused_for_an_ended_or_unknown_backfill(
    store: Store,
) -> None:
    """The first cancel request is kept (who, when), a save does not erase it, and a done or
    unknown backfill refuses one with an error that says why."""
    request = new_request("daily", "a", "b", "cli:ana", T0)
    await store.save_backfill(request)
    cancelled = await store.request_backfill_cancel(request.id, "api:ops", T0)
    assert cancelled.cancel_requested == {"by": "api:ops", "at": T0.isoformat()}
    again = await store.request_backfill_cancel(request.id, "cli:bob", T0 + timedelta(hours=1))
    assert again.cancel_requested == {"by": "api:ops", "at": T0.isoformat()}
    await store.save_backfill(request.progressed(status="running", fired=3))
    found = await store.get_backfill(request.id)
    assert found is not None
    assert found.cancel_requested is not None
    assert found.fired == 3
    await store.save_backfill(request.progressed(status="cancelled"))
    with pytest.raises(StoreError, match="is cancelled; only a pending or running"):
        await store.request_backfill_cancel(request.id, "api:ops", T0)
    with pytest.raises(StoreError, match="no backfill 'bf-none'"):
        await store.request_backfill_cancel("bf-none", "api:ops", T0)


async def test_runs_of_one_partition_and_a_rule_s_unfinished_runs_are_counted_alike(
    store: Store,
) -> None:
    """``partition_runs`` lists every generation of one partition of one rule (not another
    rule's, not another partition's); ``unfinished_runs`` counts a rule's pending and
    running runs, not its finished ones."""

    def new(rule: str, key: str, generation: int) -> NewRun:
        return NewRun(
            run_id=f"{rule}-{key}-{generation}", rule=rule, key=key, partition={"dt": key},
            generation=generation, inputs=(), max_attempts=1, created_at=T0,
        )  # fmt: skip

    runs = [new("daily", "a", 2), new("daily", "a", 1), new("daily", "b", 1), new("other", "a", 1)]
    async with store.transaction() as tx:
        await tx.apply(Changes(runs=runs))
    assert [r.run_id for r in await store.partition_runs("daily", "a")] == [
        "daily-a-1",
        "daily-a-2",
    ]
    assert await store.partition_runs("daily", "c") == []
    assert await store.unfinished_runs("daily") == 3
    async with store.transaction() as tx:
        claimed = await tx.claim_runs(T0, 1, {"other": 0})  # the oldest: daily-a-1
        done = RunUpdate("daily-a-2", "succeeded", 1, T0, finished_at=T0)
        await tx.apply(Changes(run_updates=[done]))
    assert len(claimed) == 1
    assert await store.unfinished_runs("daily") == 2  # one succeeded, one running, one pending
    assert await store.unfinished_runs("other") == 1
    assert await store.unfinished_runs("none") == 0
