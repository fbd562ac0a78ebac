"""Health you can see from another process: each worker writes a heartbeat row to the store.

A running ``eventflow run`` keeps, per sensor, what it last knew (connected or not, the last
completed poll or fetch, the last error, the lag where the transport knows it) and writes it
every :data:`BEAT_SECONDS` with the worker's identity and the leases it holds
(:class:`~eventflow.records.WorkerBeat`). ``eventflow status``, ``GET /api/sensors``,
``GET /api/workers`` and the page read those rows (:mod:`eventflow.views.workers`), so they
show the same on SQLite and PostgreSQL, from any process. A clean stop writes a last beat
with ``stopped_at``; a killed worker's row goes stale.

Sensors report lag and polls through :class:`eventflow.metrics.SensorGauges` (``lag``,
``polled``), which also lands here (:func:`report`); connection state and errors come from
``ctx.set_health``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from eventflow.errors import EventflowError
from eventflow.events import JSON, utcnow
from eventflow.log import get_logger
from eventflow.records import WorkerBeat
from eventflow.types import Store

BEAT_SECONDS = 5.0
"""How often a worker writes its heartbeat row."""
STALE_BEATS = 3
"""A row older than this many beats is shown as stale (the worker died or lost the store)."""
ERROR_TEXT = 500
"""Longest error message kept in a heartbeat row (characters)."""


@dataclass(slots=True)
class SensorReport:
    """What one sensor last told: lag and polls (from its gauges), health (from its context)."""

    connected: bool | None = None
    detail: str = ""
    last_poll: float | None = None
    """Unix time of the last completed poll or fetch."""
    lag: float | None = None
    lag_detail: dict[str, float] = field(default_factory=dict)
    """Per part of the source (a Kafka partition ``topic[p]``), when the sensor says."""
    last_error: str | None = None
    last_error_at: float | None = None

    def health(self, ok: bool, detail: str) -> None:
        """The sensor reached its source (``ok``) or failed with ``detail``."""
        self.connected, self.detail = ok, detail
        if not ok and detail:
            self.last_error, self.last_error_at = detail[:ERROR_TEXT], time.time()

    def to_dict(self) -> dict[str, JSON]:
        """The JSON a heartbeat row keeps of the sensor."""
        return {
            "connected": self.connected,
            "detail": self.detail,
            "last_poll": _iso(self.last_poll),
            "lag": self.lag,
            "lag_detail": dict(self.lag_detail) or None,
            "last_error": (
                None
                if self.last_error is None
                else {"message": self.last_error, "at": _iso(self.last_error_at)}
            ),
        }


_REPORTS: dict[str, SensorReport] = {}


def report(sensor: str) -> SensorReport:
    """The report of sensor ``sensor`` in this process (made on first use)."""
    found = _REPORTS.get(sensor)
    if found is None:
        found = _REPORTS[sensor] = SensorReport()
    return found


def forget(sensors: Iterable[str]) -> None:
    """Drop the reports of ``sensors`` (a runtime that starts again starts afresh)."""
    for name in sensors:
        _REPORTS.pop(name, None)


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def worker_id(store: Store) -> str:
    """The store's own worker id (PostgreSQL registers one) or ``host:pid:random``."""
    own = getattr(store, "worker_id", None)
    if isinstance(own, str):
        return own
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat:
    """Writes this worker's :class:`WorkerBeat` every ``seconds`` until stopped; the last
    one (:meth:`stop`) says the worker stopped."""

    def __init__(
        self,
        store: Store,
        sensors: Iterable[str],
        leases: Callable[[], Iterable[str]],
        *,
        seconds: float = BEAT_SECONDS,
        on_beat: Callable[[], object] | None = None,
    ) -> None:
        self.store = store
        self.sensors = tuple(sensors)
        self.leases = leases
        self.seconds = max(0.1, seconds)
        self.on_beat = on_beat
        """Called after each beat (the runtime refreshes the rule health gauges)."""
        self.worker = worker_id(store)
        self.started_at = utcnow()
        self.log = get_logger(component="heartbeat", worker=self.worker)
        self._failing = False

    def beat(self, stopped: bool = False) -> WorkerBeat:
        """This worker as it is now."""
        now = utcnow()
        sensors: Mapping[str, JSON] = {name: report(name).to_dict() for name in self.sensors}
        return WorkerBeat(
            worker=self.worker,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at,
            heartbeat_at=now,
            beat_seconds=self.seconds,
            leases=tuple(sorted(self.leases())),
            sensors=sensors,
            stopped_at=now if stopped else None,
        )

    async def write(self, stopped: bool = False) -> None:
        """Write one beat; a store error is logged once (and its end), never raised."""
        try:
            await self.store.beat_worker(self.beat(stopped))
        except EventflowError as exc:
            if not self._failing:
                self.log.warning("heartbeat_write_failed", error=str(exc))
            self._failing = True
            return
        if self._failing:
            self.log.info("heartbeat_write_recovered")
        self._failing = False
        if self.on_beat is not None:
            with contextlib.suppress(Exception):
                result = self.on_beat()
                if asyncio.iscoroutine(result):
                    await result

    async def run(self) -> None:
        """Beat until cancelled."""
        while True:
            await self.write()
            await asyncio.sleep(self.seconds)

    async def stop(self) -> None:
        """The last beat: this worker stopped cleanly."""
        await self.write(stopped=True)
