"""Pages of a long list: the items, the cursor of the next page, and the total.

A cursor is opaque to its reader (base64url of the last item's position in the list's
order), so a page stays right while rows are added: keyset paging, not offsets, which
would skip or repeat rows that arrive between two pages.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from eventflow.durations import parse_duration
from eventflow.errors import EventflowError

T = TypeVar("T")


class BadCursor(EventflowError):
    """A cursor that no page of this list handed out."""

    def __init__(self, cursor: str) -> None:
        super().__init__(
            f"cursor {cursor[:40]!r} is not one this list gave",
            hint="pass the `next` of the previous page as it is, or leave it out to start",
        )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """``items`` of a list, ``next`` (the cursor of the following page, None at the end)
    and ``total`` (how many items the filters select, over every page)."""

    items: Sequence[T]
    next: str | None
    total: int

    def to_dict(self, item: Callable[[T], Any]) -> dict[str, Any]:
        return {"items": [item(i) for i in self.items], "next": self.next, "total": self.total}


def encode(at: datetime, key: str) -> str:
    """The cursor after the item at ``at`` with ``key`` (its id)."""
    return base64.urlsafe_b64encode(json.dumps([at.isoformat(), key]).encode()).decode()


def decode(cursor: str) -> tuple[datetime, str]:
    """The position a cursor of :func:`encode` holds; :class:`BadCursor` otherwise."""
    try:
        at, key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        when = datetime.fromisoformat(at)
    except (ValueError, TypeError, binascii.Error):
        raise BadCursor(cursor) from None
    if not isinstance(key, str) or when.tzinfo is None:
        raise BadCursor(cursor)
    return when, key


def encode_names(first: str, second: str) -> str:
    """The cursor after the item whose position is two names (a match: rule and key)."""
    return base64.urlsafe_b64encode(json.dumps(["names", first, second]).encode()).decode()


def decode_names(cursor: str) -> tuple[str, str]:
    """The position a cursor of :func:`encode_names` holds; :class:`BadCursor` otherwise."""
    try:
        tag, first, second = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError, binascii.Error):
        raise BadCursor(cursor) from None
    if tag != "names" or not isinstance(first, str) or not isinstance(second, str):
        raise BadCursor(cursor)
    return first, second


def parse_time(text: str, now: datetime) -> datetime:
    """``--since``/``--until``/``?since=``: an ISO 8601 time (UTC when it names no
    offset; a date is its midnight) or a duration meaning that long before ``now``."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            return now - parse_duration(text)
        except (ValueError, OverflowError):
            raise ValueError(
                f"{text!r} is no time: write an ISO 8601 time (2026-12-01T06:00:00Z, 2026-12-01)"
                " or a duration before now (30m, 2h, 7d)"
            ) from None
    try:  # in UTC, as the store compares; the edges of the calendar have no UTC time
        return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is outside the times a run can have") from None
