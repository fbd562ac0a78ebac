"""How store records become rows and back, shared by the SQLite and in-memory stores.

Both stores keep the *encoded* rows below (SQLite in tables, :class:`MemoryStore` in dicts),
so they compare, order and round-trip values in exactly the same way:

- **Datetimes** are ISO-8601 text of the instant in UTC with fixed microsecond precision,
  ``2024-01-01T06:00:00.000000+00:00`` (:func:`dt_text`). Every such string has the same
  length and layout, so text order is time order and ``due <= :now`` is a correct
  comparison in SQL. They decode to aware datetimes in UTC. A naive datetime is refused
  with :class:`~eventflow.errors.StoreError` rather than guessed.
- **JSON** values are compact JSON text (``separators=(",", ":")``, UTF-8, key order kept);
  they decode to plain JSON types (a tuple comes back as a list).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import orjson
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from eventflow.errors import StoreError
from eventflow.events import JSON, Event, InputRef
from eventflow.records import (
    PIPELINE_VERSION_NOTE,
    DeadLetter,
    DeadLetterStatus,
    InboxItem,
    NewRun,
    OutboxItem,
    RunNote,
    RunRecord,
    RunUpdate,
    StoredEvent,
    Timer,
)
from eventflow.rules.core import MatchState

MIN_TIME = datetime.min.replace(tzinfo=UTC)

_loads = json_loads = orjson.loads
_OPTIONS = orjson.OPT_NON_STR_KEYS


FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
"""A time after every timer's: what "every timer" is due by."""


def _dumps(value: JSON) -> str:
    """Compact JSON text (orjson: several times faster than ``json`` on the commit path)."""
    return orjson.dumps(value, option=_OPTIONS).decode()


@functools.lru_cache(maxsize=1024)
def dt_text(value: datetime) -> str:
    """``value`` as sortable UTC text; raises StoreError for a naive datetime.

    Cached: the events of a batch share ``received_at`` and often their source times.
    Equal aware datetimes are the same instant, and the text is of that instant in UTC, so
    one cache entry serves every offset it was written with.
    """
    tz = value.tzinfo
    if tz is UTC:
        return value.isoformat(timespec="microseconds")
    if tz is None or tz.utcoffset(value) is None:
        raise StoreError(
            f"naive datetime {value.isoformat()} cannot be stored",
            hint="pass tz-aware datetimes, e.g. eventflow.events.utcnow()",
        )
    return value.astimezone(UTC).isoformat(timespec="microseconds")


MIN_TEXT = dt_text(MIN_TIME)
"""How ``next_run_due`` ranks a pending run without ``not_before``."""


def opt_dt_text(value: datetime | None) -> str | None:
    return None if value is None else dt_text(value)


def text_dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


def opt_text_dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def pick_claims(
    candidates: Iterable[Sequence[Any]],
    limit: int,
    rule_limits: Mapping[str, int],
    running: dict[str, int],
    now_t: str,
) -> list[RunRow]:
    """The runs a claim starts: the first ``limit`` of ``candidates`` (pending run rows,
    oldest first) whose rule has room under ``rule_limits`` given ``running`` (runs running
    per rule, updated here), each as its row after the claim."""
    claimed: list[RunRow] = []
    for raw in candidates:
        if len(claimed) >= limit:
            break
        row = RunRow._make(raw)
        cap = rule_limits.get(row.rule)
        if cap is not None and running.get(row.rule, 0) >= cap:
            continue
        running[row.rule] = running.get(row.rule, 0) + 1
        claimed.append(
            row._replace(
                status="running", attempt=row.attempt + 1, started_at=now_t, updated_at=now_t
            )
        )
    return claimed


Refusal = Callable[[str, str | None], StoreError]
"""The error of a run's status change that does not apply: ``(run_id, status or None)``."""


def not_retriable(run_id: str, status: str | None) -> StoreError:
    """The error of ``retry_run`` for a run that is missing or neither failed nor cancelled."""
    return _refused(
        run_id,
        status,
        "only a failed or cancelled run can be retried",
        "a pending or running run will run (again) by itself",
    )


def _refused(run_id: str, status: str | None, rule: str, hint: str) -> StoreError:
    """A change of a run's status that does not apply: no such run, or ``rule`` says why."""
    if status is None:
        return StoreError(f"no run {run_id!r}", hint="list runs with `eventflow runs`")
    return StoreError(f"run {run_id!r} is {status}: {rule}", hint=hint)


def cancel_request_text(by: str, now: datetime) -> str:
    """The stored request to cancel a run: who asked, and when."""
    return json_text({"by": by, "at": now.astimezone(UTC).isoformat()})


def not_cancellable(run_id: str, status: str | None) -> StoreError:
    """The error of ``request_cancel`` for a run that is missing or already finished."""
    return _refused(
        run_id,
        status,
        "only a pending or running run can be cancelled",
        "`eventflow retry` runs a failed or cancelled run again",
    )


def json_text(value: JSON, what: str = "value") -> str:
    """Compact JSON text of ``value``; raises StoreError when it is not JSON."""
    try:
        return _dumps(value)
    except (TypeError, ValueError, RecursionError, orjson.JSONEncodeError) as exc:
        raise StoreError(
            f"cannot store {what} as JSON: {exc}",
            hint="payloads, positions and cursors must hold only JSON types",
        ) from exc


# --- rows (column order = the column lists in sql/queries.sql) -----------------------------


class EventRow(NamedTuple):
    id: str
    sensor: str
    key: str | None
    time: str
    position: str
    payload: str
    attributes: str
    datasets: str
    received_at: str


class CursorRow(NamedTuple):
    sensor: str
    key: str
    value: str


class MatchRow(NamedTuple):
    rule: str
    key: str
    generation: int
    status: str
    state: str
    updated_at: str | None


class RunRow(NamedTuple):
    run_id: str
    rule: str
    key: str
    partition: str
    generation: int
    status: str
    attempt: int
    max_attempts: int
    inputs: str
    created_at: str
    updated_at: str
    not_before: str | None
    started_at: str | None
    finished_at: str | None
    error: str | None
    output: str
    notes: str
    cancel_requested: str | None


class RunUpdateRow(NamedTuple):
    status: str
    attempt: int
    updated_at: str
    not_before: str | None
    finished_at: str | None
    error: str | None
    output: str
    run_id: str


class TimerRow(NamedTuple):
    kind: str
    rule: str
    key: str
    generation: int
    due: str


class InboxRow(NamedTuple):
    observation_sensor: str
    dataset: str
    partition: str
    position: str
    payload: str
    created_at: str


class DeadLetterRow(NamedTuple):
    event_id: str
    sensor: str
    position: str
    error: str
    excerpt: str
    time: str
    message: str | None = None
    status: str = "open"
    requested_by: str | None = None
    requested_at: str | None = None
    history: str = "[]"


# --- encoders ------------------------------------------------------------------------------


def event_row(e: StoredEvent) -> EventRow:
    # The hot path of every commit: orjson called directly (no error-naming wrapper) and
    # skipped for the common empty values; a failure is re-encoded below to name the column.
    dumps, opts = orjson.dumps, _OPTIONS
    try:
        return EventRow(
            e.id,
            e.sensor,
            e.key,
            dt_text(e.time),
            dumps(e.position, option=opts).decode(),
            "null" if e.payload is None else dumps(e.payload, option=opts).decode(),
            dumps(e.attributes, option=opts).decode() if e.attributes else "{}",
            dumps([[name, p] for name, p in e.datasets], option=opts).decode(),
            dt_text(e.received_at),
        )
    except TypeError:  # a Mapping that is not a dict, or a value JSON cannot hold
        return EventRow(
            e.id,
            e.sensor,
            e.key,
            dt_text(e.time),
            json_text(dict(e.position), f"position of event {e.id}"),
            json_text(e.payload, f"payload of event {e.id}"),
            json_text(dict(e.attributes), f"attributes of event {e.id}"),
            json_text([[name, dict(p)] for name, p in e.datasets], f"datasets of event {e.id}"),
            dt_text(e.received_at),
        )


def cursor_row(sensor: str, key: str, value: JSON) -> CursorRow:
    try:
        return CursorRow(sensor, key, orjson.dumps(value, option=_OPTIONS).decode())
    except TypeError:
        return CursorRow(sensor, key, json_text(value, f"cursor {key!r} of sensor {sensor!r}"))


def match_row(state: MatchState) -> MatchRow:
    return MatchRow(
        state.rule,
        state.key,
        state.generation,
        state.status,
        _match_json(state),
        opt_dt_text(state.updated_at),
    )


def _match_json(state: MatchState) -> str:
    """``state.to_dict()`` as JSON; orjson encodes the dataclasses directly to the same text."""
    try:
        return orjson.dumps(state, option=_OPTIONS).decode()
    except TypeError:  # a Mapping that is not a dict: take the general path
        return json_text(state.to_dict(), f"match state of rule {state.rule!r}")


def new_run_row(run: NewRun) -> RunRow:
    created = dt_text(run.created_at)
    return RunRow(
        run.run_id,
        run.rule,
        run.key,
        json_text(dict(run.partition)),
        run.generation,
        "pending",
        0,
        run.max_attempts,
        json_text([ref.to_dict() for ref in run.inputs], f"inputs of run {run.run_id}"),
        created,
        created,
        None,
        None,
        None,
        None,
        "{}",
        _version_note(run.pipeline_version),
        None,
    )


def _version_note(version: str) -> str:
    """A new run's notes: the version of the rule that fired it, when known."""
    return json_text({PIPELINE_VERSION_NOTE: version}) if version else "{}"


def run_note_row(note: RunNote) -> tuple[str, str]:
    """``(facts JSON, run id)``: the parameters of PostgreSQL's ``note_runs``."""
    return (json_text(dict(note.facts), f"notes of run {note.run_id}"), note.run_id)


def run_note_key_rows(note: RunNote) -> list[tuple[str, str, str]]:
    """``(JSON path, value JSON, run id)`` per noted key: the parameters of SQLite's
    ``note_runs`` (one ``json_set`` per key, so a key noted again is replaced whole, as in
    PostgreSQL's ``||``)."""
    return [
        (f'$."{key}"', json_text(value, f"note {key!r} of run {note.run_id}"), note.run_id)
        for key, value in note.facts.items()
    ]


def run_update_row(u: RunUpdate) -> RunUpdateRow:
    return RunUpdateRow(
        u.status,
        u.attempt,
        dt_text(u.updated_at),
        opt_dt_text(u.not_before),
        opt_dt_text(u.finished_at),
        u.error,
        json_text(dict(u.output), f"output of run {u.run_id}"),
        u.run_id,
    )


def timer_row(t: Timer) -> TimerRow:
    return TimerRow(t.kind, t.rule, t.key, t.generation, dt_text(t.due))


def outbox_row(item: OutboxItem) -> tuple[str, str]:
    try:
        return (item.publisher, item.event.to_json())
    except PydanticSerializationError as exc:
        raise StoreError(
            f"cannot store event {item.event.id} for {item.publisher!r} as JSON: {exc}",
            hint="event data must hold only JSON types",
        ) from exc


def inbox_row(item: InboxItem) -> InboxRow:
    return InboxRow(
        item.observation_sensor,
        item.dataset,
        json_text(dict(item.partition)),
        json_text(dict(item.position), "inbox position"),
        json_text(item.payload, "inbox payload"),
        dt_text(item.created_at),
    )


def deadletter_row(d: DeadLetter) -> DeadLetterRow:
    return DeadLetterRow(
        d.event_id,
        d.sensor,
        json_text(dict(d.position), f"position of dead letter {d.event_id}"),
        d.error,
        d.excerpt,
        dt_text(d.time),
        None if d.message is None else json_text(dict(d.message), "dead letter message"),
        d.status,
        d.requested_by,
        None if d.requested_at is None else dt_text(d.requested_at),
        json_text([dict(h) for h in d.history], "dead letter history"),
    )


# --- decoders (accept NamedTuples and the plain tuples sqlite3 returns) --------------------


def decode_event(row: Sequence[Any]) -> StoredEvent:
    id_, sensor, key, time, position, payload, attributes, datasets, received_at = row
    return StoredEvent(
        id=id_,
        sensor=sensor,
        key=key,
        time=text_dt(time),
        position=_loads(position),
        payload=_loads(payload),
        attributes=_loads(attributes),
        datasets=tuple((name, partition) for name, partition in _loads(datasets)),
        received_at=text_dt(received_at),
    )


def decode_match(state: str) -> MatchState:
    return MatchState.from_dict(_loads(state))


def decode_run(row: Sequence[Any]) -> RunRecord:
    (run_id, rule, key, partition, generation, status, attempt, max_attempts, inputs) = row[:9]
    (created_at, updated_at, not_before, started_at, finished_at, error, output) = row[9:16]
    notes, cancel_requested = row[16:]
    return RunRecord(
        run_id=run_id,
        rule=rule,
        key=key,
        partition=_loads(partition),
        generation=generation,
        status=status,
        attempt=attempt,
        max_attempts=max_attempts,
        inputs=tuple(InputRef.from_dict(r) for r in _loads(inputs)),
        created_at=text_dt(created_at),
        updated_at=text_dt(updated_at),
        not_before=opt_text_dt(not_before),
        started_at=opt_text_dt(started_at),
        finished_at=opt_text_dt(finished_at),
        error=error,
        output=_loads(output),
        notes=_loads(notes),
        cancel_requested=None if cancel_requested is None else _loads(cancel_requested),
    )


def decode_timer(row: Sequence[Any]) -> Timer:
    kind, rule, key, generation, due = row
    return Timer(kind, rule, key, generation, text_dt(due))


def decode_outbox(id_: int, publisher: str, event: str) -> OutboxItem:
    try:
        parsed = Event.model_validate_json(event)
    except ValidationError as exc:
        raise StoreError(f"outbox item {id_} holds an unreadable event: {exc}") from exc
    return OutboxItem(publisher=publisher, event=parsed, id=id_)


def decode_inbox(id_: int, row: Sequence[Any]) -> InboxItem:
    sensor, dataset, partition, position, payload, created_at = row
    return InboxItem(
        observation_sensor=sensor,
        dataset=dataset,
        partition=_loads(partition),
        position=_loads(position),
        payload=_loads(payload),
        created_at=text_dt(created_at),
        id=id_,
    )


def decode_deadletter(row: Sequence[Any]) -> DeadLetter:
    r = DeadLetterRow(*row)
    return DeadLetter(
        r.event_id,
        r.sensor,
        _loads(r.position),
        r.error,
        r.excerpt,
        text_dt(r.time),
        message=None if r.message is None else _loads(r.message),
        status=cast(DeadLetterStatus, r.status),
        requested_by=r.requested_by,
        requested_at=opt_text_dt(r.requested_at),
        history=tuple(_loads(r.history)),
    )


def deadletter_filter(
    sensor: str | None,
    since: datetime | None,
    until: datetime | None,
    after: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """The parameters of the ``list_deadletters`` and ``count_deadletters`` queries
    (``status`` None: any)."""
    return {
        "status": status,
        "sensor": sensor,
        "since": None if since is None else dt_text(since),
        "until": None if until is None else dt_text(until),
        "after": after,
    }


def event_filter(
    dataset: str | None,
    sensor: str | None,
    partition: Mapping[str, str] | None,
    since: datetime | None,
    until: datetime | None,
    after: str | None = None,
) -> dict[str, Any]:
    """The parameters of the ``list_events`` and ``count_events`` queries (None: any)."""
    return {
        "dataset": dataset,
        "sensor": sensor,
        "partition": json_text(dict(partition)) if partition else None,
        "since": None if since is None else dt_text(since),
        "until": None if until is None else dt_text(until),
        "after": after,
    }


def event_matches(row: EventRow, where: Mapping[str, Any]) -> bool:
    """Whether ``row`` passes ``where`` (:func:`event_filter`): the memory store's query."""
    if where["sensor"] not in (None, row.sensor):
        return False
    if where["since"] is not None and row.received_at < where["since"]:
        return False
    if where["until"] is not None and row.received_at >= where["until"]:
        return False
    if where["dataset"] is None and where["partition"] is None:
        return True
    wanted = _loads(where["partition"]) if where["partition"] else {}
    return any(
        where["dataset"] in (None, name) and all(p.get(k) == v for k, v in wanted.items())
        for name, p in _loads(row.datasets)
    )


def match_filter(
    rule: str | None,
    status: str | None,
    partial: bool,
    key: str | None,
    since: datetime | None,
    until: datetime | None,
    after: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The parameters of the ``list_matches`` and ``count_matches`` queries."""
    return {
        "rule": rule,
        "status": status,
        "partial": partial,
        "key": key,
        "since": None if since is None else dt_text(since),
        "until": None if until is None else dt_text(until),
        "after_rule": None if after is None else after[0],
        "after_key": None if after is None else after[1],
    }


def run_filter(
    rule: str | None,
    status: str | None,
    key: str | None,
    since: datetime | None,
    until: datetime | None,
    before: tuple[datetime, str] | None = None,
) -> dict[str, Any]:
    """The parameters of the ``list_runs`` and ``count_runs`` queries."""
    return {
        "rule": rule,
        "status": status,
        "key": key,
        "since": None if since is None else dt_text(since),
        "until": None if until is None else dt_text(until),
        "before_at": None if before is None else dt_text(before[0]),
        "before_id": None if before is None else before[1],
    }
