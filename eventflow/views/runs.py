"""Runs: the list (newest first), one run, and the captured output of one of its attempts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventflow.events import partition_key
from eventflow.pipeline import CompiledPipeline
from eventflow.records import RunRecord, RunStatus
from eventflow.types import Store
from eventflow.views import NotFound

STREAMS = ("stdout", "stderr")


async def runs(
    store: Store,
    *,
    rule: str | None = None,
    status: RunStatus | None = None,
    partition: dict[str, str] | None = None,
    limit: int = 50,
) -> list[RunRecord]:
    """Runs newest first, of one rule, status or partition (all given must hold).

    A :class:`~eventflow.types.RunRecord` is the view of a run: its ``to_dict()`` (with the
    run's inputs) is what ``runs --json``, ``status --json`` and ``/api/runs`` show."""
    key = partition_key(partition) if partition else None
    return await store.list_runs(rule=rule, status=status, key=key, limit=limit)


async def run(store: Store, run_id: str) -> RunRecord:
    """The run ``run_id``; NotFound when the store has none."""
    record = await store.get_run(run_id)
    if record is None:
        raise NotFound(f"no run {run_id!r}", hint="`eventflow runs FILE` lists the run ids")
    return record


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

    run: RunRecord
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
