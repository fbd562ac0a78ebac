"""Workers and their sensors' health, from the heartbeat rows in the store.

Every ``eventflow run`` writes a row every few seconds (:mod:`eventflow.health`), so this
view is the same from any process: ``eventflow status`` and ``eventflow workers``,
``GET /api/workers``, ``GET /api/sensors`` (``reported``) and the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from eventflow.events import JSON, utcnow
from eventflow.health import STALE_BEATS
from eventflow.pipeline import CompiledPipeline
from eventflow.records import WorkerBeat
from eventflow.types import Store
from eventflow.views import iso

WorkerState = Literal["live", "stale", "stopped"]
SensorState = Literal[
    "connected", "disconnected", "standby", "starting", "stale", "stopped", "unreported"
]
STANDBY = "standby"
"""How the runtime's health detail starts on a worker waiting for another's sensor lease."""


@dataclass(frozen=True, slots=True)
class WorkerView:
    """One worker as its last heartbeat row shows it."""

    beat: WorkerBeat
    state: WorkerState
    age_seconds: float
    """Seconds since the last heartbeat."""

    def to_dict(self) -> dict[str, Any]:
        b = self.beat
        return {
            "worker": b.worker,
            "host": b.host,
            "pid": b.pid,
            "state": self.state,
            "started_at": iso(b.started_at),
            "heartbeat_at": iso(b.heartbeat_at),
            "heartbeat_age_seconds": round(self.age_seconds, 1),
            "stopped_at": iso(b.stopped_at),
            "leases": list(b.leases),
            "sensors": sorted(b.sensors),
        }


@dataclass(frozen=True, slots=True)
class SensorStatus:
    """One sensor on one worker (or, when no worker reports it, on none)."""

    sensor: str
    type: str
    worker: str | None
    state: SensorState
    report: Mapping[str, JSON]
    """``connected``, ``detail``, ``last_poll``, ``lag``, ``lag_detail``, ``last_error``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "sensor": self.sensor,
            "type": self.type,
            "worker": self.worker,
            "state": self.state,
            "connected": self.report.get("connected"),
            "detail": self.report.get("detail", ""),
            "last_poll": self.report.get("last_poll"),
            "lag": self.report.get("lag"),
            "lag_detail": self.report.get("lag_detail"),
            "last_error": self.report.get("last_error"),
        }


def worker_state(beat: WorkerBeat, now: datetime) -> tuple[WorkerState, float]:
    """Stopped, stale (no beat for :data:`STALE_BEATS` intervals) or live; and the age."""
    age = max(0.0, (now - beat.heartbeat_at).total_seconds())
    if beat.stopped_at is not None:
        return "stopped", age
    return ("stale" if age > STALE_BEATS * beat.beat_seconds else "live"), age


async def workers(store: Store, now: datetime | None = None) -> list[WorkerView]:
    """Every worker that beat in the last day, the most recent first."""
    now = utcnow() if now is None else now
    return [WorkerView(b, *worker_state(b, now)) for b in await store.list_workers()]


def sensor_statuses(pipeline: CompiledPipeline, found: Sequence[WorkerView]) -> list[SensorStatus]:
    """Each sensor of ``pipeline`` as the workers report it: a row per live worker that runs
    it; without one, the most recent stale or stopped report; else ``unreported``."""
    rows: list[SensorStatus] = []
    for name, spec in pipeline.sensors.items():
        reports = [(w, w.beat.sensors[name]) for w in found if name in w.beat.sensors]
        live = [(w, r) for w, r in reports if w.state == "live"]
        chosen = live or reports[:1]
        if not chosen:
            rows.append(SensorStatus(name, spec.type, None, "unreported", {}))
        for w, r in chosen:
            report = r if isinstance(r, dict) else {}
            rows.append(SensorStatus(name, spec.type, w.beat.worker, _state(w, report), report))
    return rows


def _state(worker: WorkerView, report: Mapping[str, JSON]) -> SensorState:
    if worker.state != "live":
        return worker.state
    connected, detail = report.get("connected"), report.get("detail")
    if isinstance(detail, str) and detail.startswith(STANDBY):
        return "standby"
    return "starting" if connected is None else "connected" if connected else "disconnected"
