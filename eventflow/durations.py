"""Durations as people write them in pipeline files: ``500ms``, ``2s``, ``5m``, ``2h``, ``1d``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")
MAX_DURATION = timedelta(days=36_500)
"""The longest duration a pipeline may name (100 years). Every duration is added to a
clock reading somewhere (a window's end, a deadline, a timer, a lease) or handed to a
timeout; far longer ones overflow ``datetime`` or a C timeout at run time."""


def parse_duration(value: Any) -> timedelta:
    """Parse ``1h30m``, ``2s``, ``500ms`` or a number of seconds into a timedelta.

    Raises ValueError with the accepted forms when the text is not a duration.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        return _bounded(value, "this number of seconds")
    if not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r}")
    text = value.strip().replace(" ", "")
    if not _WHOLE.match(text):
        raise ValueError(
            f"not a duration: {value!r}; write a number and a unit, e.g. 500ms, 2s, 5m, 2h, 1d"
            " or 1h30m"
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    return _bounded(seconds, repr(value if len(value) <= 40 else value[:37] + "..."))


def _bounded(seconds: float, written: str) -> timedelta:
    """``seconds`` as a timedelta, or ValueError when it is longer than :data:`MAX_DURATION`
    or not a number at all (``.nan``)."""
    if seconds != seconds:
        raise ValueError("not a duration: .nan; write a number and a unit, e.g. 2s or 5m")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(
            f"the duration {written} is too long; write at most"
            f" {format_duration(MAX_DURATION)} (100 years)"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a timedelta in the shortest form ``parse_duration`` reads back."""
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    if ms:
        parts.append(f"{ms}ms")
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""A pydantic field type that accepts duration text and serialises back to it."""
