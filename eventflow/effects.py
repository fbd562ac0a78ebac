"""What a batch writes: rule effects turned into rows, completion events and log lines.

The rules core is pure: it returns a new match state and a list of effects (fire, expire,
deadline missed, late input, timers to schedule or cancel, ignored input). :class:`Effects`
carries them out into the batch's :class:`~eventflow.types.Changes` (runs, timers, outbox
rows, dead letters), counted in :class:`BatchStats` and logged under the stable event names
(``rule_fired``, ``match_expired``, ``deadline_missed``, ``event_deadlettered``, ...). The
engine commits the batch in one transaction; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING

import orjson

from eventflow import completion
from eventflow.events import JSON, Event, InputRef, Observation
from eventflow.pipeline import CompiledPipeline, RuleRuntime
from eventflow.records import (
    DEADLETTER_MESSAGE_LIMIT,
    Changes,
    DeadLetter,
    InboxItem,
    MatchKey,
    NewRun,
    StoredEvent,
    Timer,
)
from eventflow.rules.core import (
    CancelTimer,
    DeadlineMissed,
    Expired,
    Fire,
    Ignored,
    LateInput,
    MatchState,
    ScheduleTimer,
    Step,
)
from eventflow.run_hooks import deadline_run, missed_hook

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger


@dataclass(slots=True)
class BatchStats:
    observations: int = 0
    duplicates: int = 0
    events: int = 0
    arrivals: int = 0
    fires: int = 0
    expired: int = 0
    deadletters: int = 0
    timers: int = 0
    inbox: int = 0

    def add(self, other: BatchStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(slots=True)
class Batch:
    """What one batch is building: the changes to commit and what to do after the commit."""

    now: datetime
    changes: Changes = field(default_factory=Changes)
    states: dict[MatchKey, MatchState | None] = field(default_factory=dict)
    arrivals: list[InputRef] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    inbox: list[InboxItem] = field(default_factory=list)
    redrives: list[DeadLetter] = field(default_factory=list)
    """Dead letters whose redrive is requested (:mod:`eventflow.redrive`)."""
    acks: list[Callable[[], None]] = field(default_factory=list)
    stats: BatchStats = field(default_factory=BatchStats)
    observations: list[Observation] = field(default_factory=list)
    redone: bool = False
    """Its commit was refused and it was evaluated again (a shared store: StoreConflict)."""
    _events: dict[str, StoredEvent] | None = None
    timer_deletes: set[tuple[str, str, str, int]] = field(default_factory=set)

    def event(self, event_id: str) -> StoredEvent | None:
        """The event this batch writes with ``event_id`` (for rule filters)."""
        if self._events is None:
            self._events = {e.id: e for e in self.changes.events}
        return self._events.get(event_id)

    def written_ids(self) -> set[str]:
        """Ids of the events and dead letters this batch writes."""
        ids = {e.id for e in self.changes.events}
        ids.update(d.event_id for d in self.changes.deadletters)
        return ids


def dead_letter(obs: Observation, eid: str, error: str, now: datetime) -> DeadLetter:
    """The dead letter of an observation that could not be processed: with the whole
    observation (:func:`kept_message`) when a redrive can evaluate it again."""
    excerpt = repr(obs.payload)[:1024] if obs.payload is not None else (obs.key or "")
    return DeadLetter(
        event_id=eid,
        sensor=obs.sensor,
        position=dict(obs.position),
        error=error,
        excerpt=excerpt,
        time=now,
        message=kept_message(obs),
    )


def kept_message(obs: Observation) -> dict[str, JSON] | None:
    """What a dead letter keeps of ``obs`` for a redrive (its key, source time, payload and
    attributes), or None: the sensor could not decode it (``error``: only an excerpt of the
    raw bytes is there), or it is larger than :data:`DEADLETTER_MESSAGE_LIMIT`."""
    if obs.error is not None:
        return None
    message: dict[str, JSON] = {
        "key": obs.key,
        "time": None if obs.time is None else obs.time.isoformat(),
        "payload": obs.payload,
        "attributes": dict(obs.attributes),
    }
    try:
        size = len(orjson.dumps(message))
    except (TypeError, orjson.JSONEncodeError):
        return None
    return message if size <= DEADLETTER_MESSAGE_LIMIT else None


def redriven_observation(letter: DeadLetter) -> Observation:
    """The observation a dead letter kept, as its sensor handed it over (no cursor, nothing
    to acknowledge: the source was acknowledged when the dead letter was committed)."""
    m = letter.message or {}
    when = m.get("time")
    return Observation(
        sensor=letter.sensor,
        position=dict(letter.position),
        key=m.get("key"),
        time=None if when is None else datetime.fromisoformat(when),
        payload=m.get("payload"),
        attributes=dict(m.get("attributes") or {}),
    )


class Effects:
    """Carries out rule effects into a batch, for one pipeline."""

    def __init__(self, pipeline: CompiledPipeline, log: FilteringBoundLogger) -> None:
        self.pipeline = pipeline
        self.versions = pipeline.version
        self.log = log
        self._announce = completion.wanted(pipeline, completion.DATASET_AVAILABLE)
        self._publish_letters = completion.wanted(pipeline, completion.EVENT_DEADLETTERED)

    def arrive(self, batch: Batch, ref: InputRef) -> None:
        """A dataset partition arrived: evaluate it, and announce it where subscribed."""
        batch.stats.arrivals += 1
        batch.arrivals.append(ref)
        if self._announce:
            event = completion.dataset_available(self.pipeline.name, ref, batch.now)
            batch.changes.outbox.extend(completion.route(self.pipeline, event))

    def deadletter(self, batch: Batch, letter: DeadLetter) -> None:
        """Keep an observation that could not be processed, with its position and error."""
        batch.stats.deadletters += 1
        batch.changes.deadletters.append(letter)
        if self._publish_letters:
            event = completion.deadlettered(self.pipeline.name, letter)
            batch.changes.outbox.extend(completion.route(self.pipeline, event))
        self.log.warning(
            "event_deadlettered",
            sensor=letter.sensor,
            event_id=letter.event_id,
            position=dict(letter.position),
            error=letter.error,
        )

    def publish(self, batch: Batch, event: Event) -> None:
        batch.changes.outbox.extend(completion.route(self.pipeline, event))

    def apply(self, batch: Batch, rule: RuleRuntime, step: Step) -> None:
        """Turn one rule step's effects into rows, completion events and log lines."""
        changes, now = batch.changes, batch.now
        for effect in step.effects:
            if isinstance(effect, Fire):
                batch.stats.fires += 1
                changes.runs.append(
                    NewRun(
                        run_id=effect.run_id,
                        rule=effect.rule,
                        key=effect.key,
                        partition=dict(effect.partition),
                        generation=effect.generation,
                        inputs=effect.inputs,
                        max_attempts=rule.max_attempts,
                        created_at=batch.now,
                        pipeline_version=self.versions.rule(effect.rule),
                    )
                )
                self.log.info(
                    "rule_fired",
                    rule=effect.rule,
                    partition=dict(effect.partition),
                    generation=effect.generation,
                    run_id=effect.run_id,
                    event_ids=[r.event_id for r in effect.inputs],
                    **(
                        {"partial": True, "missing": list(effect.missing)} if effect.partial else {}
                    ),
                )
            elif isinstance(effect, Expired):
                batch.stats.expired += 1
                self.publish(
                    batch, completion.match_expired(self.pipeline.name, effect, now, self.versions)
                )
                self.log.info(
                    "match_expired",
                    rule=effect.rule,
                    partition=dict(effect.partition),
                    generation=effect.generation,
                    missing=list(effect.missing),
                )
            elif isinstance(effect, DeadlineMissed):
                self.publish(
                    batch,
                    completion.deadline_missed(self.pipeline.name, effect, now, self.versions),
                )
                alert = self.pipeline.rules.get(f"{effect.rule}:on_deadline")
                if alert is not None:  # `on_deadline: {run: TASK}`: one alert per partition
                    batch.stats.fires += 1
                    changes.runs.append(
                        deadline_run(alert, effect, now, self.versions.rule(alert.name))
                    )
                hook = missed_hook(self.pipeline, effect, now)
                if hook is not None:  # `on_missed:`, committed with the deadline's fire
                    batch.stats.fires += 1
                    changes.runs.append(hook[0])
                    changes.run_notes.append(hook[1])
                self.log.warning(
                    "deadline_missed",
                    rule=effect.rule,
                    partition=dict(effect.partition),
                    deadline=effect.deadline.isoformat(),
                    missing=list(effect.missing),
                    fired_late=effect.fired_late,
                    run_id=effect.partial_run,
                )
            elif isinstance(effect, LateInput):
                self.publish(
                    batch, completion.data_late(self.pipeline.name, effect, now, self.versions)
                )
                self.log.info(
                    "input_late",
                    rule=effect.rule,
                    partition=dict(effect.partition),
                    event_id=effect.ref.event_id,
                    status=effect.status,
                )
            elif isinstance(effect, ScheduleTimer):
                # The store adds timers before it deletes: a timer handled in this batch
                # (deleted) and scheduled again (a quiet period restarted) must stay.
                tkey = (effect.kind, effect.rule, effect.key, effect.generation)
                if tkey in batch.timer_deletes:
                    batch.timer_deletes.discard(tkey)
                    changes.timers_delete.remove(tkey)
                changes.timers_add.append(Timer(*tkey, effect.due))
            elif isinstance(effect, CancelTimer):
                tkey = (effect.kind, effect.rule, effect.key, effect.generation)
                batch.timer_deletes.add(tkey)
                changes.timers_delete.append(tkey)
            elif isinstance(effect, Ignored):
                self.log.debug(
                    "input_ignored",
                    rule=effect.rule,
                    key=effect.key,
                    event_id=effect.event_id,
                    reason=effect.reason,
                )
