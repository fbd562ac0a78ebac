"""The running pipeline's view of the pauses: it reads them from the store once per poll
interval (at once when its own API paused something), stops a paused sensor and starts it
again on resume, and wakes the dispatcher when a rule is resumed.

The store is the truth (see :mod:`eventflow.pauses`): what this watch holds is only what the
runtime needs to stop and start sensor tasks and to log what it noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from eventflow.aio import wait_event
from eventflow.errors import StoreError
from eventflow.log import get_logger
from eventflow.pauses import Pause
from eventflow.types import Store


class _Health(Protocol):
    def set_health(self, ok: bool, detail: str = "") -> None: ...


class PauseWatch:
    """Which rules and sensors are paused, as last read from the store."""

    def __init__(self, store: Store, poll: float) -> None:
        self.store = store
        self.poll = poll
        self.log = get_logger(component="pauses")
        self.on_rule_resumed: Callable[[], None] = lambda: None
        """Called when a rule was resumed (wakes the dispatcher: its held runs are due)."""
        self.paused: dict[tuple[str, str], Pause] = {}
        self._wake = asyncio.Event()
        self._gates: dict[str, _Gate] = {}

    def changed(self) -> None:
        """Something was paused or resumed in this process: read the pauses now."""
        self._wake.set()

    def sensor_pause(self, sensor: str) -> Pause | None:
        return self.paused.get(("sensor", sensor))

    async def refresh(self) -> None:
        """Read the pauses from the store and act on what changed."""
        found: dict[tuple[str, str], Pause] = {
            (p.kind, p.name): p for p in await self.store.pauses()
        }
        before, self.paused = self.paused, found
        for key in sorted(found.keys() - before.keys()):
            p = found[key]
            self.log.info("pause_noticed", **{p.kind: p.name}, by=p.by, reason=p.reason)
        resumed = before.keys() - found.keys()
        for kind, name in sorted(resumed):
            self.log.info("resume_noticed", **{kind: name})
        for name, gate in self._gates.items():
            gate.set(("sensor", name) in found)
        if any(kind == "rule" for kind, _ in resumed):
            self.on_rule_resumed()

    async def run(self) -> None:
        """Refresh once per poll interval, or at once after :meth:`changed`."""
        while True:
            await wait_event(self._wake, self.poll)
            self._wake.clear()
            try:
                await self.refresh()
            except StoreError as exc:
                if not exc.retriable:
                    raise
                self.log.warning("store_retried", operation="pauses", error=str(exc))

    def _gate(self, sensor: str) -> _Gate:
        gate = self._gates.get(sensor)
        if gate is None:
            gate = self._gates[sensor] = _Gate()
            gate.set(("sensor", sensor) in self.paused)
        return gate

    async def wait_resumed(self, sensor: str, health: _Health) -> None:
        """Return when ``sensor`` is not paused (at once if it is not)."""
        gate = self._gate(sensor)
        if not gate.paused.is_set():
            return
        pause = self.sensor_pause(sensor)
        by = f" by {pause.by}" if pause else ""
        health.set_health(True, f"paused{by}")
        self.log.info("sensor_stopped_paused", sensor=sensor)
        await gate.running.wait()
        health.set_health(False, "starting (resumed)")
        self.log.info("sensor_started_resumed", sensor=sensor)

    async def until_paused(self, sensor: str, work: Coroutine[Any, Any, None]) -> bool:
        """Run ``work`` (the sensor) until it ends (True) or ``sensor`` is paused (it is
        stopped: False). Its cursor is where the last commit left it."""
        gate = self._gate(sensor)
        task = asyncio.create_task(work, name=f"sensor-run:{sensor}")
        watch = asyncio.create_task(gate.paused.wait(), name=f"sensor-pause:{sensor}")
        try:
            await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.cancelled():
            return False
        task.result()
        return True


class _Gate:
    """A sensor's two states as events: ``running`` is set while it may run, ``paused``
    while it may not (one is waited for to start it, the other to stop it)."""

    def __init__(self) -> None:
        self.running = asyncio.Event()
        self.paused = asyncio.Event()

    def set(self, paused: bool) -> None:
        on, off = (self.paused, self.running) if paused else (self.running, self.paused)
        off.clear()
        on.set()
