"""Each rule's operating figures over a window: error rates and mean time to recover.

- **Error rate of attempts**: failed attempts / attempts of the runs created in the window
  (a succeeded run at attempt 3 had two failed attempts; a pending run waiting for its retry
  has all of its attempts failed; a cancelled attempt counts as neither).
- **Error rate of runs**: failed runs / finished (succeeded or failed) runs.
- **MTTR**: per partition stream (rule and partition key), from its first failure to its
  next success, averaged over the recoveries in the window. The store keeps the times of a
  run's last attempt only, so a run whose early attempts failed and a later one succeeded
  counts from its creation (over by at most its first attempt's duration); a run that failed
  for good counts from its end.

Computed from the runs in the store by ``eventflow status``, ``GET /api/rules``,
``GET /api/status``, the page, and the worker's heartbeat for Prometheus.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eventflow.events import utcnow
from eventflow.pipeline import CompiledPipeline
from eventflow.records import RunRecord
from eventflow.types import Store

WINDOW = timedelta(hours=24)
"""The default window: runs created in the last day."""
MAX_RUNS = 10_000
"""Most runs of one rule read for the figures (the newest); ``truncated`` says when hit."""


@dataclass(frozen=True, slots=True)
class RuleReliability:
    rule: str
    window_seconds: float
    runs: int
    """Runs created in the window."""
    finished: int
    failed: int
    attempts: int
    failed_attempts: int
    recoveries: int
    mttr_seconds: float | None
    failing: int
    """Partition streams whose latest run has failed (not recovered in the window)."""
    failing_since: datetime | None
    truncated: bool

    @property
    def attempt_error_rate(self) -> float:
        return self.failed_attempts / self.attempts if self.attempts else 0.0

    @property
    def run_error_rate(self) -> float:
        return self.failed / self.finished if self.finished else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "window_seconds": self.window_seconds,
            "runs": self.runs,
            "finished": self.finished,
            "failed": self.failed,
            "attempts": self.attempts,
            "failed_attempts": self.failed_attempts,
            "attempt_error_rate": round(self.attempt_error_rate, 4),
            "run_error_rate": round(self.run_error_rate, 4),
            "recoveries": self.recoveries,
            "mttr_seconds": None if self.mttr_seconds is None else round(self.mttr_seconds, 3),
            "failing_streams": self.failing,
            "failing_since": None if self.failing_since is None else self.failing_since.isoformat(),
            "truncated": self.truncated,
        }


def failed_attempts(run: RunRecord) -> int:
    """How many of the run's attempts so far failed."""
    if run.status in ("succeeded", "running", "cancelled"):
        return max(0, run.attempt - 1)
    return run.attempt  # failed, or pending (a retry waits after a failure)


def figures(
    rule: str, found: list[RunRecord], window: timedelta, truncated: bool
) -> RuleReliability:
    """The figures of ``rule`` from its runs in the window (any order)."""
    streams: dict[str, list[RunRecord]] = defaultdict(list)
    for run in found:
        streams[run.key].append(run)
    recovered: list[float] = []
    failing, since = 0, None
    for runs in streams.values():
        runs.sort(key=lambda r: (r.created_at, r.run_id))
        down: datetime | None = None
        for run in runs:
            if down is None and failed_attempts(run) and run.status != "failed":
                down = run.created_at  # failed, then retried within the run
            if run.status == "failed" and down is None:
                down = run.finished_at or run.updated_at
            if run.status == "succeeded" and down is not None:
                end = run.finished_at or run.updated_at
                recovered.append(max(0.0, (end - down).total_seconds()))
                down = None
        if down is not None:
            failing += 1
            since = down if since is None else min(since, down)
    finished = [r for r in found if r.status in ("succeeded", "failed")]
    return RuleReliability(
        rule=rule,
        window_seconds=window.total_seconds(),
        runs=len(found),
        finished=len(finished),
        failed=sum(r.status == "failed" for r in finished),
        attempts=sum(r.attempt for r in found),
        failed_attempts=sum(failed_attempts(r) for r in found),
        recoveries=len(recovered),
        mttr_seconds=sum(recovered) / len(recovered) if recovered else None,
        failing=failing,
        failing_since=since,
        truncated=truncated,
    )


async def reliability(
    pipeline: CompiledPipeline,
    store: Store,
    *,
    window: timedelta = WINDOW,
    now: datetime | None = None,
) -> list[RuleReliability]:
    """The figures of every rule of ``pipeline`` over the ``window`` before ``now``."""
    now = utcnow() if now is None else now
    found = []
    for rule in pipeline.rules:
        runs = await store.list_runs(rule=rule, since=now - window, limit=MAX_RUNS)
        found.append(figures(rule, runs, window, truncated=len(runs) >= MAX_RUNS))
    return found
