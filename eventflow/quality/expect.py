"""A check's result value against its ``expect``: bounds, the change from the previous
partition's value, and the age of a timestamp (freshness)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from eventflow.events import JSON
from eventflow.quality.config import Expect


def number(value: JSON) -> float | None:
    """``value`` as a finite number (a numeric string counts), or None (``inf`` and
    ``nan`` are no count a check can compare)."""
    if isinstance(value, bool):
        return float(value)
    found: float | None = None
    if isinstance(value, int | float):
        try:
            found = float(value)
        except OverflowError:  # an int beyond any float
            return None
    elif isinstance(value, str):
        try:
            found = float(value.strip())
        except ValueError:
            return None
    return found if found is not None and math.isfinite(found) else None


def timestamp(value: JSON) -> datetime | None:
    """``value`` as an aware time: ISO 8601 text (UTC when it has no offset) or epoch seconds."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return _epoch(number(value))
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None if isinstance(value, bool) else _epoch(number(value))


def _epoch(seconds: float | None) -> datetime | None:
    """The time ``seconds`` after the epoch; None beyond the years a datetime holds."""
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def judge(value: JSON, expect: Expect | None, previous: JSON, now: datetime) -> tuple[bool, str]:
    """Whether ``value`` meets ``expect`` and, when not, why. Without ``expect`` a value
    passes when it is true or a non-zero number (None: the check gave no value, passes)."""
    if expect is None:
        if value is None:
            return True, ""
        n = number(value)
        ok = bool(n) if n is not None else bool(value)
        return ok, "" if ok else f"the value is {value!r}"
    if expect.max_age is not None:
        at = timestamp(value)
        if at is None:
            return False, f"the value {value!r} is not a timestamp"
        age = now - at
        if age > expect.max_age:
            return (
                False,
                f"the newest timestamp {at.isoformat()} is {age} old (max {expect.max_age})",
            )
    if expect.min is None and expect.max is None and expect.change is None:
        return True, ""
    n = number(value)
    if n is None:
        return False, f"the value {value!r} is not a number"
    if expect.min is not None and n < expect.min:
        return False, f"{_fmt(n)} is below the minimum {_fmt(expect.min)}"
    if expect.max is not None and n > expect.max:
        return False, f"{_fmt(n)} is above the maximum {_fmt(expect.max)}"
    before = number(previous)
    if expect.change is not None and before is not None:
        if before == 0:
            changed = 0.0 if n == 0 else float("inf")
        else:
            changed = abs(n - before) / abs(before) * 100
        if changed > expect.change:
            return False, (
                f"{_fmt(n)} is {changed:.1f}% away from the previous partition's"
                f" {_fmt(before)} (max {_fmt(expect.change)}%)"
            )
    return True, ""


def _fmt(n: float) -> str:
    return str(int(n)) if n == int(n) else str(n)
