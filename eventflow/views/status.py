"""``eventflow status``: the rules, the partial matches, the store's figures, recent runs.

``eventflow status --json``, ``GET /api/status`` and the status page show this one view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventflow.pipeline import CompiledPipeline
from eventflow.store import redact_dsn
from eventflow.types import Store
from eventflow.views.checks import Held, held
from eventflow.views.matches import PartialMatch, partial_matches
from eventflow.views.pauses import PauseView, by_name, pauses, with_pause
from eventflow.views.reliability import RuleReliability, reliability
from eventflow.views.rules import RuleView, rule_views
from eventflow.views.runs import RunView, with_checks
from eventflow.views.workers import SensorStatus, WorkerView, sensor_statuses, workers

RECENT_RUNS = 20


@dataclass(frozen=True, slots=True)
class Status:
    pipeline: str
    state: str
    """The store's DSN, its password redacted."""
    rules: tuple[RuleView, ...]
    partial_matches: tuple[PartialMatch, ...]
    counts: Mapping[str, int]
    """:meth:`Store.counts` and ``matches_missed`` (open matches whose deadline passed)."""
    recent_runs: tuple[RunView, ...]
    """The newest runs, each with its checks' outcome."""
    held: tuple[Held, ...] = ()
    """Produced partitions not announced: their checks pending, running or blocking."""
    pauses: tuple[PauseView, ...] = ()
    """The paused rules and sensors (:mod:`eventflow.views.pauses`)."""
    sensors: tuple[SensorStatus, ...] = ()
    """Each sensor as the workers' heartbeat rows report it."""
    workers: tuple[WorkerView, ...] = ()
    reliability: tuple[RuleReliability, ...] = ()
    """Each rule's error rates and MTTR over the last day."""

    def summary(self) -> str:
        """``runs: 1 pending, ... · dead letters 0``: the store's figures in one line."""
        c = self.counts
        runs = (
            f"runs: {c['runs_pending']} pending, {c['runs_running']} running, "
            f"{c['runs_succeeded']} succeeded, {c['runs_failed']} failed"
        )
        if c.get("runs_cancelled"):
            runs += f", {c['runs_cancelled']} cancelled"
        return (
            f"{runs} · events {c['events']} · outbox {c['outbox']} · timers {c['timers']}"
            f" · dead letters {c['deadletters']}"
        )

    def to_dict(self) -> dict[str, Any]:
        paused = by_name(list(self.pauses), "rule")
        return {
            "pipeline": self.pipeline,
            "state": self.state,
            "rules": [with_pause(r.to_dict(), paused.get(r.rule)) for r in self.rules],
            "partial_matches": [m.to_dict() for m in self.partial_matches],
            "counts": dict(self.counts),
            "recent_runs": [r.to_dict() for r in self.recent_runs],
            "held_by_checks": [h.to_dict() for h in self.held],
            "pauses": [p.to_dict() for p in self.pauses],
            "sensors": [s.to_dict() for s in self.sensors],
            "workers": [w.to_dict() for w in self.workers],
            "reliability": [r.to_dict() for r in self.reliability],
        }


async def status(
    pipeline: CompiledPipeline, store: Store, *, limit: int = 50, runs: int = RECENT_RUNS
) -> Status:
    """The status of ``pipeline``: at most ``limit`` partial matches of each status (the
    oldest) and the ``runs`` newest runs."""
    per_rule = await store.match_counts()
    counts = dict(await store.counts())
    counts["matches_missed"] = sum(c.get("missed", 0) for c in per_rule.values())
    found = await workers(store)
    return Status(
        pipeline=pipeline.name,
        state=redact_dsn(pipeline.state_dsn),
        rules=tuple(rule_views(pipeline, per_rule)),
        partial_matches=tuple(await partial_matches(pipeline, store, limit=limit)),
        counts=counts,
        recent_runs=tuple(await with_checks(store, await store.list_runs(limit=runs))),
        held=tuple(await held(pipeline, store, limit=limit)),
        pauses=tuple(await pauses(store)),
        sensors=tuple(sensor_statuses(pipeline, found)),
        workers=tuple(found),
        reliability=tuple(await reliability(pipeline, store)),
    )
