"""Replay: feed events from the event log through the rules again, and the log's retention.

After a rule changes (a new rule, another join, a new dataset pattern) the question is "what
would have fired, and fire it". :func:`replay` reads the event log page by page and runs each
page through the real :class:`~eventflow.engine.Engine` over a :class:`_ReplayStore`, a view
of the store that:

- treats every logged event as unseen (the engine would otherwise drop it as a duplicate),
  matches it against the *current* datasets, and writes nothing to the event log again;
- hands events of pseudo-sensors (datasets produced by runs, ``eventflow emit``) to the
  engine as inbox rows, the way they first arrived;
- publishes ``eventflow.dataset.available`` only for dataset partitions the event did not
  announce before (a new pattern), never twice;
- leaves the inbox and due timers to ``eventflow run``.

So a replayed input takes the engine's own path: the same rule evaluation, the same run ids.
Run ids are fire keys, ``(rule, partition key, generation)``, and a partition that fired
takes no replayed input as an update: a replay fires only what did not fire before, each
partition at most once. An open partial match is evaluated again with the replayed inputs,
so a rule whose join changed fires the partitions it now accepts; an expired one takes them
as late data (the rule's ``late`` setting applies). With ``force``, every partition the replay
touches that had fired (or expired) starts one new generation, so it fires again, once per
replay. A dry run evaluates without writing, carrying the rule state between pages in
memory.

Runs that a replay fires are ``pending``; ``eventflow run`` executes them (``backfill``
executes its own). Kafka's "topic from the offsets at that time" is the
:class:`~eventflow.types.ReplayableSensor` hook: a sensor that implements it re-reads its
source instead of the event log (``--from-source``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast

from eventflow import completion
from eventflow.effects import BatchStats
from eventflow.engine import Engine
from eventflow.errors import EventflowError
from eventflow.events import Observation, utcnow
from eventflow.log import get_logger
from eventflow.pipeline import CompiledPipeline
from eventflow.records import (
    Changes,
    DeadLetter,
    InboxItem,
    MatchKey,
    NewRun,
    StoredEvent,
    Timer,
)
from eventflow.rules.core import MatchState
from eventflow.types import PluginEnv, ReplayableSensor, Store, Transaction

PRUNE_INTERVAL = timedelta(hours=1)
"""How often ``eventflow run`` deletes events older than ``retention.events``."""
PRUNE_CHUNK = 10_000
"""Events deleted per transaction: the engine commits between chunks."""


class ReplayError(EventflowError):
    """A replay cannot start (an unknown sensor, a sensor that cannot re-read its source)."""


@dataclass(slots=True)
class ReplayReport:
    """What a replay did (or, dry, would do)."""

    events: int = 0
    stats: BatchStats = field(default_factory=BatchStats)
    fired: list[NewRun] = field(default_factory=list)
    dry_run: bool = False


Progress = Callable[[int], None]
"""Called with the number of events of each page once it is done."""


async def replay(
    pipeline: CompiledPipeline,
    store: Store,
    *,
    since: datetime | None,
    sensors: Collection[str] | None = None,
    force: bool = False,
    dry_run: bool = False,
    from_source: bool = False,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> ReplayReport:
    """Feed the events received since ``since`` (of ``sensors``) through the rules again.

    Takes the worker lock unless ``dry_run``: the engine must be the only writer of rule
    state, so ``eventflow run`` has to be stopped on a SQLite store.
    """
    if sensors is not None:
        _check_sensors(pipeline, sensors, from_source)
    if not dry_run:
        await store.lock_worker()
    view = _ReplayStore(store, commit=not dry_run, renew=force, log_events=from_source)
    engine = Engine(_once(pipeline), cast(Store, view), clock=clock)
    report = ReplayReport(dry_run=dry_run)
    log = get_logger(component="replay")
    log.info("replay_started", since=since.isoformat() if since else None, force=force)
    pages = (
        _source_pages(pipeline, sensors or (), since, pipeline.engine.batch_size)
        if from_source
        else _log_pages(store, since, sensors, pipeline.engine.batch_size)
    )
    async for page in pages:
        observations = view.take(pipeline, page)
        engine.wake()  # the view's inbox holds this page's produced and emitted events
        report.stats.add(await engine.process(observations))
        report.events += len(page)
        if progress is not None:
            progress(len(page))
    report.fired = view.fired
    log.info(
        "replay_finished",
        events=report.events,
        fires=len(report.fired),
        dry_run=dry_run,
    )
    return report


def _once(pipeline: CompiledPipeline) -> CompiledPipeline:
    """The pipeline as a replay evaluates it: a partition that fired takes no update, so it
    fires at most once per replay (an input replaced by a newer one is not news)."""
    rules = {
        name: replace(rule, spec=replace(rule.spec, on_update="ignore"))
        for name, rule in pipeline.rules.items()
    }
    return replace(pipeline, rules=rules)


def _check_sensors(pipeline: CompiledPipeline, sensors: Collection[str], from_source: bool) -> None:
    for name in sensors:
        spec = pipeline.sensors.get(name)
        if spec is None and (from_source or not _pseudo(pipeline, name)):
            raise ReplayError(
                f"no sensor {name!r}", hint=f"sensors: {', '.join(pipeline.sensors) or 'none'}"
            )
        if from_source and spec is not None and not issubclass(spec.plugin, ReplayableSensor):
            raise ReplayError(
                f"sensor {name!r} ({spec.type}) cannot re-read its source",
                hint="replay it from the event log (leave out --from-source)",
            )


def _pseudo(pipeline: CompiledPipeline, sensor: str) -> bool:
    """Whether ``sensor`` is the pseudo-sensor of produced or emitted datasets."""
    return any(ds.sensor == sensor for ds in pipeline.datasets.values()) or sensor == "cli.emit"


async def _log_pages(
    store: Store, since: datetime | None, sensors: Collection[str] | None, size: int
) -> AsyncIterator[list[StoredEvent]]:
    """Pages of the event log; the next one is read while the engine works on this one."""

    def read(after: int) -> asyncio.Task[list[tuple[int, StoredEvent]]]:
        pending = store.read_events(since=since, sensors=sensors, after=after, limit=size)
        return asyncio.ensure_future(pending)

    ahead = read(0)
    try:
        while page := await ahead:
            ahead = read(page[-1][0])
            yield [event for _, event in page]
    finally:
        ahead.cancel()


async def _source_pages(
    pipeline: CompiledPipeline, sensors: Iterable[str], since: datetime | None, size: int
) -> AsyncIterator[list[StoredEvent]]:
    """Pages of what replayable sensors re-read from their sources since ``since``."""
    env = PluginEnv(pipeline.name, pipeline.base_dir, pipeline.environment)
    for name in sensors:
        spec = pipeline.sensors[name]
        sensor = cast(ReplayableSensor, spec.plugin(spec.name, spec.config, env))
        page: list[StoredEvent] = []
        async for obs in sensor.replay_observations(since):
            page.append(_as_stored(obs))
            if len(page) >= size:
                yield page
                page = []
        if page:
            yield page


def _as_stored(obs: Observation) -> StoredEvent:
    when = obs.time or utcnow()
    return StoredEvent(
        obs.id, obs.sensor, obs.key, when, obs.position, obs.payload, obs.attributes, (), when
    )


class _ReplayStore:
    """The store as the engine sees it during a replay (see the module docs)."""

    def __init__(self, store: Store, *, commit: bool, renew: bool, log_events: bool) -> None:
        """``log_events``: add what the replay reads to the event log (it came from the
        source, not from the log)."""
        self._store = store
        self._log_events = log_events
        self._commit = commit
        self._renew = renew
        self._touched: set[MatchKey] = set()
        """Keys already loaded by this replay: a key is renewed at most once."""
        self._overlay: dict[MatchKey, MatchState] = {}
        """A dry run's rule state, carried between pages."""
        self._inbox: list[InboxItem] = []
        self._announced: set[tuple[str, str]] = set()
        self._order: dict[str, int] = {}
        """The position of each event of the page in the engine's order of evaluation."""
        self.fired: list[NewRun] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def take(self, pipeline: CompiledPipeline, page: Sequence[StoredEvent]) -> list[Observation]:
        """The observations of a page; its pseudo-sensor events become the view's inbox."""
        observations: list[Observation] = []
        self._inbox = []
        self._announced = set()
        # The engine evaluates a page's observations first, then its inbox rows.
        pseudo = [e.id for e in page if e.sensor not in pipeline.sensors]
        real = [e.id for e in page if e.sensor in pipeline.sensors]
        self._order = {eid: i for i, eid in enumerate([*real, *pseudo])}
        for e in page:
            self._announced.update((name, e.id) for name, _ in e.datasets)
            if e.sensor in pipeline.sensors:
                observations.append(
                    Observation(e.sensor, e.position, e.key, e.time, e.payload, e.attributes)
                )
                continue
            for name, partition in e.datasets:
                if name in pipeline.datasets:
                    self._inbox.append(
                        InboxItem(e.sensor, name, partition, e.position, e.payload, e.time)
                    )
        return observations

    # -- what the engine reads ---------------------------------------------------------------

    async def committed_seen_events(self, ids: Collection[str]) -> set[str]:
        return set()

    async def fetch_inbox(self, limit: int) -> list[InboxItem]:
        items, self._inbox = self._inbox[:limit], self._inbox[limit:]
        return items

    async def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        return []

    async def fetch_redrives(self, limit: int) -> list[DeadLetter]:
        return []  # the running pipeline carries redrives out, never a replay

    async def committed_matches(self, keys: Collection[MatchKey]) -> dict[MatchKey, MatchState]:
        found = {k: self._overlay[k] for k in keys if k in self._overlay}
        rest = [k for k in keys if k not in self._overlay]
        if rest:
            found.update(await self._store.committed_matches(rest))
        for key in keys:
            if key in self._touched:
                continue
            self._touched.add(key)
            state = found.get(key)
            if state is None:
                continue
            if state.status != "open" and not self._renew:
                continue  # fired: the fire key holds; expired: the replay is late data
            if state.status != "open":  # the next generation, opened by the replay
                state = replace(
                    state,
                    generation=state.generation + 1,
                    status="open",
                    opened_at=None,
                    expires_at=None,
                    fired_at=None,
                )
            found[key] = _reopened(state, self._order)
        return found

    # -- what the engine writes --------------------------------------------------------------

    def transaction(self, *, durable: bool = True) -> AbstractAsyncContextManager[Transaction]:
        return self._transaction(durable)

    @asynccontextmanager
    async def _transaction(self, durable: bool) -> AsyncIterator[Transaction]:
        if not self._commit:
            yield cast(Transaction, _DryTransaction(self))
            return
        async with self._store.transaction(durable=durable) as tx:
            yield cast(Transaction, _ReplayTransaction(self, tx))

    def _filter(self, changes: Changes) -> Changes:
        """What a replayed batch writes: no event log rows (unless read from the source), no
        inbox deletes (the inbox rows were the view's own), and no dataset announcements
        made before."""
        self.fired.extend(changes.runs)
        if not self._log_events:
            changes.events = []
        changes.inbox_delete = []
        changes.outbox = [item for item in changes.outbox if not self._announced_before(item)]
        return changes

    def _announced_before(self, item: Any) -> bool:
        event = item.event
        if event.type != completion.DATASET_AVAILABLE:
            return False
        return (event.data["dataset"], event.data["event"]["event_id"]) in self._announced


class _ReplayTransaction:
    def __init__(self, view: _ReplayStore, tx: Transaction) -> None:
        self._view = view
        self._tx = tx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    async def apply(self, changes: Changes) -> None:
        await self._tx.apply(self._view._filter(changes))


class _DryTransaction:
    """Records a dry run's batch instead of writing it."""

    def __init__(self, view: _ReplayStore) -> None:
        self._view = view

    async def apply(self, changes: Changes) -> None:
        self._view._filter(changes)
        self._view._overlay.update(changes.matches)


def _reopened(state: MatchState, order: Mapping[str, int]) -> MatchState:
    """An open match without the first of its inputs that the page replays.

    That input arrives again, first among the partition's replayed inputs, and the rule as
    it is now decides whether the partition fires: a changed join fires what it now
    accepts, once; the other replayed inputs are then duplicates. (A fired or expired match
    is reopened, with ``force``, as its next generation with its inputs carried over, so it
    fires once more.)
    """
    replayed = [r for refs in state.inputs.values() for r in refs if r.event_id in order]
    inputs = dict(state.inputs)
    if replayed:
        first = min(replayed, key=lambda r: order[r.event_id])
        kept = tuple(r for r in inputs[first.dataset] if r is not first)
        if kept:
            inputs[first.dataset] = kept
        else:
            del inputs[first.dataset]
    return replace(state, inputs=inputs)


# --- retention -----------------------------------------------------------------------------


async def prune_event_log(store: Store, before: datetime) -> int:
    """Delete every event received before ``before``, a chunk per transaction."""
    total = 0
    while True:
        deleted = await store.prune_events(before, PRUNE_CHUNK)
        total += deleted
        if deleted < PRUNE_CHUNK:
            return total
        await asyncio.sleep(0)  # let the engine commit between chunks


async def retention_loop(
    pipeline: CompiledPipeline, store: Store, *, clock: Callable[[], datetime] = utcnow
) -> None:
    """Apply ``retention.events`` now and every :data:`PRUNE_INTERVAL` until cancelled; a
    store error is logged and tried again at the next interval."""
    keep = pipeline.raw.retention.events
    if keep is None:
        return
    log = get_logger(component="retention")
    while True:
        before = clock() - keep
        try:
            deleted = await prune_event_log(store, before)
        except EventflowError as exc:
            log.warning("events_prune_failed", error=str(exc))
        else:
            if deleted:
                log.info("events_pruned", count=deleted, before=before.isoformat())
        await asyncio.sleep(PRUNE_INTERVAL.total_seconds())
