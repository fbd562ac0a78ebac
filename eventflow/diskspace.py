"""Waiting out a full disk: stop taking work, keep what is committed, retry until there is space.

A full disk is not a failure of the work: the state store (SQLite's file, PostgreSQL's data
directory) or the runs directory will have room again once an operator frees it. So the
engine and the dispatcher do not fail anything because of it. The engine keeps its batch
(nothing is acknowledged, so sensors stop at the bounded queue and the sources keep their
messages) and commits it again; the dispatcher stops claiming, keeps a run it could not
prepare claimed and prepares it again, and keeps a result it could not record until it can.
Each waits with capped exponential backoff, and says so in the log (``disk_full``, then
``disk_space_returned``) and in ``eventflow_disk_full``.
"""

from __future__ import annotations

import asyncio
import errno
import time

from structlog.typing import FilteringBoundLogger

from eventflow import metrics
from eventflow.backoff import Backoff
from eventflow.errors import StoreFull

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
"""The errno values of a full disk or an exhausted quota."""
FIRST_WAIT = 0.5
LONGEST_WAIT = 10.0
"""Seconds between two tries while the disk stays full: short enough to resume soon after
space returns, long enough not to spin on a disk that stays full for hours."""


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` says a disk or a quota is full (the store's, or a file's)."""
    if isinstance(exc, StoreFull):
        return True
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


class SpaceWait:
    """One component's wait for disk space (the engine's, the dispatcher's)."""

    def __init__(self, component: str, log: FilteringBoundLogger) -> None:
        self.component = component
        self.log = log
        self._backoff = Backoff(FIRST_WAIT, LONGEST_WAIT)
        self._since: float | None = None

    @property
    def full(self) -> bool:
        """Whether the last try of this component found the disk full."""
        return self._since is not None

    async def wait(self, operation: str, exc: BaseException) -> None:
        """Note that ``operation`` found no space (``exc``) and sleep before the next try."""
        now = time.monotonic()
        if self._since is None:
            self._since = now
            metrics.disk_full(self.component, True)
        delay = self._backoff.failed()
        metrics.disk_full_waited(self.component, operation)
        self.log.warning(
            "disk_full",
            component=self.component,
            operation=operation,
            error=str(exc),
            waited=round(now - self._since, 1),
            retry_in=round(delay, 2),
        )
        await asyncio.sleep(delay)

    def cleared(self, operation: str) -> None:
        """``operation`` succeeded: if this component was waiting for space, it is over."""
        if self._since is None:
            return
        waited = time.monotonic() - self._since
        self._since = None
        self._backoff.succeeded()
        metrics.disk_full(self.component, False)
        self.log.info(
            "disk_space_returned",
            component=self.component,
            operation=operation,
            waited=round(waited, 1),
        )
