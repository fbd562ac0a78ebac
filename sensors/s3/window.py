"""The lookback window: which time-partition prefixes can still change, listed each poll.

``partition_prefix: orders/dt=%Y-%m-%d/`` with ``lookback: 3d`` names the prefixes of the
last three days (and the next one, for writers whose clocks run ahead). The smallest
strftime field sets the step (``%H``: hourly prefixes, ``%d``: daily, ...), so a bucket with
years of partitions costs a handful of ListObjectsV2 requests per poll.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_STEPS = (
    (("%S", "%s", "%T", "%X", "%c"), timedelta(seconds=1)),
    (("%M", "%R"), timedelta(minutes=1)),
    (("%H", "%I", "%p"), timedelta(hours=1)),
)
_DAY = timedelta(days=1)


def step_of(template: str) -> timedelta:
    """The finest time unit the template names (a day for dates, months and years)."""
    for directives, step in _STEPS:
        if any(d in template for d in directives):
            return step
    return _DAY


def _floor(when: datetime, step: timedelta) -> datetime:
    seconds = step.total_seconds()
    return datetime.fromtimestamp(when.timestamp() // seconds * seconds, UTC)


def window_prefixes(template: str, lookback: timedelta, now: datetime) -> list[str]:
    """The distinct prefixes from ``now - lookback`` to one step past ``now``, oldest first."""
    step = step_of(template)
    when = _floor(now - lookback, step)
    end = now + step
    out: dict[str, None] = {}
    while when <= end:
        out[when.strftime(template)] = None
        when += step
    return list(out)
