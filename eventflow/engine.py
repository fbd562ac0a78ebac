"""The engine: observations in, one store transaction per batch, acknowledgements out.

The engine takes whatever is queued (up to ``batch_size``), adds the timers that fell due and
the inbox rows (``eventflow emit``, produced datasets), and for the whole batch:

1. derives each event id and drops what the store has already seen (a redelivery);
2. matches datasets and evaluates the pure rules core for every arrival and timer;
3. writes cursors, events, rule state, runs, timers and outbox rows in ONE transaction;
4. only then acknowledges the sources (``Observation.on_commit``) and wakes the dispatcher.

A crash before step 3 commits loses nothing: the sources redeliver (their cursors did not
move). A crash after it re-delivers at most what was not yet acknowledged, and those events
are recognised by id. Latency stays at one commit; throughput grows with the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime

import jmespath.exceptions

from eventflow import completion, metrics
from eventflow.aio import wait_event
from eventflow.crashpoints import crash_point
from eventflow.datasets import DatasetMatchError
from eventflow.errors import ClosedError, StoreError
from eventflow.events import (
    Event,
    InputRef,
    Observation,
    event_id,
    isoformat,
    partition_key,
    storable,
    utcnow,
)
from eventflow.log import get_logger
from eventflow.pipeline import Pipeline, RuleRuntime
from eventflow.rules.core import (
    EXPECT,
    CancelTimer,
    DeadlineMissed,
    Expired,
    Fire,
    Ignored,
    LateInput,
    MatchState,
    ScheduleTimer,
    Step,
    on_expected,
    on_input,
    on_timer,
    run_id_for,
)
from eventflow.schedules import Expected, Schedules
from eventflow.types import (
    Changes,
    DeadLetter,
    InboxItem,
    MatchKey,
    NewRun,
    Store,
    StoredEvent,
    Timer,
)

Clock = Callable[[], datetime]


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
class _Observed:
    """What one observation announces, worked out before the batch's transaction."""

    id: str | None = None
    """Its event id; None when it announces nothing and carries no error (no id needed)."""
    event: StoredEvent | None = None
    refs: Sequence[InputRef] = ()
    deadletters: Sequence[DeadLetter] = ()


_NOTHING = _Observed()
"""What an observation that announces nothing and carries no error gives (shared, unchanged)."""


@dataclass(slots=True)
class _Prepared:
    observations: list[Observation]
    results: list[_Observed]


@dataclass(slots=True)
class _Batch:
    """What one batch is building: the changes to commit and what to do after the commit."""

    now: datetime
    changes: Changes = field(default_factory=Changes)
    states: dict[MatchKey, MatchState | None] = field(default_factory=dict)
    arrivals: list[InputRef] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    inbox: list[InboxItem] = field(default_factory=list)
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


COMMIT_ATTEMPTS = 20
"""How often a batch whose commit a shared store refused is evaluated and committed again."""


class Engine:
    """Consumes observations, evaluates rules and commits their effects, one batch at a time."""

    def __init__(self, pipeline: Pipeline, store: Store, *, clock: Clock = utcnow) -> None:
        self.pipeline = pipeline
        self.store = store
        self.clock = clock
        self.queue: asyncio.Queue[Observation] = asyncio.Queue(pipeline.engine.queue_size)
        self.log = get_logger(component="engine")
        self.on_runs: Callable[[], None] = lambda: None
        """Called after a commit that created runs (wakes the dispatcher)."""
        self.on_outbox: Callable[[], None] = lambda: None
        """Called after a commit that added completion events (wakes the outbox drainers)."""
        self._announce = completion.wanted(pipeline, completion.DATASET_AVAILABLE)
        self._publish_letters = completion.wanted(pipeline, completion.EVENT_DEADLETTERED)
        self._signal = asyncio.Event()
        """Set when there is something to do: an observation was queued, or ``wake``."""
        self._poll_now = False
        self._next_timer: datetime | None = None
        self._timers_stale = False
        self._last_poll = datetime.min.replace(tzinfo=utcnow().tzinfo)
        self._closed = False
        self._stopping = False
        self.total = BatchStats()
        self.schedules = Schedules(pipeline, store)

    # -- intake ----------------------------------------------------------------------------

    async def submit(self, observation: Observation) -> None:
        """Queue an observation; waits while the queue is full (backpressure on the sensor)."""
        if self._closed:
            raise ClosedError("the engine is stopped; no more observations are accepted")
        try:  # the common case without Queue.put's coroutine (called for every observation)
            self.queue.put_nowait(observation)
        except asyncio.QueueFull:
            await self.queue.put(observation)
        self._signal.set()

    def wake(self) -> None:
        """Look at the inbox and timers now (a run produced a dataset, a timer was added)."""
        self._poll_now = True
        self._signal.set()

    def stop(self) -> None:
        """Let ``run`` return after the batch in progress (then call ``drain``)."""
        self._stopping = True
        self._signal.set()

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Process batches until ``stop`` is called."""
        await self.schedules.start(self.clock())
        self._next_timer = await self.store.next_timer_due()
        poll = self.pipeline.engine.poll_interval.total_seconds()
        size = self.pipeline.engine.batch_size
        # Pipelined: batch N+1 is evaluated while batch N commits in the store's thread. Its
        # reads come from the last commit (a second connection) overlaid with what batch N
        # writes; that is exact because this engine is the only writer of events and rule
        # state (Store.lock_worker). Commits stay in order, and each batch is acknowledged
        # only after its own commit.
        inflight: asyncio.Task[BatchStats] | None = None
        written: _Batch | None = None
        try:
            while not self._stopping:
                if self.queue.empty() and inflight is not None:
                    await inflight
                    inflight, written = None, None
                if self._timers_stale:
                    self._timers_stale = False
                    self._next_timer = await self.store.next_timer_due()
                observations = await self._collect(size, poll)
                batch = await self._evaluate_batch(self._prepare(observations), written)
                if inflight is not None:
                    await inflight
                    if batch is not None and written is not None and written.redone:
                        batch = await self._evaluate_batch(self._prepare(batch.observations), None)
                    inflight, written = None, None
                if batch is not None:
                    written = batch
                    inflight = asyncio.create_task(self._write(batch), name="engine-commit")
                    # Let it write at once, up to its commit: the commit (the disk) then
                    # overlaps the next batch's evaluation instead of following it.
                    await asyncio.sleep(0)
            if inflight is not None:
                await inflight
        except BaseException:
            if inflight is not None and not inflight.done():
                inflight.cancel()
                with contextlib.suppress(BaseException):
                    await inflight
            raise

    async def drain(self) -> None:
        """Stop accepting observations and commit everything already queued."""
        self._closed = True
        while not self.queue.empty():
            await self.process(self._take(self.pipeline.engine.batch_size))

    async def _collect(self, size: int, poll: float) -> list[Observation]:
        if self.queue.empty():
            timeout = poll
            if self._next_timer is not None:
                due_in = (self._next_timer - self.clock()).total_seconds()
                timeout = max(0.0, min(timeout, due_in))
            await wait_event(self._signal, timeout)
        self._signal.clear()
        return self._take(size)

    def _take(self, size: int) -> list[Observation]:
        get = self.queue.get_nowait
        return [get() for _ in range(min(size, self.queue.qsize()))]

    async def process(self, observations: list[Observation]) -> BatchStats:
        """Evaluate one batch and commit it (the inbox and due timers are added here)."""
        batch = await self._evaluate_batch(self._prepare(observations), None)
        return await self._write(batch) if batch is not None else BatchStats()

    def _prepare(self, observations: list[Observation]) -> _Prepared:
        """What a batch's observations announce; pure CPU, independent of the store."""
        now = self.clock()
        observations = [storable(obs) for obs in observations]  # else dead-lettered, not raised
        return _Prepared(observations, [self._observe(obs, now) for obs in observations])

    async def _evaluate_batch(self, prepared: _Prepared, written: _Batch | None) -> _Batch | None:
        """Everything the batch will write; ``written`` is the batch still committing."""
        now = self.clock()
        batch = _Batch(now=now, observations=prepared.observations)
        poll_due = self._poll_now or now - self._last_poll >= self.pipeline.engine.poll_interval
        timers_due = self._next_timer is not None and self._next_timer <= now
        self._poll_now = False
        if poll_due:  # reads through the writer's connection: they wait for its commit
            self._last_poll = now
            batch.inbox = await self.store.fetch_inbox(self.pipeline.engine.batch_size)
        if timers_due or poll_due:
            batch.timers = await self.store.due_timers(now, self.pipeline.engine.batch_size)
        if not prepared.observations and not batch.inbox and not batch.timers:
            if timers_due:
                self._timers_stale = True
            return None
        await self._intake(batch, prepared, written)
        await self._evaluate(batch, written)
        return batch

    async def _write(self, batch: _Batch) -> BatchStats:
        started = time.perf_counter()
        first = batch
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                async with self.store.transaction() as tx:
                    crash_point("engine.before_commit")
                    if batch.changes:
                        await tx.apply(batch.changes)
                break
            except StoreError as exc:
                # A shared store refused the commit (another worker wrote what this batch
                # read) or lost the connection mid-commit: nothing of the batch counts as
                # written; read again and evaluate it again (a commit that did land shows
                # its events as seen, so nothing happens twice).
                if not exc.retriable or attempt == COMMIT_ATTEMPTS:
                    raise
                delay = min(1.0, 0.01 * 2**attempt) * random.uniform(0.5, 1.0)
                self.log.warning("batch_retried", attempt=attempt, error=str(exc))
                await asyncio.sleep(delay)
                first.redone = True
                again = await self._evaluate_batch(self._prepare(first.observations), None)
                batch = again if again is not None else _Batch(now=first.now)
        crash_point("engine.after_commit")
        for ack in batch.acks:
            ack()
        _count(batch, time.perf_counter() - started)
        self._after_commit(batch)
        return batch.stats

    # -- intake: ids, dedupe, datasets -----------------------------------------------------

    async def _intake(self, batch: _Batch, prepared: _Prepared, written: _Batch | None) -> None:
        changes, stats, inbox = batch.changes, batch.stats, batch.inbox
        stats.observations = len(prepared.observations)
        inbox_ids = [event_id(i.observation_sensor, i.position) for i in inbox]
        # Only what announces a dataset or is dead-lettered has an id to look up: the rest
        # writes no row and triggers nothing, so a redelivery of it has nothing to repeat.
        wanted = {o.id for o in prepared.results if o.id is not None}
        wanted.update(inbox_ids)
        seen = await self.store.committed_seen_events(wanted) if wanted else set()
        if written is not None:
            seen |= wanted & written.written_ids()
        for obs, observed in zip(prepared.observations, prepared.results, strict=True):
            if obs.cursor is not None:
                changes.cursors[(obs.sensor, obs.cursor[0])] = obs.cursor[1]
            if obs.on_commit is not None:
                batch.acks.append(obs.on_commit)
            eid = observed.id
            if eid is None:
                continue
            if eid in seen:
                stats.duplicates += 1
                continue
            seen.add(eid)
            for letter in observed.deadletters:
                self._deadletter(batch, letter)
            if observed.event is not None:
                stats.events += 1
                changes.events.append(observed.event)
                for ref in observed.refs:
                    self._arrive(batch, ref)
        for item, eid in zip(inbox, inbox_ids, strict=True):
            changes.inbox_delete.append(item.id)
            stats.inbox += 1
            if eid in seen:
                stats.duplicates += 1
                continue
            seen.add(eid)
            ref = InputRef(
                eid,
                item.dataset,
                dict(item.partition),
                item.observation_sensor,
                dict(item.position),
                item.created_at.isoformat(),
            )
            changes.events.append(
                StoredEvent(
                    id=eid,
                    sensor=item.observation_sensor,
                    key=None,
                    time=item.created_at,
                    position=dict(item.position),
                    payload=item.payload,
                    attributes={},
                    datasets=((item.dataset, dict(item.partition)),),
                    received_at=batch.now,
                )
            )
            self._arrive(batch, ref)

    def _observe(self, obs: Observation, now: datetime) -> _Observed:
        """The dataset partitions ``obs`` announces (or why it cannot be processed)."""
        if obs.error is not None:
            letter = self._letter(obs, obs.id, obs.error, now)
            return _Observed(letter.event_id, deadletters=[letter])
        announced: list[tuple[str, dict[str, str]]] = []
        letters: list[DeadLetter] = []
        for ds in self.pipeline.datasets_by_sensor.get(obs.sensor, ()):
            try:
                partition = ds.match(obs)
            except DatasetMatchError as exc:
                letters.append(self._letter(obs, obs.id, str(exc), now))
                continue
            if partition is not None:
                announced.append((ds.name, partition))
        eid = obs.id if announced or letters else None
        self.log.debug(
            "event_received", sensor=obs.sensor, event_id=eid, key=obs.key, datasets=announced
        )
        if eid is None:
            return _NOTHING
        if not announced:
            return _Observed(eid, deadletters=letters)
        when = obs.time or now
        # Observations are frozen and their mappings are not changed after emit: no copies.
        event = StoredEvent(
            eid,
            obs.sensor,
            obs.key,
            when,
            obs.position,
            obs.payload,
            obs.attributes,
            tuple(announced),
            now,
        )
        iso = isoformat(when)  # the dataset expressions formatted it already: remembered
        refs = [
            InputRef(eid, dataset, partition, obs.sensor, obs.position, iso)
            for dataset, partition in announced
        ]
        return _Observed(eid, event, refs, letters)

    def _arrive(self, batch: _Batch, ref: InputRef) -> None:
        batch.stats.arrivals += 1
        batch.arrivals.append(ref)
        if self._announce:
            event = completion.dataset_available(self.pipeline.name, ref, batch.now)
            batch.changes.outbox.extend(completion.route(self.pipeline, event))

    @staticmethod
    def _letter(obs: Observation, eid: str, error: str, now: datetime) -> DeadLetter:
        excerpt = repr(obs.payload)[:1024] if obs.payload is not None else (obs.key or "")
        return DeadLetter(
            event_id=eid,
            sensor=obs.sensor,
            position=dict(obs.position),
            error=error,
            excerpt=excerpt,
            time=now,
        )

    def _deadletter(self, batch: _Batch, letter: DeadLetter) -> None:
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

    # -- evaluation: the pure core ---------------------------------------------------------

    async def _evaluate(self, batch: _Batch, written: _Batch | None) -> None:
        rules = self.pipeline.rules
        by_dataset = self.pipeline.rules_by_dataset
        # (rule, match key, input): the key is computed once per rule and input.
        work: list[tuple[RuleRuntime, MatchKey, InputRef | Timer | Expected]] = [
            (rule, (rule.name, partition_key(rule.spec.key_of(ref.partition, ref.dataset))), ref)
            for ref in batch.arrivals
            for rule in by_dataset.get(ref.dataset, ())
            if not rule.filters or self._passes(batch, rule, ref)
        ]
        for timer in batch.timers:
            tkey = (timer.kind, timer.rule, timer.key, timer.generation)
            batch.timer_deletes.add(tkey)
            batch.changes.timers_delete.append(tkey)
            batch.stats.timers += 1
            rule = rules.get(timer.rule)
            if rule is None:
                self.log.info(
                    "timer_dropped",
                    rule=timer.rule,
                    kind=timer.kind,
                    reason="rule no longer in the pipeline",
                )
            elif timer.kind == EXPECT:
                for expected in self.schedules.due(rule, timer, batch.now, batch.changes):
                    work.append((rule, (rule.name, expected.key), expected))
            else:
                work.append((rule, (timer.rule, timer.key), timer))
        if not work:
            return
        keys = {mk for _, mk, _ in work}
        states = batch.states
        if written is not None:  # newer than the last commit
            for k in keys & written.changes.matches.keys():
                states[k] = written.changes.matches[k]
        loaded = await self.store.committed_matches(keys - states.keys())
        for k in keys - states.keys():
            states[k] = loaded.get(k)
        matches, now = batch.changes.matches, batch.now
        for rule, mk, item in work:
            kind = type(item)
            if kind is Timer:
                timer = item  # type: ignore[assignment]
                step = on_timer(rule.spec, states[mk], timer.kind, timer.generation, now)
                if step is None:
                    continue
            elif kind is Expected:
                step = on_expected(rule.spec, states[mk], item.partition, now)  # type: ignore[union-attr]
            else:
                step = on_input(rule.spec, states[mk], item, now, mk[1])  # type: ignore[arg-type]
            states[mk] = matches[mk] = step.state
            if step.effects:
                self._effects(batch, rule, step)

    def _passes(self, batch: _Batch, rule: RuleRuntime, ref: InputRef) -> bool:
        """Whether ``ref``'s event passes the rule's filter for its dataset (``where``)."""
        where = rule.filters.get(ref.dataset)
        if where is None:
            return True
        event = batch.event(ref.event_id)
        context = {
            **(event.attributes if event else {}),
            "payload": event.payload if event else None,
            "key": event.key if event else None,
            "sensor": ref.sensor,
            "time": ref.time,
        }
        try:
            passed = bool(where.search(context))
        except jmespath.exceptions.JMESPathError as exc:
            self.log.warning(
                "input_filter_failed", rule=rule.name, event_id=ref.event_id, error=str(exc)
            )
            return False
        if not passed:
            self.log.debug("input_filtered", rule=rule.name, event_id=ref.event_id)
        return passed

    def _publish(self, batch: _Batch, event: Event) -> None:
        batch.changes.outbox.extend(completion.route(self.pipeline, event))

    def _effects(self, batch: _Batch, rule: RuleRuntime, step: Step) -> None:
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
                self._publish(batch, completion.match_expired(self.pipeline.name, effect, now))
                self.log.info(
                    "match_expired",
                    rule=effect.rule,
                    partition=dict(effect.partition),
                    generation=effect.generation,
                    missing=list(effect.missing),
                )
            elif isinstance(effect, DeadlineMissed):
                self._publish(batch, completion.deadline_missed(self.pipeline.name, effect, now))
                alert = self.pipeline.rules.get(f"{effect.rule}:on_deadline")
                if alert is not None:  # `on_deadline: {run: TASK}`: one alert per partition
                    batch.stats.fires += 1
                    changes.runs.append(
                        NewRun(
                            run_id=run_id_for(alert.name, effect.key, 1),
                            rule=alert.name,
                            key=effect.key,
                            partition=dict(effect.partition),
                            generation=1,
                            inputs=effect.arrived,
                            max_attempts=alert.max_attempts,
                            created_at=now,
                        )
                    )
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
                self._publish(batch, completion.data_late(self.pipeline.name, effect, now))
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

    # -- after the commit ------------------------------------------------------------------

    def _after_commit(self, batch: _Batch) -> None:
        stats, changes = batch.stats, batch.changes
        self.total.add(stats)
        for t in changes.timers_add:
            if self._next_timer is None or t.due < self._next_timer:
                self._next_timer = t.due
        if batch.timers or (self._next_timer is not None and self._next_timer <= batch.now):
            self._timers_stale = True  # the due ones are gone: read the next one from the store
        if len(batch.inbox) == self.pipeline.engine.batch_size:
            self.wake()  # more inbox rows are waiting
        if changes.runs:
            self.on_runs()
        if changes.outbox:
            self.on_outbox()
        self.log.debug(
            "checkpoint_committed",
            **{
                k: getattr(stats, k)
                for k in ("observations", "duplicates", "events", "fires", "expired", "deadletters")
            },
        )


def _count(batch: _Batch, commit_seconds: float) -> None:
    """Report a committed batch to the metrics: one call per batch, never per event."""
    changes, stats = batch.changes, batch.stats
    expired = (m.rule for m in changes.matches.values() if m.status == "expired")
    metrics.batch_committed(
        stats.observations,
        stats.duplicates,
        batch.arrivals,
        changes.runs,
        changes.deadletters,
        expired if stats.expired else (),
        commit_seconds,
    )
