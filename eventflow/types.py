"""The seams of eventflow: the protocols of plugins (sensors, publishers, senders, task runners)
and of the state store.

Sensors, publishers, task runners and stores are plugins found by entry point (see
:mod:`eventflow.registry`). The core talks to them only through these protocols, so it never
imports a transport library. The rows the store reads and writes are in
:mod:`eventflow.records`; a plugin gets both through :mod:`eventflow.plugin`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Self, runtime_checkable

from pydantic import BaseModel

from eventflow.backfill_requests import BackfillRequest
from eventflow.events import JSON, Event, InputRef, Observation
from eventflow.pauses import Pause, PauseAction, PauseActionName, PauseKind
from eventflow.payloads import InputEvent
from eventflow.records import (
    Changes,
    CheckGate,
    DeadLetter,
    DeadLetterStatus,
    GateStatus,
    InboxItem,
    MatchKey,
    OutboxItem,
    RunRecord,
    RunStatus,
    StoredEvent,
    Timer,
    WorkerBeat,
)
from eventflow.rules.core import MatchState
from eventflow.version_records import StoreIdentity, VersionStart

RunPosition = tuple[datetime, str]
"""Where a run sits in the newest-first order of runs: its ``created_at`` and ``run_id``."""

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger


@dataclass(frozen=True, slots=True)
class PluginEnv:
    """What every plugin may know about the pipeline it serves."""

    pipeline: str
    base_dir: Path
    """The directory of the pipeline file: relative paths in the config are resolved here."""
    environment: str = "default"
    """The environment the pipeline runs in (``--env``). A plugin that names itself to a
    shared system by default (a Kafka consumer group, an MQTT client id) adds it when it is
    not ``default``, so two environments of one pipeline never share that name."""

    def scoped(self, name: str) -> str:
        """``name`` of the pipeline's default environment, ``name.ENV`` of another one."""
        return name if self.environment == "default" else f"{name}.{self.environment}"


# --- sensors -------------------------------------------------------------------------------


class SensorContext(Protocol):
    """What the engine gives a running sensor."""

    name: str
    log: FilteringBoundLogger

    async def emit(self, observation: Observation) -> None:
        """Queue an observation for the engine; waits while the queue is full (backpressure)."""

    async def load_cursor(self) -> dict[str, JSON]:
        """The committed checkpoint: cursor key to value, as written by ``Observation.cursor``."""

    async def forget(self, keys: Collection[str]) -> None:
        """Delete cursor entries that no longer matter (files that were deleted)."""

    def set_health(self, ok: bool, detail: str = "") -> None:
        """Report whether the sensor reaches its source (shown by ``status`` and ``/readyz``)."""


ScaleOut = Literal["exclusive", "shared"]
"""How a sensor runs when several workers share a store (the optional ``scale_out``
attribute of a sensor, read by the runtime from the instance, so a class may set it and an
instance change it by its config; ``exclusive`` when absent):

- ``exclusive``: on one worker at a time, which holds the store's lease
  ``sensor:PIPELINE:NAME``; another worker takes over when it dies (directory, S3 listing).
- ``shared``: on every worker; the source spreads the work (Kafka consumer groups, MQTT
  shared subscriptions)."""


@runtime_checkable
class Sensor(Protocol):
    """A source watcher. ``run`` observes until cancelled and returns or raises on failure;
    the supervisor restarts a failed sensor with backoff. A class may set
    ``scale_out: ClassVar[ScaleOut]`` (see :data:`ScaleOut`)."""

    config_model: ClassVar[type[BaseModel]]

    def __init__(self, name: str, config: Any, env: PluginEnv) -> None: ...

    async def run(self, ctx: SensorContext) -> None: ...


@runtime_checkable
class ListableSensor(Protocol):
    """A sensor that can list what is at its source now, as the observations it would emit
    (``eventflow backfill`` enumerates partitions with it). Optional: directory and S3
    sensors implement it, message brokers cannot."""

    async def list_observations(self, prefix: str = "") -> list[Observation]:
        """Observations of everything now under ``prefix`` (a key prefix: a dataset
        pattern's text before its first placeholder), with the positions ``run`` would give
        them, so that their event ids are the same."""


@runtime_checkable
class ObjectSensor(Protocol):
    """A sensor of an object store (S3) whose objects a data-quality ``exists`` check looks
    for, with the sensor's client settings. Optional: the S3 sensor implements it."""

    def object_url(self, key: str) -> str:
        """The location of ``key`` in the sensor's source: ``s3://BUCKET/KEY``."""

    async def object_sizes(self, url: str) -> list[tuple[str, int]]:
        """The objects matching ``url`` (glob characters in the key) and their sizes."""


@runtime_checkable
class ReplayableSensor(Protocol):
    """A sensor that can read its source again from a point in time (Kafka: the offsets at
    that time), for ``eventflow replay --from-source``. Optional."""

    def replay_observations(self, since: datetime | None) -> AsyncIterator[Observation]:
        """Observations from ``since`` (None: the earliest retained) to the present end,
        with the positions ``run`` gives them; then it stops."""


# --- publishers ----------------------------------------------------------------------------


@runtime_checkable
class Publisher(Protocol):
    """Delivers completion events. ``publish`` either delivers every event or raises
    :class:`~eventflow.errors.PublishError`; the outbox keeps undelivered events."""

    config_model: ClassVar[type[BaseModel]]

    def __init__(self, name: str, config: Any, env: PluginEnv) -> None: ...

    async def open(self) -> None: ...

    async def publish(self, events: Sequence[Event]) -> None: ...

    async def close(self) -> None: ...


# --- message senders (the ``publish`` task) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message a ``publish`` task sends: already rendered and encoded."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@runtime_checkable
class MessageSender(Protocol):
    """Sends messages to a broker for the ``publish`` task; registered in the entry-point group
    ``eventflow.senders`` under the transport key (``kafka``, ``mqtt``). ``config_model``
    validates the connection settings under that key.

    ``send`` returns once the broker has acknowledged the message (Kafka ``acks=all``, MQTT
    QoS 1 PUBACK) with facts about it (partition and offset, message id), and raises when it
    could not be delivered: the attempt fails and the dispatcher retries it."""

    config_model: ClassVar[type[BaseModel]]

    def __init__(self, config: Any, env: PluginEnv) -> None: ...

    async def open(self) -> None: ...

    async def send(self, message: OutgoingMessage) -> dict[str, JSON]: ...

    async def close(self) -> None: ...


# --- tasks ---------------------------------------------------------------------------------


class Note(Protocol):
    """``RunContext.note``: record facts about the attempt in the run's ``notes``."""

    async def __call__(self, facts: Mapping[str, JSON], *, durable: bool = True) -> None: ...


async def _note_nowhere(facts: Mapping[str, JSON], *, durable: bool = True) -> None:
    """The ``note`` of a context made outside the dispatcher (tests, ``eventflow.testing``)."""


@dataclass(frozen=True, slots=True)
class RunContext:
    """Everything a task attempt gets: a stable run id, its attempt and its inputs."""

    run_id: str
    rule: str
    attempt: int
    partition: Mapping[str, str]
    inputs: tuple[InputRef, ...]
    events_file: Path
    """JSON file listing the input events (``EVENTFLOW_EVENTS``)."""
    stdout_path: Path
    stderr_path: Path
    timeout: float | None
    log_max_bytes: int
    variables: Mapping[str, str]
    """Values for ``{var}`` templates: the partition plus ``run_id``, ``rule``, ``attempt``,
    ``partition`` and the rule's ``params``."""
    events: tuple[InputEvent, ...] = ()
    """The inputs with what their sources delivered (``payload``, ``key``, ``attributes``),
    in the order of ``inputs``: what ``EVENTFLOW_EVENTS`` lists."""
    params: Mapping[str, str] = field(default_factory=dict)
    """The rule's ``params``, evaluated over the inputs (also in ``variables``)."""
    pipeline: str = ""
    """The pipeline's ``name``: with ``store_id`` and ``run_id``, what makes a downstream
    system's run id unique."""
    store_id: str = ""
    """The store's identity (``store_identity``; empty when the store has none yet): two
    environments that run the same pipeline never share a downstream run id."""
    notes: Mapping[str, JSON] = field(default_factory=dict)
    """What earlier attempts of this run noted (``note``): the process group of an attempt
    that may still be alive, the downstream run a hand-off started."""
    note: Note = field(default=_note_nowhere)
    """``await ctx.note({"key": value})`` records facts about this attempt in the run's
    ``notes`` before it returns (a key noted again is replaced): what the next attempt after a
    crash must know, and what ``runs`` shows. Keys are names (``[A-Za-z_]\\w*``).
    ``durable=False`` commits without waiting for the disk: the note survives a crash of
    eventflow, not of the machine (enough for what lives only as long as the machine)."""

    def payloads(self, dataset: str) -> list[JSON]:
        """The payloads of the inputs of ``dataset``, oldest first."""
        return [e.payload for e in self.events if e.ref.dataset == dataset]


@dataclass(frozen=True, slots=True)
class TaskResult:
    ok: bool
    detail: str = ""
    """Why it failed (exit code, exception, HTTP status), shown in ``runs`` and events."""
    output: Mapping[str, JSON] = field(default_factory=dict)
    """Structured facts about the attempt (exit code, HTTP status) for the completion event."""


OPERATOR_CANCEL = "eventflow: an operator cancelled the run"
"""The message of the ``asyncio.CancelledError`` a task runner gets when an operator cancelled
its run (``eventflow cancel``): stop, and also stop what the attempt started elsewhere (a
hand-off's downstream run). Any other cancellation is a shutdown: the run will be resumed."""


def operator_cancelled(exc: BaseException) -> bool:
    """Whether ``exc`` is the cancellation of a run by an operator (see OPERATOR_CANCEL)."""
    return isinstance(exc, asyncio.CancelledError) and OPERATOR_CANCEL in exc.args


@runtime_checkable
class TaskRunner(Protocol):
    """Runs one attempt of a task. Raising is a failed attempt, like ``TaskResult(ok=False)``;
    ``asyncio.CancelledError`` means stop now (timeout, shutdown, or an operator's cancel:
    :func:`operator_cancelled`) and clean up."""

    config_model: ClassVar[type[BaseModel]]

    def __init__(self, config: Any, env: PluginEnv) -> None: ...

    async def run(self, ctx: RunContext) -> TaskResult: ...


class Transaction(Protocol):
    """One store transaction; committed when its context exits without an exception."""

    async def seen_events(self, ids: Collection[str]) -> set[str]:
        """The subset of ``ids`` already in the event log (or a dead letter)."""

    async def get_matches(self, keys: Collection[MatchKey]) -> dict[MatchKey, MatchState]: ...

    async def get_gate(self, run_id: str) -> CheckGate | None:
        """The check gate of the run's produced partition, read in the transaction and held
        until it ends (PostgreSQL locks the row), so what the transaction writes of it is
        decided on what it is: an operator's action and a checker's result never overwrite
        each other."""

    async def claim_runs(
        self, now: datetime, limit: int, rule_limits: Mapping[str, int]
    ) -> list[RunRecord]:
        """Mark up to ``limit`` due pending runs as running (``attempt`` + 1, ``started_at``
        now), oldest first, without exceeding ``rule_limits[rule]`` running runs per rule,
        and return them as updated."""

    async def apply(self, changes: Changes) -> None: ...


@runtime_checkable
class Store(Protocol):
    """The transactional state store. Opened by ``async with`` (or ``open``); ``close`` is
    idempotent and using a closed store raises :class:`~eventflow.errors.ClosedError`."""

    @classmethod
    def from_dsn(cls, dsn: str, base_dir: Path) -> Self: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def transaction(self, *, durable: bool = True) -> AbstractAsyncContextManager[Transaction]:
        """A transaction. ``durable=False`` may skip flushing to disk at commit: a power cut
        (never a process crash) may then lose it, and a later durable commit flushes it.
        Only for changes whose loss merely repeats work (claiming or finishing a run; a live
        backfill's chunk, lost with the position it writes, fires again with the same run
        ids)."""

    async def lock_worker(self) -> None:
        """Claim the right to run the engine and dispatcher on this store, until ``close``.

        Raises StoreError when another process holds it: two workers on a store that is
        not built for sharing would each take the other's running runs for abandoned ones.
        A store built for sharing (PostgreSQL) registers the worker with a lease instead.
        """

    def lease(self, name: str) -> AbstractAsyncContextManager[asyncio.Event]:
        """Wait until this worker holds the named lease (one worker at a time per name);
        the event is set if the lease is lost (stop what it guards); released on exit.
        A store for one worker grants every lease at once and never loses it."""

    # sensors
    async def beat_worker(self, beat: WorkerBeat) -> None:
        """Write this worker's heartbeat row (and forget rows of workers gone a day)."""

    async def list_workers(self) -> list[WorkerBeat]:
        """Every worker's last heartbeat row, the newest first."""

    async def load_cursors(self, sensor: str) -> dict[str, JSON]: ...

    async def delete_cursors(self, sensor: str, keys: Collection[str]) -> None: ...

    # runs
    async def recover_running(self, now: datetime) -> list[str]:
        """At start-up: runs left ``running`` by a dead process go back to ``pending`` (they
        run again with the same run id). Returns their ids."""

    async def next_run_due(self) -> datetime | None:
        """The earliest ``not_before`` of a pending run (None = no pending run);
        a pending run without ``not_before`` counts as due at ``datetime.min`` in UTC."""

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_runs(
        self,
        *,
        rule: str | None = None,
        status: RunStatus | None = None,
        key: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        before: RunPosition | None = None,
    ) -> list[RunRecord]:
        """Newest first (by ``created_at``, then ``run_id``); ``key`` is a partition key;
        created at or after ``since`` and before ``until``; after ``before`` in that order
        (keyset paging: pass the last run's position for the next page)."""

    async def count_runs(
        self,
        *,
        rule: str | None = None,
        status: RunStatus | None = None,
        key: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many runs :meth:`list_runs` would list with the same filters and no limit."""

    async def retry_run(self, run_id: str, now: datetime) -> RunRecord:
        """Put a ``failed`` or ``cancelled`` run back to ``pending`` with one more allowed
        attempt; raises StoreError if there is no such run or it is neither."""

    async def request_cancel(self, run_id: str, by: str, now: datetime) -> RunRecord:
        """Ask for a ``pending`` or ``running`` run to be cancelled (the first request is
        kept); it is not claimed again, and the dispatcher running it (or, for a pending run,
        any dispatcher) cancels it. Raises StoreError if there is no such run or it ended."""

    async def cancel_requests(self) -> list[RunRecord]:
        """Pending and running runs whose cancellation was asked for."""

    # pauses (eventflow.pauses)
    async def set_pause(
        self,
        kind: PauseKind,
        name: str,
        action: PauseActionName,
        by: str,
        reason: str | None,
        now: datetime,
    ) -> PauseAction:
        """Pause (or resume) a rule or sensor and audit it, in one transaction. Pausing what
        is paused keeps the first pause, resuming what runs changes nothing (``changed``
        False); both are audited. A claim does not take the runs of a paused rule."""

    async def pauses(self) -> list[Pause]:
        """What is paused now, by kind and name."""

    async def pause_actions(self, limit: int = 100) -> list[PauseAction]:
        """The audit trail of pauses and resumes, newest first."""

    # backfill requests (eventflow.backfill_requests)
    async def save_backfill(self, request: BackfillRequest) -> None:
        """Insert a backfill request, or record its status and progress (its request and
        cancel request are kept)."""

    async def get_backfill(self, backfill_id: str) -> BackfillRequest | None: ...

    async def list_backfills(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[BackfillRequest]:
        """Newest first; ``status`` one of the statuses, or ``active`` (pending or running)."""

    async def request_backfill_cancel(
        self, backfill_id: str, by: str, now: datetime
    ) -> BackfillRequest:
        """Ask for a pending or running backfill to be cancelled (the first request is
        kept); raises StoreError if there is none or it ended."""

    # timers
    async def due_timers(self, now: datetime, limit: int) -> list[Timer]: ...

    async def timers(self, limit: int) -> list[Timer]:
        """Every timer, soonest first, on any worker: what ``plan`` and a version's start read
        (``due_timers`` answers only the worker that fires timers: nothing on the others)."""
        ...

    async def next_timer_due(self) -> datetime | None: ...

    # outbox and inbox
    async def fetch_outbox(self, publisher: str, limit: int) -> list[OutboxItem]:
        """Oldest first."""

    async def delete_outbox(self, ids: Collection[int]) -> None: ...

    async def fetch_inbox(self, limit: int) -> list[InboxItem]: ...

    async def add_inbox(self, item: InboxItem) -> int: ...

    # reading state (status, why)
    async def list_matches(
        self,
        *,
        rule: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        partial: bool = False,
        key: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: tuple[str, str] | None = None,
    ) -> list[MatchState]:
        """Rule states by rule and key, of one ``rule``, ``status`` or partition ``key``
        (all given must hold); ``partial``: not fired; changed at or after ``since`` and
        before ``until``; after the (rule, key) ``after`` (keyset paging)."""

    async def count_matches(
        self,
        *,
        rule: str | None = None,
        status: str | None = None,
        partial: bool = False,
        key: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many :meth:`list_matches` would list with the same filters, no limit."""

    async def partition_runs(self, rule: str, key: str) -> list[RunRecord]:
        """Every run of one partition (``key``) of ``rule``, any generation and status, by
        generation, from the last commit without waiting for an open transaction (through
        an index: a backfill asks for each partition it decides)."""

    async def unfinished_runs(self, rule: str) -> int:
        """How many runs of ``rule`` are ``pending`` or ``running`` (a cheap count, through
        the claim index: a live backfill asks before each chunk)."""

    async def committed_seen_events(self, ids: Collection[str]) -> set[str]:
        """Like ``Transaction.seen_events`` but outside any transaction, from the last
        commit, without waiting for an open transaction (the engine overlays what its own
        in-flight commit writes)."""

    async def committed_matches(self, keys: Collection[MatchKey]) -> dict[MatchKey, MatchState]:
        """Like ``Transaction.get_matches``, from the last commit (see above)."""

    async def get_match(self, rule: str, key: str) -> MatchState | None: ...

    async def match_counts(self) -> dict[str, dict[str, int]]:
        """Matches per rule and status: ``{rule: {"open": n, "fired": n, "expired": n}}``
        (statuses with no match are left out)."""

    async def get_events(self, ids: Collection[str]) -> list[StoredEvent]: ...

    # the event log (replay, backfill, retention)
    async def read_events(
        self,
        *,
        since: datetime | None = None,
        sensors: Collection[str] | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[tuple[int, StoredEvent]]:
        """A page of the event log in commit order (within one commit, the store's order):
        events received at or after ``since``, of ``sensors`` (None = all), each with its
        sequence number; pass the last one as ``after`` for the next page (an empty page is
        the end)."""

    async def prune_events(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` events received before ``before`` (retention); returns how
        many. Call again while it returns ``limit``."""

    async def list_events(
        self,
        limit: int = 100,
        *,
        dataset: str | None = None,
        sensor: str | None = None,
        partition: Mapping[str, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
    ) -> list[StoredEvent]:
        """The event log newest first: of ``sensor``; announcing ``dataset`` (and, with
        ``partition``, a partition holding those values); received at or after ``since``
        and before ``until``; logged before the event ``after`` (keyset paging)."""

    async def count_events(
        self,
        *,
        dataset: str | None = None,
        sensor: str | None = None,
        partition: Mapping[str, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many :meth:`list_events` would list with the same filters, no limit."""

    async def list_deadletters(
        self,
        limit: int = 100,
        *,
        sensor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
        status: DeadLetterStatus | None = None,
    ) -> list[DeadLetter]:
        """Most recently recorded first; of ``sensor``; whose ``time`` is at or after
        ``since`` and before ``until``; recorded before the dead letter of event id
        ``after`` (keyset paging: pass the last one's id for the next page); with
        ``status`` (None: any)."""

    async def count_deadletters(
        self,
        *,
        sensor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        status: DeadLetterStatus | None = None,
    ) -> int:
        """How many :meth:`list_deadletters` would list with the same filters, no limit."""

    async def get_deadletter(self, event_id: str) -> DeadLetter | None: ...

    async def act_on_deadletter(
        self, event_id: str, action: Literal["redrive", "discard"], by: str, now: datetime
    ) -> DeadLetter:
        """Request a redrive of an open dead letter that kept its message (the running
        engine carries it out: :meth:`fetch_redrives`, ``Changes.deadletter_outcomes``), or
        discard an open one; either appends ``{action, by, at}`` to its history. Raises
        :class:`~eventflow.store._deadletters.DeadLetterRefused` when it does not apply."""

    async def fetch_redrives(self, limit: int) -> list[DeadLetter]:
        """Open dead letters whose redrive is requested, oldest first (on a shared store,
        only on the worker that polls the inbox)."""

    # data-quality checks
    async def list_gates(
        self,
        *,
        rule: str | None = None,
        dataset: str | None = None,
        key: str | None = None,
        status: GateStatus | None = None,
        run_id: str | None = None,
        run_ids: Collection[str] | None = None,
        limit: int = 100,
    ) -> list[CheckGate]:
        """Produced partitions held by their rule's checks, newest first (of the runs
        ``run_ids`` when given); written through ``Changes.gates``."""

    async def claim_gates(
        self, now: datetime, until: datetime, limit: int
    ) -> list[tuple[CheckGate, str]]:
        """Claim up to ``limit`` gates to check for this store's worker until ``until``, at
        once (two workers never claim one gate), oldest first: each becomes ``running``
        with its evaluation (``attempt``) + 1 and comes back with its status before the
        claim. Claimed are the ``pending`` gates and the ``running`` ones whose claim
        expired before ``now`` (a dead or stalled worker's); a store for one worker also
        takes a ``running`` gate another worker claimed (that worker is dead)."""

    async def renew_gates(self, run_ids: Collection[str], until: datetime) -> set[str]:
        """Extend this worker's claims of the running gates ``run_ids`` to ``until``;
        returns those it still holds (the others were decided or taken over). ``until``
        now releases them: any worker may claim them at once (a clean stop)."""

    async def counts(self) -> dict[str, int]:
        """``runs_pending``, ``runs_running``, ``runs_succeeded``, ``runs_failed``,
        ``runs_cancelled``, ``matches_open``, ``matches_fired``, ``matches_expired``, ``events``,
        ``outbox``, ``timers``, ``inbox``, ``deadletters``."""

    # pipeline versions and environments (eventflow.versions, eventflow.environments)
    async def claim_identity(self, identity: StoreIdentity) -> StoreIdentity:
        """The store's identity: ``identity`` when the store has none yet (it is kept),
        else the one it has."""

    async def store_identity(self) -> StoreIdentity | None:
        """The store's identity, None before its first start."""

    async def record_start(self, start: VersionStart) -> None:
        """Record a start of a pipeline version."""

    async def list_starts(
        self, limit: int = 100, *, before: int | None = None
    ) -> list[VersionStart]:
        """The newest starts first; ``before``: only starts older than the one of that
        ``seq`` (the next page)."""

    async def count_starts(self) -> int:
        """How many starts the store recorded."""
