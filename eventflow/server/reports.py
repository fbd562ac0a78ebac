"""What the API and the status page show, read from the store the way the CLI reads it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eventflow.events import JSON, emit_problem, utcnow
from eventflow.pipeline import EMIT_SENSOR, Pipeline
from eventflow.rules.core import MatchState
from eventflow.types import InboxItem, RunRecord, Store


def rules(pipeline: Pipeline, per_rule: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
    """Each rule with its join condition and its matches by status (``status`` rules)."""
    out = []
    for name, rule in pipeline.rules.items():
        counts = per_rule.get(name, {})
        out.append(
            {
                "rule": name,
                "when": {
                    "mode": rule.spec.mode,
                    "datasets": list(rule.spec.datasets),
                    "by": list(rule.spec.by),
                    "within": rule.spec.within.total_seconds() if rule.spec.within else None,
                },
                "produces": rule.produces,
                "open": counts.get("open", 0),
                "fired": counts.get("fired", 0),
                "expired": counts.get("expired", 0),
            }
        )
    return out


def partial_match(pipeline: Pipeline, match: MatchState) -> dict[str, Any] | None:
    """An open or expired match: what arrived, what is missing, when it is due."""
    rule = pipeline.rules.get(match.rule)
    if rule is None or match.status not in ("open", "expired"):
        return None
    return {
        "rule": match.rule,
        "partition": dict(match.partition),
        "status": match.status,
        "generation": match.generation,
        "arrived": sorted(d for d in match.inputs if match.inputs[d]),
        "missing": list(match.missing(rule.spec)),
        "opened_at": match.opened_at.isoformat() if match.opened_at else None,
        "expires_at": match.expires_at.isoformat() if match.expires_at else None,
    }


async def partial_matches(
    pipeline: Pipeline, store: Store, *, rule: str | None, status: str | None, limit: int
) -> list[dict[str, Any]]:
    statuses = [status] if status else ["open", "expired"]
    found = []
    for s in statuses:
        for m in await store.list_matches(rule=rule, status=s, limit=limit):
            row = partial_match(pipeline, m)
            if row is not None:
                found.append(row)
    return found


def run_row(run: RunRecord, *, inputs: bool = False) -> dict[str, Any]:
    row = run.to_dict()
    if not inputs:
        row.pop("inputs", None)
    return row


def run_logs(pipeline: Pipeline, run: RunRecord, attempt: int | None) -> dict[str, JSON]:
    """The captured stdout and stderr of one attempt (default: the last one)."""
    n = attempt or run.attempt
    folder: Path = pipeline.runs_dir / run.run_id
    logs: dict[str, JSON] = {"run_id": run.run_id, "attempt": n}
    for stream in ("stdout", "stderr"):
        path = folder / f"attempt-{n}.{stream}"
        logs[stream] = path.read_text(errors="replace") if path.exists() else ""
    return logs


class EmitError(ValueError):
    """An emit request names no dataset of the pipeline or the wrong partition variables."""


def emit_item(
    pipeline: Pipeline,
    dataset: str,
    partition: Mapping[str, str],
    emit_id: str,
    payload: JSON,
) -> InboxItem:
    """The inbox row ``eventflow emit`` writes: the engine turns it into an event."""
    ds = pipeline.datasets.get(dataset)
    if ds is None:
        raise EmitError(f"no dataset {dataset!r}; datasets: {', '.join(pipeline.datasets)}")
    if set(partition) != set(ds.variables):
        raise EmitError(
            f"dataset {dataset} is partitioned by ({', '.join(ds.variables)}):"
            f" give exactly those, not ({', '.join(partition)})"
        )
    problem = emit_problem(partition, emit_id, payload)
    if problem is not None:
        raise EmitError(f"dataset {dataset}: {problem}")
    return InboxItem(
        observation_sensor=EMIT_SENSOR,
        dataset=dataset,
        partition={n: str(partition[n]) for n in ds.variables},
        position={"emit_id": emit_id},
        payload=payload,
        created_at=utcnow(),
    )
