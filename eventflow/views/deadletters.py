"""Dead letters: observations that could not be processed, newest first (read-only here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventflow.records import DeadLetter
from eventflow.types import Store


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


async def deadletters(store: Store, *, limit: int = 50) -> list[DeadLetterView]:
    """The ``limit`` most recently recorded dead letters, newest first."""
    return [DeadLetterView(d) for d in await store.list_deadletters(limit)]
