"""Completion events: what eventflow tells the world, in the CloudEvents 1.0 envelope.

Every id is derived from what the event is about (a run attempt, an expired generation, a
dataset partition announced by an event), so a consumer that sees an event twice (the outbox
delivers at least once) can deduplicate by ``id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from eventflow.events import Event, InputRef, digest, format_partition
from eventflow.pipeline import CompiledPipeline
from eventflow.records import CheckGate, DeadLetter, OutboxItem, RunRecord
from eventflow.rules.core import DeadlineMissed, Expired, LateInput
from eventflow.versions import PipelineVersion

DATASET_AVAILABLE = "eventflow.dataset.available"
RUN_STARTED = "eventflow.run.started"
RUN_SUCCEEDED = "eventflow.run.succeeded"
RUN_RETRYING = "eventflow.run.retrying"
RUN_FAILED = "eventflow.run.failed"
RUN_CANCELLED = "eventflow.run.cancelled"
MATCH_EXPIRED = "eventflow.match.expired"
DEADLINE_MISSED = "eventflow.deadline.missed"
DATA_LATE = "eventflow.data.late"
EVENT_DEADLETTERED = "eventflow.event.deadlettered"
CHECK_FAILED = "eventflow.check.failed"
CHECK_PASSED = "eventflow.check.passed"

TYPES = (
    DATASET_AVAILABLE,
    RUN_STARTED,
    RUN_SUCCEEDED,
    RUN_RETRYING,
    RUN_FAILED,
    RUN_CANCELLED,
    MATCH_EXPIRED,
    DEADLINE_MISSED,
    DATA_LATE,
    EVENT_DEADLETTERED,
    CHECK_FAILED,
    CHECK_PASSED,
)


def _source(pipeline: str, kind: str, name: str) -> str:
    return f"/eventflow/{pipeline}/{kind}/{name}"


def deadlettered(pipeline: str, letter: DeadLetter) -> Event:
    """A message that could not be processed: a dead-letter sink (a file, a Kafka topic) is
    a publisher that takes this type."""
    return Event(
        id=digest(EVENT_DEADLETTERED, letter.event_id),
        source=_source(pipeline, "sensors", letter.sensor),
        type=EVENT_DEADLETTERED,
        subject=letter.sensor,
        time=letter.time,
        data={
            "sensor": letter.sensor,
            "event_id": letter.event_id,
            "position": dict(letter.position),
            "error": letter.error,
            "excerpt": letter.excerpt,
        },
    )


def dataset_available(pipeline: str, ref: InputRef, now: datetime) -> Event:
    return Event(
        id=digest(DATASET_AVAILABLE, ref.dataset, ref.event_id),
        source=_source(pipeline, "datasets", ref.dataset),
        type=DATASET_AVAILABLE,
        subject=f"{ref.dataset}/{format_partition(ref.partition)}",
        time=now,
        data={
            "dataset": ref.dataset,
            "partition": dict(ref.partition),
            "event": ref.to_dict(),
        },
    )


def run_event(
    pipeline: str,
    type_: str,
    run: RunRecord,
    now: datetime,
    *,
    duration: float | None = None,
    error: str | None = None,
    output: Mapping[str, Any] | None = None,
    next_attempt_at: datetime | None = None,
    produces: str | None = None,
) -> Event:
    data: dict[str, Any] = {
        "rule": run.rule,
        "partition": dict(run.partition),
        "run_id": run.run_id,
        "generation": run.generation,
        "attempt": run.attempt,
        "max_attempts": run.max_attempts,
        "inputs": [r.to_dict() for r in run.inputs],
    }
    if duration is not None:
        data["duration"] = round(duration, 6)
    if error is not None:
        data["error"] = error
    if output:
        data["output"] = dict(output)
    if next_attempt_at is not None:
        data["next_attempt_at"] = next_attempt_at.isoformat()
    if produces is not None:
        data["produces"] = produces
    return Event(
        pipelineversion=run.pipeline_version,
        id=digest(type_, run.run_id, run.attempt),
        source=_source(pipeline, "rules", run.rule),
        type=type_,
        subject=f"{run.rule}/{format_partition(run.partition)}",
        time=now,
        data=data,
    )


def _match_event(
    pipeline: str,
    type_: str,
    id_parts: tuple[Any, ...],
    effect: Expired | DeadlineMissed | LateInput,
    now: datetime,
    data: dict[str, Any],
    versions: PipelineVersion | None,
) -> Event:
    """An event about one rule's partition: its id from ``type_`` and ``id_parts``."""
    return Event(
        pipelineversion=versions.rule(effect.rule) if versions is not None else None,
        id=digest(type_, effect.rule, *id_parts),
        source=_source(pipeline, "rules", effect.rule),
        type=type_,
        subject=f"{effect.rule}/{format_partition(effect.partition)}",
        time=now,
        data={
            "rule": effect.rule,
            "partition": dict(effect.partition),
            "generation": effect.generation,
            **data,
        },
    )


def match_expired(
    pipeline: str, effect: Expired, now: datetime, versions: PipelineVersion | None = None
) -> Event:
    data = {
        "opened_at": effect.opened_at.isoformat() if effect.opened_at else None,
        "arrived": [r.to_dict() for r in effect.arrived],
        "missing": list(effect.missing),
    }
    return _match_event(
        pipeline, MATCH_EXPIRED, (effect.key, effect.generation), effect, now, data, versions
    )


def deadline_missed(
    pipeline: str, effect: DeadlineMissed, now: datetime, versions: PipelineVersion | None = None
) -> Event:
    """One per partition and rule: a partition's deadline is missed once."""
    data = {
        "deadline": effect.deadline.isoformat(),
        "fired_late": effect.fired_late,
        "arrived": [r.to_dict() for r in effect.arrived],
        "missing": list(effect.missing),
        "partial_run_id": effect.partial_run,
    }
    return _match_event(pipeline, DEADLINE_MISSED, (effect.key,), effect, now, data, versions)


def data_late(
    pipeline: str, effect: LateInput, now: datetime, versions: PipelineVersion | None = None
) -> Event:
    """An input of a closed partition under ``late: event``; one per rule and event."""
    data = {"status": effect.status, "event": effect.ref.to_dict()}
    return _match_event(pipeline, DATA_LATE, (effect.ref.event_id,), effect, now, data, versions)


def check_event(
    pipeline: str, gate: CheckGate, result: Mapping[str, Any] | None, now: datetime
) -> Event:
    """``eventflow.check.failed`` for one failed check of a gate's evaluation (``result``),
    or ``eventflow.check.passed`` (``result`` None) when its blocking checks all passed."""
    type_ = CHECK_PASSED if result is None else CHECK_FAILED
    data: dict[str, Any] = {
        "rule": gate.rule,
        "dataset": gate.dataset,
        "partition": dict(gate.partition),
        "run_id": gate.run_id,
        "evaluation": gate.attempt,
        "pipeline_version": gate.pipeline_version,
    }
    if result is None:
        data["results"] = [dict(r) for r in gate.results]
        name = ""
    else:
        data["check"] = name = str(result["check"])
        data["severity"] = result["severity"]
        data["blocking"] = result["severity"] == "error"
        data["result"] = dict(result)
    return Event(
        id=digest(type_, gate.run_id, gate.attempt, name),
        source=_source(pipeline, "rules", gate.rule),
        type=type_,
        subject=f"{gate.dataset}/{format_partition(gate.partition)}",
        time=now,
        data=data,
    )


def wanted(pipeline: CompiledPipeline, type_: str) -> bool:
    """Whether any publisher takes events of this type (skip building the ones none takes)."""
    return bool(pipeline.publishers_for(type_))


def route(pipeline: CompiledPipeline, event: Event) -> list[OutboxItem]:
    """One outbox item per publisher whose ``types`` globs accept the event's type."""
    return [OutboxItem(publisher=name, event=event) for name in pipeline.publishers_for(event.type)]
