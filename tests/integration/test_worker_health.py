"""Workers' heartbeat rows in the SQLite, PostgreSQL and memory stores: written by one
process, read by another, stale when the beats stop, forgotten after a day."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventflow.records import WorkerBeat
from eventflow.store import open_store
from eventflow.types import Store
from eventflow.views.workers import worker_state

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def beat(worker: str, at: datetime, **more: object) -> WorkerBeat:
    fields: dict[str, object] = {
        "worker": worker,
        "host": "h1",
        "pid": 42,
        "started_at": T0,
        "heartbeat_at": at,
        "beat_seconds": 5.0,
        "leases": ("sensor:p:landing",),
        "sensors": {"landing": {"connected": True, "lag": 3, "last_error": None}},
    }
    fields.update(more)
    return WorkerBeat(**fields)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres", "memory"])
async def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    elif request.param == "postgres":
        yield request.getfixturevalue("postgres_dsn")
    else:
        yield "memory://"


async def test_a_beat_is_read_back_by_another_store_object(dsn: str, tmp_path: Path) -> None:
    """A heartbeat row round-trips (times, leases, sensors' health) and is read by a second
    store opened on the same DSN, as `eventflow status` in another process does."""
    async with open_store(dsn, tmp_path) as writer:
        await writer.beat_worker(beat("w1", T0))
        await writer.beat_worker(beat("w1", T0 + timedelta(seconds=5)))  # an update
        await writer.beat_worker(beat("w2", T0 + timedelta(seconds=1), host="h2"))
        reader: Store = writer if dsn == "memory://" else open_store(dsn, tmp_path)
        if reader is not writer:
            await reader.open()
        try:
            found = await reader.list_workers()
        finally:
            if reader is not writer:
                await reader.close()
    assert [b.worker for b in found] == ["w1", "w2"]  # newest heartbeat first
    assert found[0] == beat("w1", T0 + timedelta(seconds=5))
    assert found[1].host == "h2"


async def test_a_stopped_worker_is_shown_stopped_and_old_rows_are_forgotten(
    dsn: str, tmp_path: Path
) -> None:
    """The last beat of a clean stop says so; a worker silent for a day is forgotten at the
    next beat of any worker; one silent for more than three beats is stale."""
    async with open_store(dsn, tmp_path) as store:
        await store.beat_worker(beat("old", T0))
        await store.beat_worker(beat("gone", T0 + timedelta(hours=20), stopped_at=T0))
        now = T0 + timedelta(days=1, minutes=1)
        await store.beat_worker(beat("w1", now))
        found = {b.worker: b for b in await store.list_workers()}
    assert set(found) == {"gone", "w1"}
    assert worker_state(found["gone"], now)[0] == "stopped"
    assert worker_state(found["w1"], now + timedelta(seconds=10))[0] == "live"
    assert worker_state(found["w1"], now + timedelta(seconds=16))[0] == "stale"
