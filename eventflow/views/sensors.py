"""Sensor health, from a running runtime: up, retrying (within its budget), down, starting.

Only ``eventflow run`` has a runtime, so this is what ``/readyz`` shows; every process sees
the workers' heartbeat rows instead (:mod:`eventflow.views.workers`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from eventflow import health

if TYPE_CHECKING:
    from eventflow.runtime import Runtime

RETRY_BUDGET = 60.0
"""Seconds a sensor may be failing (restarted with backoff) before ``/readyz`` says no."""

State = Literal["starting", "up", "retrying", "down"]


@dataclass(frozen=True, slots=True)
class SensorHealth:
    """One sensor as the runtime sees it."""

    sensor: str
    type: str
    state: State
    healthy: bool | None
    """What the sensor last reported; None before it started."""
    detail: str

    @property
    def ok(self) -> bool:
        """Up, or failing for less than :data:`RETRY_BUDGET`: counts as ready."""
        return self.state in ("up", "retrying")

    def to_dict(self) -> dict[str, Any]:
        return {
            "sensor": self.sensor,
            "type": self.type,
            "state": self.state,
            "ok": self.ok,
            "healthy": self.healthy,
            "detail": self.detail,
            **{k: v for k, v in health.report(self.sensor).to_dict().items() if k != "detail"},
        }


def sensors(runtime: Runtime, now: float | None = None) -> list[SensorHealth]:
    """Every sensor of the runtime's pipeline in declaration order (``now``: a
    :func:`time.monotonic` reading, the current one by default)."""
    now = time.monotonic() if now is None else now
    found = []
    for name, spec in runtime.pipeline.sensors.items():
        handle = runtime.sensors.get(name)
        state: State = "starting"
        healthy, detail = (None, "") if handle is None else (handle.healthy, handle.detail)
        if handle is not None:
            failing_since = now - handle.since
            state = "up" if healthy else "retrying" if failing_since < RETRY_BUDGET else "down"
        found.append(SensorHealth(name, spec.type, state, healthy, detail))
    return found
