"""A wall clock for waits that must not grow when the system clock is set back.

The dispatcher stores when a run's next attempt is due as a wall time (``not_before``, a
row in the store, so that it survives a restart) and compares it with the wall clock. When
NTP sets a clock that ran ahead back by an hour, every retry would wait an hour longer.
:class:`SteadyClock` reads the wall clock but never goes back: after a backward jump it goes
on from where it was, at the pace of the monotonic clock, so a retry due in ten seconds is
due ten seconds later. A forward jump is followed at once (it only makes waits shorter).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from structlog.typing import FilteringBoundLogger

from eventflow.events import utcnow
from eventflow.log import get_logger

JUMP_TOLERANCE = timedelta(seconds=1)
"""A backward step smaller than this is ordinary clock slewing, not logged."""


class SteadyClock:
    """Wall time that never goes back (see the module docstring); call it like ``utcnow``.

    After a backward jump its readings run ahead of the system clock by the jump, until the
    process restarts; ``ahead`` says by how much."""

    def __init__(
        self,
        wall: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        log: FilteringBoundLogger | None = None,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self.log = log or get_logger(component="clock")
        self._last = wall()
        self._last_mono = monotonic()
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        wall, mono = self._wall(), self._monotonic()
        steady = self._last + timedelta(seconds=mono - self._last_mono)
        if wall < steady:
            behind = steady - wall
            if behind - self.ahead >= JUMP_TOLERANCE:
                self.log.warning(
                    "clock_jumped_back",
                    seconds=round((behind - self.ahead).total_seconds(), 3),
                    ahead=round(behind.total_seconds(), 3),
                )
            self.ahead = behind
            now = steady
        else:
            self.ahead = timedelta(0)
            now = wall
        self._last, self._last_mono = now, mono
        return now
