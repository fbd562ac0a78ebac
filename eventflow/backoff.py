"""Capped exponential backoff: how long to wait after the n-th failure in a row.

One formula for every retry loop in eventflow and its plugins (a sensor reconnecting, the
supervisor restarting a sensor, the outbox waiting for a publisher, a store reconnecting, a
run's next attempt): ``first * factor ** (failures - 1)``, at most ``cap``, and with jitter a
uniformly random value between half and all of that ("equal jitter": workers that failed
together spread out, and no wait collapses to zero).
"""

from __future__ import annotations

import math
import random
import time

__all__ = ["Backoff", "delay"]


def delay(
    failures: int,
    *,
    first: float,
    cap: float,
    factor: float = 2.0,
    jitter: bool = True,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure (1 = the first)."""
    exponent = max(0, failures - 1)
    if first > 0 and factor > 1 and cap > first:
        # Past the cap the exponent no longer matters; bounding it avoids float overflow.
        exponent = min(exponent, math.ceil(math.log(cap / first, factor)))
    wait = min(cap, first * factor**exponent)
    if jitter:
        wait = wait / 2 + (rng or random).uniform(0, wait / 2)
    return wait


class Backoff:
    """The failures of one retry loop in a row, and the wait after each.

    ``reset_after``: an attempt that ran at least this many seconds before failing counts as
    a success first (a connection that held for a minute starts its backoff over).
    """

    def __init__(
        self,
        first: float,
        cap: float,
        *,
        factor: float = 2.0,
        jitter: bool = True,
        reset_after: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.first = first
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self.reset_after = reset_after
        self.rng = rng or random.Random()
        self.failures = 0
        self._started = time.monotonic()

    def attempt(self) -> None:
        """Note that an attempt starts now (for ``reset_after``)."""
        self._started = time.monotonic()

    def failed(self) -> float:
        """Count a failure; returns the seconds to wait before the next attempt."""
        if self.reset_after is not None and time.monotonic() - self._started >= self.reset_after:
            self.failures = 0
        self.failures += 1
        return delay(
            self.failures,
            first=self.first,
            cap=self.cap,
            factor=self.factor,
            jitter=self.jitter,
            rng=self.rng,
        )

    def succeeded(self) -> None:
        """The next failure is the first again."""
        self.failures = 0
