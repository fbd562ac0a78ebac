"""Helpers for testing plugins without an engine or a store.

:class:`RecordingContext` is a :class:`~eventflow.types.SensorContext` that records what a
sensor does: observations go to a bounded queue (so backpressure is real), the cursor is
a dict a test can pre-fill and that :meth:`RecordingContext.commit` advances the way the
engine does after its transaction, and health reports and forgotten keys are kept.
:func:`running` runs a sensor as a task for the length of a ``with`` block::

    ctx = RecordingContext("landing", cursor={"a.csv": {"size": 3, "mtime_ns": 1}})
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        obs = await ctx.get()
        ctx.commit(obs)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Collection, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from eventflow.events import JSON, Observation

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

__all__ = ["RecordingContext", "running"]


class RecordingContext:
    """A sensor context that records everything, for tests of sensor plugins.

    Create it inside a running event loop (an ``async`` test).
    """

    def __init__(
        self,
        name: str = "test",
        *,
        maxsize: int = 10_000,
        cursor: Mapping[str, JSON] | None = None,
    ) -> None:
        self.name = name
        self.log: FilteringBoundLogger = structlog.get_logger("eventflow").bind(sensor=name)
        self.queue: asyncio.Queue[Observation] = asyncio.Queue(maxsize)
        self.cursor: dict[str, JSON] = dict(cursor or {})
        self.emitted: list[Observation] = []
        """Every observation ever emitted, in order (the queue holds those not yet taken)."""
        self.health: list[tuple[bool, str]] = []
        self.forgotten: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._health_changed: asyncio.Event | None = None
        with contextlib.suppress(RuntimeError):
            self._bind_loop()

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._health_changed = asyncio.Event()
        return loop

    # --- SensorContext ---------------------------------------------------------------

    async def emit(self, observation: Observation) -> None:
        self._bind_loop()
        await self.queue.put(observation)
        self.emitted.append(observation)

    async def load_cursor(self) -> dict[str, JSON]:
        self._bind_loop()
        return dict(self.cursor)

    async def forget(self, keys: Collection[str]) -> None:
        self._bind_loop()
        for key in keys:
            self.cursor.pop(key, None)
            self.forgotten.append(key)

    def set_health(self, ok: bool, detail: str = "") -> None:
        self.health.append((ok, detail))
        loop, event = self._loop, self._health_changed
        if loop is None or event is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            event.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    # --- for tests -------------------------------------------------------------------

    @property
    def healthy(self) -> bool | None:
        """The last reported health, or None before the first report."""
        return self.health[-1][0] if self.health else None

    async def wait_healthy(self, timeout: float = 5.0) -> None:
        """Wait until the sensor reported itself healthy."""
        self._bind_loop()
        assert self._health_changed is not None
        async with asyncio.timeout(timeout):
            while not self.healthy:
                self._health_changed.clear()
                await self._health_changed.wait()

    def commit(self, *observations: Observation) -> None:
        """What the engine does after committing: advance the cursor, then call ``on_commit``."""
        for obs in observations:
            if obs.cursor is not None:
                key, value = obs.cursor
                self.cursor[key] = value
            if obs.on_commit is not None:
                obs.on_commit()

    async def get(self, timeout: float = 5.0, *, commit: bool = False) -> Observation:
        """The next observation; raises TimeoutError if none comes within ``timeout``."""
        async with asyncio.timeout(timeout):
            obs = await self.queue.get()
        if commit:
            self.commit(obs)
        return obs

    async def take(
        self, n: int, timeout: float = 5.0, *, commit: bool = False
    ) -> list[Observation]:
        """The next ``n`` observations, all within ``timeout``."""
        out: list[Observation] = []
        async with asyncio.timeout(timeout):
            while len(out) < n:
                out.append(await self.queue.get())
        if commit:
            self.commit(*out)
        return out

    def take_nowait(self, *, commit: bool = False) -> list[Observation]:
        """Whatever is queued now."""
        out: list[Observation] = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        if commit:
            self.commit(*out)
        return out

    async def settle(
        self, quiet: float = 0.3, timeout: float = 10.0, *, commit: bool = False
    ) -> list[Observation]:
        """Observations until none arrives for ``quiet`` seconds (at most ``timeout`` in all)."""
        out: list[Observation] = []
        deadline = time.monotonic() + timeout
        while True:
            wait = min(quiet, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                async with asyncio.timeout(wait):
                    out.append(await self.queue.get())
            except TimeoutError:
                break
        if commit:
            self.commit(*out)
        return out


@contextlib.asynccontextmanager
async def running(sensor: Any, ctx: Any) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``sensor.run(ctx)`` as a task for the block; cancel and await it at the end.

    A sensor that failed during the block has its exception raised at exit.
    """
    task: asyncio.Task[None] = asyncio.create_task(sensor.run(ctx), name="sensor-under-test")
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
