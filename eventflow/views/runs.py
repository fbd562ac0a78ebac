"""Runs: the list (newest first), one run, and the captured output of one of its attempts.

Each run in a list is a :class:`RunView`: the run and, when it produced a dataset its rule
checks, the outcome of those checks (:class:`RunChecks`, from the stored results of that
run's partition and pipeline version), so ``runs``, ``/api/runs`` and the page agree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from eventflow.events import JSON, partition_key
from eventflow.pipeline import CompiledPipeline
from eventflow.records import CheckGate, RunRecord, RunStatus
from eventflow.types import Store
from eventflow.views import NotFound, paging
from eventflow.views.paging import Page

STREAMS = ("stdout", "stderr")


@dataclass(frozen=True, slots=True)
class RunChecks:
    """The outcome of the checks of the partition a run produced (its gate)."""

    gate: CheckGate

    @property
    def outcome(self) -> str:
        """``pending`` (to run or running), ``passed``, ``blocked`` (by a failed blocking
        check) or ``overridden`` (announced by an operator)."""
        status = self.gate.status
        return "pending" if status in ("pending", "running") else status

    @property
    def failed(self) -> list[str]:
        """The checks that failed in the last evaluation (blocking or not)."""
        return [str(r.get("check")) for r in self.gate.results if r.get("passed") is False]

    @property
    def text(self) -> str:
        """``passed``, ``failed: rows`` (the blocking checks that failed), ``blocked``,
        ``overridden (failed: rows)``, ``passed (warn failed: fresh)`` or ``pending``: the
        cell of a runs table."""
        blocking = ", ".join(self.gate.blocking)
        outcome = self.outcome
        if outcome == "blocked":
            return f"failed: {blocking}" if blocking else "blocked"
        if outcome == "overridden" and blocking:
            return f"overridden (failed: {blocking})"
        if outcome == "passed" and self.failed:
            return f"passed (warn failed: {', '.join(self.failed)})"
        return outcome

    def to_dict(self) -> dict[str, JSON]:
        g = self.gate
        return {
            "outcome": self.outcome,
            "text": self.text,
            "dataset": g.dataset,
            "failed": list(self.failed),
            "blocked_by": g.blocking,
            "evaluation": g.attempt,
            "pipeline_version": g.pipeline_version,
            "results": [
                {k: r.get(k) for k in ("check", "severity", "passed", "value", "detail")}
                for r in g.results
            ],
        }


@dataclass(frozen=True, slots=True)
class RunView(RunRecord):
    """A run as the lists show it: the record and its checks' outcome (None: its rule has no
    checks, or it produced nothing to check)."""

    checks: RunChecks | None = None

    def to_dict(self) -> dict[str, JSON]:
        return RunRecord.to_dict(self) | {
            "checks": self.checks.to_dict() if self.checks is not None else None
        }


async def with_checks(store: Store, records: Sequence[RunRecord]) -> list[RunView]:
    """``records`` as views, each with the outcome of its checks (one query)."""
    gates = {}
    if records:
        found = await store.list_gates(run_ids=[r.run_id for r in records], limit=len(records))
        gates = {g.run_id: g for g in found}
    out = []
    for r in records:
        gate = gates.get(r.run_id)
        values = {f.name: getattr(r, f.name) for f in fields(RunRecord)}
        out.append(RunView(**values, checks=RunChecks(gate) if gate is not None else None))
    return out


async def run_page(
    store: Store,
    *,
    rule: str | None = None,
    status: RunStatus | None = None,
    partition: dict[str, str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[RunView]:
    """A page of runs newest first, of one rule, status or partition (all given must hold),
    created at or after ``since`` and before ``until``, after the page whose ``next`` is
    ``cursor``, with the total the filters select.

    A :class:`RunView` is the view of a run: its ``to_dict()`` (with the run's inputs and
    its checks' outcome) is what ``runs --json``, ``status --json`` and ``/api/runs`` show."""
    key = partition_key(partition) if partition else None
    before = paging.decode(cursor) if cursor else None
    found = await store.list_runs(
        rule=rule, status=status, key=key, since=since, until=until, before=before, limit=limit + 1
    )  # one more than asked tells whether a next page exists
    total = await store.count_runs(rule=rule, status=status, key=key, since=since, until=until)
    items = found[:limit]
    more = len(found) > limit and items
    after = paging.encode(items[-1].created_at, items[-1].run_id) if more else None
    return Page(await with_checks(store, items), after, total)


async def run(store: Store, run_id: str) -> RunView:
    """The run ``run_id`` with its checks' outcome; NotFound when the store has none."""
    record = await store.get_run(run_id)
    if record is None:
        raise NotFound(f"no run {run_id!r}", hint="`eventflow runs FILE` lists the run ids")
    (view,) = await with_checks(store, [record])
    return view


def downstream_text(record: RunRecord) -> str:
    """``airflow eventflow__p__run_1 success``: the downstream run of a hand-off task, or ""."""
    d = record.downstream
    if not d:
        return ""
    return " ".join(str(d.get(k) or "") for k in ("system", "id", "state")).strip()


@dataclass(frozen=True, slots=True)
class RunLogs:
    """What one attempt of a command task wrote (empty when it wrote nothing)."""

    run_id: str
    attempt: int
    stdout: str
    stderr: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "attempt": self.attempt,
            "stdout": self.stdout,
            "stderr": self.stderr,
        }


def run_logs(pipeline: CompiledPipeline, record: RunRecord, attempt: int | None = None) -> RunLogs:
    """The captured output of ``attempt`` (default: the last one) of ``record``."""
    n = attempt or record.attempt
    folder = pipeline.runs_dir / record.run_id
    text = {}
    for stream in STREAMS:
        path = folder / f"attempt-{n}.{stream}"
        text[stream] = path.read_text(errors="replace") if path.exists() else ""
    return RunLogs(record.run_id, n, text["stdout"], text["stderr"])


@dataclass(frozen=True, slots=True)
class RunDetail:
    """One run with the logs of one attempt: ``eventflow runs FILE RUN_ID``."""

    run: RunView
    logs: RunLogs

    def to_dict(self) -> dict[str, Any]:
        return self.run.to_dict() | {
            "logs": {"stdout": self.logs.stdout, "stderr": self.logs.stderr},
            "logs_attempt": self.logs.attempt,
        }


async def run_detail(
    pipeline: CompiledPipeline, store: Store, run_id: str, attempt: int | None = None
) -> RunDetail:
    record = await run(store, run_id)
    return RunDetail(record, run_logs(pipeline, record, attempt))
