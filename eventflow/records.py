"""The records the state store reads and writes: events, runs, timers, outbox, inbox, dead
letters, and the :class:`Changes` one engine batch commits at once.

The store's protocol is :class:`eventflow.types.Store`; these are its rows, shared by the
engine, the dispatcher, the views and every store implementation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from eventflow.events import JSON, Event, InputRef
from eventflow.rules.core import MatchState
from eventflow.values import value
from eventflow.version_records import VersionStart

NOTE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""What a key of a run's notes may be (it becomes a JSON path in the SQLite store)."""

RunStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]
RUN_STATUSES: tuple[RunStatus, ...] = ("pending", "running", "succeeded", "failed", "cancelled")
"""Every status of a run; ``succeeded``, ``failed`` and ``cancelled`` are final (``eventflow
retry`` makes a failed or cancelled run pending again)."""


MatchKey = tuple[str, str]
"""``(rule, partition key)``."""


@value
class StoredEvent:
    """An observed event as recorded in the event log (what ``why`` and replay read)."""

    id: str
    sensor: str
    key: str | None
    time: datetime
    position: Mapping[str, JSON]
    payload: JSON
    attributes: Mapping[str, JSON]
    datasets: tuple[tuple[str, Mapping[str, str]], ...]
    """The dataset partitions it announced: ``(dataset, partition)``."""
    received_at: datetime


PIPELINE_VERSION_NOTE = "pipeline_version"
"""The note under which a run keeps the version of the rule that fired it."""


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run created by a fire; the store ignores a second one with the same ``run_id``."""

    run_id: str
    rule: str
    key: str
    partition: Mapping[str, str]
    generation: int
    inputs: tuple[InputRef, ...]
    max_attempts: int
    created_at: datetime
    pipeline_version: str = ""
    """The version of the rule that fired it (:mod:`eventflow.versions`); kept in its notes."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    rule: str
    key: str
    partition: Mapping[str, str]
    generation: int
    status: RunStatus
    attempt: int
    """Attempts started so far (0 before the first)."""
    max_attempts: int
    inputs: tuple[InputRef, ...]
    created_at: datetime
    updated_at: datetime
    not_before: datetime | None = None
    """When a pending run may start (retry backoff): a durable timer."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    output: Mapping[str, JSON] = field(default_factory=dict)
    notes: Mapping[str, JSON] = field(default_factory=dict)
    """What the task runner noted during its attempts (``RunContext.note``): a command's
    process group, a hand-off's downstream run. Kept across attempts and retries."""
    cancel_requested: Mapping[str, JSON] | None = None
    """``{by, at}`` when an operator asked to cancel the run and it has not ended yet."""

    @property
    def pipeline_version(self) -> str | None:
        """The version of the rule that fired the run (noted when it was created), None for
        a run older than versions."""
        value = self.notes.get(PIPELINE_VERSION_NOTE)
        return value if isinstance(value, str) else None

    @property
    def downstream(self) -> Mapping[str, JSON] | None:
        """The downstream run a hand-off task started for this run (its note), or None."""
        value = self.notes.get("downstream")
        return value if isinstance(value, dict) else None

    def to_dict(self) -> dict[str, JSON]:
        return {
            "run_id": self.run_id,
            "rule": self.rule,
            "partition": dict(self.partition),
            "generation": self.generation,
            "status": self.status,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "error": self.error,
            "output": dict(self.output),
            "notes": dict(self.notes),
            "cancel_requested": None
            if self.cancel_requested is None
            else dict(self.cancel_requested),
            "pipeline_version": self.pipeline_version,
            "inputs": [r.to_dict() for r in self.inputs],
        }


@dataclass(frozen=True, slots=True)
class RunUpdate:
    """A change of a run's status written by the dispatcher (or ``eventflow retry``)."""

    run_id: str
    status: RunStatus
    attempt: int
    updated_at: datetime
    not_before: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    output: Mapping[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunNote:
    """Facts a task runner notes about its run while an attempt is under way, merged into
    the run's ``notes`` (a key noted again is replaced)."""

    run_id: str
    facts: Mapping[str, JSON]

    def __post_init__(self) -> None:
        for key in self.facts:
            if not NOTE_KEY.fullmatch(key):
                raise ValueError(f"note key {key!r} is not a name ([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class Timer:
    """A durable timer: ``(kind, rule, key, generation)`` is unique."""

    kind: str
    rule: str
    key: str
    generation: int
    due: datetime


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A completion event waiting for one publisher; ``id`` is assigned by the store."""

    publisher: str
    event: Event
    id: int = 0


@dataclass(frozen=True, slots=True)
class InboxItem:
    """An observation recorded in the store instead of a queue: ``eventflow emit`` and the
    datasets a succeeded run ``produces``. The engine consumes and deletes it in one commit."""

    observation_sensor: str
    dataset: str
    partition: Mapping[str, str]
    position: Mapping[str, JSON]
    payload: JSON
    created_at: datetime
    id: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An observation that could not be processed, kept with its source position and error."""

    event_id: str
    sensor: str
    position: Mapping[str, JSON]
    error: str
    excerpt: str
    """The first bytes of the raw message or payload, for a human to look at."""
    time: datetime
    message: Mapping[str, JSON] | None = None
    """The whole observation as received (``key``, ``time``, ``payload``, ``attributes``),
    which a redrive evaluates again; None when only the excerpt is kept (the sensor could
    not decode the message, or it is larger than :data:`DEADLETTER_MESSAGE_LIMIT`)."""
    status: DeadLetterStatus = "open"
    requested_by: str | None = None
    """Who asked for a redrive the running pipeline has not carried out yet (None: none)."""
    requested_at: datetime | None = None
    history: tuple[Mapping[str, JSON], ...] = ()
    """The operators' audit trail, oldest first: ``{action, by, at, error?}`` with action
    ``redrive_requested``, ``redriven``, ``redrive_failed`` or ``discarded``."""


DeadLetterStatus = Literal["open", "redriven", "discarded"]
DEADLETTER_STATUSES: tuple[DeadLetterStatus, ...] = ("open", "redriven", "discarded")
"""``open`` (listed by default; a redrive may be requested), ``redriven`` (its event was
admitted by a redrive), ``discarded`` (kept for the audit, hidden by default)."""

DEADLETTER_MESSAGE_LIMIT = 1024 * 1024
"""The most bytes (as compact JSON) of an observation a dead letter keeps whole for a
redrive; a larger one keeps only its excerpt and cannot be redriven."""


def history_entry(action: str, by: str, now: datetime, error: str | None = None) -> dict[str, JSON]:
    """One entry of a dead letter's history: what was done, by whom, when (and the error of
    a failed redrive)."""
    found: dict[str, JSON] = {"action": action, "by": by, "at": now.astimezone(UTC).isoformat()}
    if error is not None:
        found["error"] = error
    return found


@dataclass(frozen=True, slots=True)
class DeadLetterOutcome:
    """What a redrive did to a dead letter, committed with the batch that admitted its
    event (``redriven``) or recorded the new error (``open``): the row changes only while
    its redrive is still requested, so two commits never both carry it out."""

    event_id: str
    status: Literal["open", "redriven"]
    error: str
    entry: Mapping[str, JSON]
    """The history entry appended."""


GateStatus = Literal["pending", "running", "passed", "blocked", "overridden"]
GATE_STATUSES: tuple[GateStatus, ...] = ("pending", "running", "passed", "blocked", "overridden")
"""The states of a produced partition behind its data-quality checks: ``pending`` and
``running`` (checks to run; a ``running`` gate left by a dead process is run again),
``passed`` and ``overridden`` (announced), ``blocked`` (a blocking check failed)."""


@dataclass(frozen=True, slots=True)
class CheckGate:
    """A partition a run produced, held back until its rule's checks pass: one per run,
    written whole (an upsert by ``run_id``). ``payload`` is what the announcement carries;
    ``results`` the last evaluation (one object per check); ``actions`` the operators' audit
    trail (``{action, by, at, reason}``)."""

    run_id: str
    rule: str
    dataset: str
    key: str
    partition: Mapping[str, str]
    status: GateStatus
    attempt: int
    """Evaluations started so far."""
    payload: JSON
    created_at: datetime
    updated_at: datetime
    results: tuple[Mapping[str, JSON], ...] = ()
    actions: tuple[Mapping[str, JSON], ...] = ()
    pipeline_version: str | None = None
    """The pipeline version of the run that produced it (None until versions are known)."""

    @property
    def blocking(self) -> list[str]:
        """Names of the blocking checks that failed in the last evaluation."""
        return [
            str(r.get("check"))
            for r in self.results
            if r.get("severity") == "error" and r.get("passed") is False
        ]

    def to_dict(self) -> dict[str, JSON]:
        return {
            "run_id": self.run_id,
            "rule": self.rule,
            "dataset": self.dataset,
            "partition": dict(self.partition),
            "status": self.status,
            "attempt": self.attempt,
            "blocked_by": self.blocking,
            "results": [dict(r) for r in self.results],
            "actions": [dict(a) for a in self.actions],
            "pipeline_version": self.pipeline_version,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(slots=True)
class Changes:
    """Everything one engine batch (or one run transition) writes, committed at once."""

    events: list[StoredEvent] = field(default_factory=list)
    listed_events: list[StoredEvent] = field(default_factory=list)
    """Events a backfill found by listing a source, logged marked as not observed live (one
    already logged stays as it is): the live intake takes them as new when their sensor
    observes them, so the pipeline's other rules get them too."""
    cursors: dict[tuple[str, str], JSON] = field(default_factory=dict)
    """``(sensor, cursor key) -> value``, upserted."""
    matches: dict[MatchKey, MatchState] = field(default_factory=dict)
    """Upserted by ``(rule, key)``."""
    runs: list[NewRun] = field(default_factory=list)
    run_updates: list[RunUpdate] = field(default_factory=list)
    run_notes: list[RunNote] = field(default_factory=list)
    timers_add: list[Timer] = field(default_factory=list)
    timers_delete: list[tuple[str, str, str, int]] = field(default_factory=list)
    """``(kind, rule, key, generation)`` of timers to delete."""
    outbox: list[OutboxItem] = field(default_factory=list)
    inbox_add: list[InboxItem] = field(default_factory=list)
    inbox_delete: list[int] = field(default_factory=list)
    deadletters: list[DeadLetter] = field(default_factory=list)
    deadletter_outcomes: list[DeadLetterOutcome] = field(default_factory=list)
    gates: list[CheckGate] = field(default_factory=list)
    """Upserted by ``run_id``."""
    starts: list[VersionStart] = field(default_factory=list)
    """Pipeline starts recorded with what they applied (:mod:`eventflow.migrate`)."""

    def __bool__(self) -> bool:
        return any(
            (
                self.events,
                self.listed_events,
                self.cursors,
                self.matches,
                self.runs,
                self.run_updates,
                self.run_notes,
                self.timers_add,
                self.timers_delete,
                self.outbox,
                self.inbox_add,
                self.inbox_delete,
                self.deadletters,
                self.deadletter_outcomes,
                self.gates,
                self.starts,
            )
        )


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    """A worker's heartbeat row: who it is, what it holds and how its sensors are, written
    by the running process every few seconds so ``eventflow status`` in another process
    sees them (:mod:`eventflow.health`)."""

    worker: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    beat_seconds: float
    """Seconds between two beats: a row older than a few of them is stale."""
    leases: tuple[str, ...] = ()
    sensors: Mapping[str, JSON] = field(default_factory=dict)
    """Sensor name -> its health as :meth:`eventflow.health.SensorState.to_dict` writes it."""
    stopped_at: datetime | None = None
    """Set by the last beat of a worker that stopped cleanly."""
