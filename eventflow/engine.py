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

What a rule's effects write (runs, timers, outbox rows, dead letters, their log lines) is
:mod:`eventflow.effects`; this module feeds the rules and commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime

import jmespath.exceptions

from eventflow import backoff, metrics
from eventflow.aio import wait_event
from eventflow.crashpoints import crash_point
from eventflow.datasets import DatasetMatchError
from eventflow.diskspace import SpaceWait
from eventflow.effects import Batch, BatchStats, Effects, dead_letter
from eventflow.errors import ClosedError, StoreError, StoreFull
from eventflow.events import (
    InputRef,
    Observation,
    event_id,
    isoformat,
    observation_problem,
    partition_key,
    quarantine,
    utcnow,
)
from eventflow.log import get_logger
from eventflow.pipeline import CompiledPipeline, RuleRuntime
from eventflow.records import DeadLetter, MatchKey, StoredEvent, Timer
from eventflow.redrive import Evaluated, redrive
from eventflow.rules.core import (
    EXPECT,
    on_expected,
    on_input,
    on_timer,
)
from eventflow.schedules import Expected, Schedules
from eventflow.types import Store

Clock = Callable[[], datetime]


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


class _Unstorable(Exception):
    """What would be stored of an observation cannot be (see :func:`observation_problem`)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _check(obs: Observation, *, stored: bool) -> None:
    problem = observation_problem(obs, stored=stored)
    if problem is not None:
        raise _Unstorable(problem)


@dataclass(slots=True)
class _Prepared:
    observations: list[Observation]
    results: list[_Observed]


COMMIT_ATTEMPTS = 20
"""How often a batch whose commit a shared store refused is evaluated and committed again."""


class Engine:
    """Consumes observations, evaluates rules and commits their effects, one batch at a time."""

    def __init__(self, pipeline: CompiledPipeline, store: Store, *, clock: Clock = utcnow) -> None:
        self.pipeline = pipeline
        self.store = store
        self.clock = clock
        self.queue: asyncio.Queue[Observation] = asyncio.Queue(pipeline.engine.queue_size)
        self.log = get_logger(component="engine")
        self.on_runs: Callable[[], None] = lambda: None
        """Called after a commit that created runs (wakes the dispatcher)."""
        self.on_outbox: Callable[[], None] = lambda: None
        """Called after a commit that added completion events (wakes the outbox drainers)."""
        self.effects = Effects(pipeline, self.log)
        self.space = SpaceWait("engine", self.log)
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
        self._holds: list[tuple[asyncio.Event, asyncio.Event]] = []
        self._running = False

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

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Keep the engine between two batches (its commits done) while the block writes
        rule state too (a live backfill): the engine is the only writer otherwise, and reads
        the state of its own last commit."""
        parked, release = asyncio.Event(), asyncio.Event()
        if self._running:
            self._holds.append((parked, release))
            self._signal.set()
            await parked.wait()
        try:
            yield
        finally:
            release.set()

    async def _park(self) -> None:
        while self._holds:
            parked, release = self._holds.pop(0)
            parked.set()
            await release.wait()

    def stop(self) -> None:
        """Let ``run`` return after the batch in progress (then call ``drain``)."""
        self._stopping = True
        self._signal.set()

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Process batches until ``stop`` is called."""
        self._running = True
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
        written: Batch | None = None
        try:
            while not self._stopping:
                if (self.queue.empty() or self._holds) and inflight is not None:
                    await inflight
                    inflight, written = None, None
                if self._holds:
                    await self._park()
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
        finally:
            self._running = False
            for parked, _ in self._holds:  # nobody writes rule state concurrently any more
                parked.set()
            self._holds.clear()

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
        results = []
        for i, obs in enumerate(observations):
            try:
                results.append(self._observe(obs, now))
            except _Unstorable as exc:  # dead-lettered, never raised: the others go on
                observations[i] = quarantine(obs, exc.problem)
                results.append(self._observe(observations[i], now))
        return _Prepared(observations, results)

    async def _evaluate_batch(self, prepared: _Prepared, written: Batch | None) -> Batch | None:
        """Everything the batch will write; ``written`` is the batch still committing."""
        now = self.clock()
        batch = Batch(now=now, observations=prepared.observations)
        poll_due = self._poll_now or now - self._last_poll >= self.pipeline.engine.poll_interval
        timers_due = self._next_timer is not None and self._next_timer <= now
        self._poll_now = False
        if poll_due:  # reads through the writer's connection: they wait for its commit
            self._last_poll = now
            batch.inbox = await self.store.fetch_inbox(self.pipeline.engine.batch_size)
            batch.redrives = await self.store.fetch_redrives(self.pipeline.engine.batch_size)
        if timers_due or poll_due:
            batch.timers = await self.store.due_timers(now, self.pipeline.engine.batch_size)
        if not (prepared.observations or batch.inbox or batch.timers or batch.redrives):
            if timers_due:
                self._timers_stale = True
            return None
        await self._intake(batch, prepared, written)
        await self._evaluate(batch, written)
        return batch

    async def _write(self, batch: Batch) -> BatchStats:
        started = time.perf_counter()
        first = batch
        attempt = 0
        while True:
            try:
                async with self.store.transaction() as tx:
                    crash_point("engine.before_commit")
                    if batch.changes.deadletter_outcomes:
                        crash_point("deadletter.before_commit")
                    if batch.changes:
                        await tx.apply(batch.changes)
                break
            except StoreFull as exc:
                # Nothing is acknowledged while the disk is full: the queue fills and the
                # sensors wait. A stop gives up (the sources redeliver what was not acked).
                if self._stopping:
                    raise
                await self.space.wait("commit", exc)
            except StoreError as exc:
                # A shared store refused the commit (another worker wrote what this batch
                # read) or lost the connection mid-commit.
                attempt += 1
                if not exc.retriable or attempt == COMMIT_ATTEMPTS:
                    raise
                delay = backoff.delay(attempt, first=0.02, cap=1.0)
                self.log.warning("batch_retried", attempt=attempt, error=str(exc))
                await asyncio.sleep(delay)
            # Nothing of the batch counts as written: read again and evaluate it again (a
            # commit that did land shows its events as seen, so nothing happens twice).
            first.redone = True
            again = await self._evaluate_batch(self._prepare(first.observations), None)
            batch = again if again is not None else Batch(now=first.now)
        self.space.cleared("commit")
        crash_point("engine.after_commit")
        if batch.changes.deadletter_outcomes:
            crash_point("deadletter.after_commit")
            self._log_redrives(batch)
        for ack in batch.acks:
            ack()
        _count(batch, time.perf_counter() - started)
        self._after_commit(batch)
        return batch.stats

    # -- intake: ids, dedupe, datasets -----------------------------------------------------

    async def _intake(self, batch: Batch, prepared: _Prepared, written: Batch | None) -> None:
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
                self.effects.deadletter(batch, letter)
            if observed.event is not None:
                stats.events += 1
                changes.events.append(observed.event)
                for ref in observed.refs:
                    self.effects.arrive(batch, ref)
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
            self.effects.arrive(batch, ref)
        if batch.redrives:
            await self._redrive(batch)

    async def _redrive(self, batch: Batch) -> None:
        """Evaluate the kept observations of the dead letters whose redrive is requested
        (:mod:`eventflow.redrive`): their events and outcomes join the batch."""
        logged = await self.store.get_events([d.event_id for d in batch.redrives])
        by_id = {e.id: e for e in logged}
        for letter in batch.redrives:
            done = redrive(letter, self._evaluate_kept, by_id.get(letter.event_id), batch.now)
            batch.changes.deadletter_outcomes.append(done.outcome)
            if done.event is not None:
                batch.stats.events += 1
                batch.changes.events.append(done.event)
            for ref in done.refs:
                self.effects.arrive(batch, ref)

    def _evaluate_kept(self, obs: Observation) -> Evaluated:
        now = self.clock()
        try:
            found = self._observe(obs, now)
        except _Unstorable as exc:
            return Evaluated(None, (), [exc.problem])
        return Evaluated(found.event, found.refs, [d.error for d in found.deadletters])

    def _log_redrives(self, batch: Batch) -> None:
        for o in batch.changes.deadletter_outcomes:
            bound = {"event_id": o.event_id, "by": o.entry.get("by")}
            if o.status == "redriven":
                self.log.info("deadletter_redriven", **bound)
            else:
                self.log.warning("deadletter_redrive_failed", error=o.error, **bound)

    def _observe(self, obs: Observation, now: datetime) -> _Observed:
        """The dataset partitions ``obs`` announces (or why it cannot be processed).

        Raises :class:`_Unstorable` when what would be stored of ``obs`` cannot be (checked
        before its id is derived from it): all of it when it announces a dataset or is
        dead-lettered, only its cursor when it announces nothing."""
        if obs.error is not None:
            _check(obs, stored=True)
            letter = dead_letter(obs, obs.id, obs.error, now)
            return _Observed(letter.event_id, deadletters=[letter])
        announced: list[tuple[str, dict[str, str]]] = []
        failures: list[str] = []
        for ds in self.pipeline.datasets_by_sensor.get(obs.sensor, ()):
            try:
                partition = ds.match(obs)
            except DatasetMatchError as exc:
                failures.append(str(exc))
                continue
            if partition is not None:
                announced.append((ds.name, partition))
        stored = bool(announced or failures)
        _check(obs, stored=stored)
        eid = obs.id if stored else None
        self.log.debug(
            "event_received", sensor=obs.sensor, event_id=eid, key=obs.key, datasets=announced
        )
        if eid is None:
            return _NOTHING
        letters = [dead_letter(obs, eid, failure, now) for failure in failures]
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

    # -- evaluation: the pure core ---------------------------------------------------------

    async def _evaluate(self, batch: Batch, written: Batch | None) -> None:
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
        versions = self.effects.versions
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
            new = step.state
            if new.version is None:
                before = states[mk]
                if before is None or before.generation != new.generation:
                    # It opened in this step: under the running version of its rule.
                    new = replace(new, version=versions.rule(rule.spec.name))
            states[mk] = matches[mk] = new
            if step.effects:
                self.effects.apply(batch, rule, step)

    def _passes(self, batch: Batch, rule: RuleRuntime, ref: InputRef) -> bool:
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

    # -- after the commit ------------------------------------------------------------------

    def _after_commit(self, batch: Batch) -> None:
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


def _count(batch: Batch, commit_seconds: float) -> None:
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
