"""Deadlines and expected partitions as pure functions of a partition key or a period.

``expect_by: "{dt}T06:00Z + 1d"`` is a :class:`DeadlineExpr`: the partition's variables are
put into the template, the text is read as a date or date-time (times without a zone are in
the rule's ``timezone``), and the offsets are added. ``expect: {every: 1d, partition: {dt:
"%Y-%m-%d"}}`` is a :class:`Schedule`: period ``k`` starts at ``anchor + k * every`` (local
time of its timezone) and names the partition that is expected from then on, so a deadline
exists even for a partition that never sees an input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from eventflow.durations import MAX_DURATION, format_duration, parse_duration
from eventflow.patterns import placeholders, render

_OFFSET = re.compile(r"\s+([+-])\s*([0-9a-z.]+)\s*$")
_LOOSE = re.compile(
    r"^(\d{4})-?(\d{1,2})-?(\d{1,2})"
    r"(?:[T ](\d{1,2})(?::?(\d{2}))?(?::?(\d{2}))?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def zone(name: str) -> tzinfo:
    """The timezone called ``name`` (``UTC``, ``Europe/Berlin``); ValueError if unknown."""
    if name.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown timezone {name!r}; write an IANA name such as UTC or Europe/Berlin"
        ) from exc


def parse_time(text: str, tz: tzinfo) -> datetime:
    """A date or date-time as people write it; naive times are in ``tz``."""
    text = text.strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        m = _LOOSE.match(text)
        if m is None:
            raise ValueError(f"{text!r} is not a date or date-time (2024-01-31T06:00Z)") from None
        y, mo, d, h, mi, s, off = m.groups()
        iso = f"{y}-{int(mo):02d}-{int(d):02d}T{int(h or 0):02d}:{int(mi or 0):02d}"
        iso += f":{int(s or 0):02d}" + ("+00:00" if off == "Z" else (off or ""))
        try:
            when = datetime.fromisoformat(iso)
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a valid date or date-time: {exc}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=tz)


@dataclass(frozen=True)
class DeadlineExpr:  # not slots: ``variables`` is cached in the instance dict
    """``template [+|- duration]...``: when a partition is expected by."""

    text: str
    template: str
    offset: timedelta
    tz: tzinfo

    @classmethod
    def parse(cls, text: str, tz: tzinfo = UTC) -> DeadlineExpr:
        """Raises ValueError naming what is wrong."""
        rest, offset = text.strip(), timedelta()
        while m := _OFFSET.search(rest):
            sign, amount = m.groups()
            delta = parse_duration(amount)
            offset += delta if sign == "+" else -delta
            if abs(offset) > MAX_DURATION:
                raise ValueError(
                    f"the offsets add up to more than {format_duration(MAX_DURATION)} (100 years)"
                )
            rest = rest[: m.start()]
        if not rest:
            raise ValueError(f"{text!r} has no time before its offsets")
        expr = cls(text, rest, offset, tz)
        if not expr.variables:  # a fixed time: check it now rather than at run time
            expr.at({})
        return expr

    @cached_property
    def variables(self) -> tuple[str, ...]:
        return tuple(placeholders(self.template))

    def at(self, partition: Mapping[str, str]) -> datetime:
        """The deadline of ``partition``; ValueError when its values do not make a time."""
        text = self.template
        for var in self.variables:
            if var not in partition:
                raise ValueError(f"the partition has no `{var}`")
            text = text.replace("{" + var + "}", partition[var])
        if "{{" in self.template or "}}" in self.template:
            text = render(self.template, partition)
        try:
            return (parse_time(text, self.tz) + self.offset).astimezone(UTC)
        except OverflowError:  # 9999-12-31 + 1d
            raise ValueError(f"{text!r} plus the offsets is past the years 1-9999") from None


@dataclass(frozen=True)
class Schedule:
    """Periods of length ``every`` from ``anchor`` (naive local time in ``tz``); each names
    one expected partition through strftime formats of its start."""

    every: timedelta
    partition: Mapping[str, str]
    tz: tzinfo = UTC
    anchor: datetime = datetime(1970, 1, 1)

    def index(self, now: datetime) -> int:
        """The period that contains ``now``."""
        local = now.astimezone(self.tz).replace(tzinfo=None)
        return (local - self.anchor) // self.every

    def local_start(self, k: int) -> datetime:
        return self.anchor + k * self.every

    def start(self, k: int) -> datetime:
        """When period ``k`` begins (its partition is expected from then), in UTC."""
        return self.local_start(k).replace(tzinfo=self.tz).astimezone(UTC)

    def partition_of(self, k: int) -> dict[str, str]:
        start = self.local_start(k)
        return {var: start.strftime(fmt) for var, fmt in self.partition.items()}

    def due(self, after: int, now: datetime, limit: int) -> range:
        """The periods after ``after`` that have begun by ``now``, at most ``limit``."""
        last = min(self.index(now), after + limit)
        return range(after + 1, last + 1)
