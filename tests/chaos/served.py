"""What the chaos tests read from a running ``eventflow run --http``: each sensor's health
(``/api/sensors``), the counts and runs, the metrics (``/metrics``), and its log events.

The tests take a broker away under the real process and check, through these, that the
sensor says so (health down, a warning in the log), comes back by itself (health up), and
that every record fired exactly once. Polling goes through the HTTP API of the running
process rather than the CLI: on a busy machine a CLI process per look costs seconds.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance.conftest import _kill_leftover_processes
from tests.acceptance.harness import Project, wait_until
from tests.services._process import free_port, wait_listening

leftovers = _kill_leftover_processes
"""The acceptance tier's autouse fixture (no eventflow process outlives its test): a chaos
test module imports it, which makes it the module's too."""


class Served:
    """A project's ``eventflow run --http PORT`` process and the views it serves."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.port = free_port()

    def start(self) -> None:
        proc = self.project.start(args=("--http", str(self.port)))
        wait_listening(proc, [self.port], timeout=30, what="eventflow run --http")

    def get(self, path: str) -> httpx.Response | None:
        """``GET path``, or None while the server does not answer (starting, stopping)."""
        try:
            response = httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)
        except httpx.TransportError:
            return None
        # 503 while the runtime starts or stops; anything else is the test's own mistake.
        if response.status_code == 503:
            return None
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response

    def healthy(self, sensor: str) -> bool | None:
        """What ``/api/sensors`` says of the sensor's health (None: not known yet)."""
        response = self.get("/api/sensors")
        if response is None:
            return None
        found = [s for s in response.json()["sensors"] if s["sensor"] == sensor]
        return bool(found[0]["healthy"]) if found and found[0]["healthy"] is not None else None

    def wait_health(self, sensor: str, healthy: bool, timeout: float = 30) -> None:
        """Wait until ``/api/sensors`` shows the sensor healthy (or not)."""
        wait_until(lambda: self.healthy(sensor) is healthy, timeout=timeout)

    def counts(self) -> dict[str, int]:
        """``/api/status``'s counts (what ``eventflow status`` says, without a process per
        look), or nothing while the server does not answer."""
        response = self.get("/api/status")
        return dict(response.json()["counts"]) if response is not None else {}

    def settled(self) -> bool:
        """No run waits or runs, and none failed."""
        c = self.counts()
        return bool(c) and c["runs_pending"] == c["runs_running"] == c["runs_failed"] == 0

    def wait_events(self, count: int, timeout: float = 60) -> None:
        """Wait until at least ``count`` events are committed."""
        wait_until(lambda: self.counts().get("events", 0) >= count, timeout=timeout)

    def fired(self, key: Callable[[dict[str, Any]], Hashable]) -> set[Any]:
        """The keys (of a run's partition) that fired so far (of the newest 10,000 runs)."""
        response = self.get("/api/runs?limit=10000")
        if response is None:
            return set()
        return {key(r["partition"]) for r in response.json()["items"]}

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``."""
        response = self.get("/metrics")
        assert response is not None
        assert response.status_code == 200
        total = 0.0
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total


def fired_once(p: Project, key: Callable[[dict[str, Any]], Hashable], held: set[Any]) -> set[Any]:
    """Every key the source holds (of a run's partition) fired, none twice; returns the keys
    that fired and the source no longer holds (a broker that lost records after they were
    read), for the caller to account for."""
    fired = collections.Counter(key(r["partition"]) for r in p.runs())
    missing = held - set(fired)
    assert not missing, f"{len(missing)} never fired, e.g. {sorted(missing)[:5]}"
    twice = [k for k, n in fired.items() if n > 1]
    assert not twice, f"{len(twice)} fired twice, e.g. {sorted(twice)[:5]}"
    return set(fired) - held


def logged(p: Project, event: str, **fields: Any) -> list[dict[str, Any]]:
    """The log events named ``event`` (of every process so far) with these fields."""
    return [
        e
        for e in p.log_events()
        if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
    ]
