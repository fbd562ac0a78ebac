"""The event log, newest first: what the sensors announced (and what was emitted or
produced), filtered by dataset, sensor, partition values and receive time, in keyset pages
with the total the filters select. ``eventflow events`` and ``GET /api/events`` show it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventflow.records import StoredEvent
from eventflow.types import Store
from eventflow.views import paging
from eventflow.views.paging import Page


@dataclass(frozen=True, slots=True)
class EventView:
    """One logged event: its id, where it came from, what it announced, its payload."""

    event: StoredEvent

    def to_dict(self) -> dict[str, Any]:
        e = self.event
        return {
            "id": e.id,
            "sensor": e.sensor,
            "key": e.key,
            "time": e.time.isoformat(),
            "received_at": e.received_at.isoformat(),
            "position": dict(e.position),
            "datasets": [{"dataset": n, "partition": dict(p)} for n, p in e.datasets],
            "payload": e.payload,
        }


async def event_page(
    store: Store,
    *,
    dataset: str | None = None,
    sensor: str | None = None,
    partition: Mapping[str, str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[EventView]:
    """A page of the event log, most recently logged first, after the page whose ``next``
    is ``cursor``, with the total the filters select (``since``/``until``: receive time)."""
    after = paging.decode(cursor)[1] if cursor else None
    where: dict[str, Any] = {
        "dataset": dataset,
        "sensor": sensor,
        "partition": partition or None,
        "since": since,
        "until": until,
    }
    found = await store.list_events(limit + 1, after=after, **where)
    total = await store.count_events(**where)
    items = [EventView(e) for e in found[:limit]]
    last = items[-1].event if len(found) > limit and items else None
    return Page(items, paging.encode(last.received_at, last.id) if last else None, total)
