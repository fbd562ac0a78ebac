"""Dead letters: observations that could not be processed, newest first (read-only here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventflow.records import DeadLetter
from eventflow.types import Store
from eventflow.views import paging
from eventflow.views.paging import Page


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """One dead letter: the event id it would have had, where it came from, what failed."""

    letter: DeadLetter

    def to_dict(self) -> dict[str, Any]:
        d = self.letter
        return {
            "event_id": d.event_id,
            "sensor": d.sensor,
            "position": dict(d.position),
            "error": d.error,
            "excerpt": d.excerpt,
            "time": d.time.isoformat(),
        }


async def deadletter_page(
    store: Store,
    *,
    sensor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[DeadLetterView]:
    """A page of dead letters, most recently recorded first, of ``sensor``, observed at or
    after ``since`` and before ``until``, after the page whose ``next`` is ``cursor``, with
    the total the filters select."""
    after = paging.decode(cursor)[1] if cursor else None
    found = await store.list_deadletters(
        limit + 1, sensor=sensor, since=since, until=until, after=after
    )  # one more than asked tells whether a next page exists
    total = await store.count_deadletters(sensor=sensor, since=since, until=until)
    items = [DeadLetterView(d) for d in found[:limit]]
    more = len(found) > limit and items
    last = items[-1].letter if more else None
    return Page(items, paging.encode(last.time, last.event_id) if last else None, total)
