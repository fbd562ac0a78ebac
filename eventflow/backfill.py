"""Backfill: run a rule for every partition in a key range whose inputs are there.

``eventflow backfill FILE RULE --from KEY --to KEY`` works in three steps:

1. **Enumerate.** The rule's inputs are gathered from what its sensors can list now (a
   sensor that implements :class:`~eventflow.types.ListableSensor`, such as the directory
   sensor) and from the event log. They are fed through the real engine over a scratch
   in-memory store, so the rule's own condition (joins, filters, whatever the rules core
   supports) decides which partitions are complete; those outside ``[from, to]`` are dropped.
2. **Plan.** Against the real store: a partition whose rule already succeeded is skipped
   (unless ``force``); one with a pending or running run resumes that run (a backfill that
   was interrupted); any other gets a run for its next generation. Run ids are
   ``(rule, partition key, generation)`` as always, so the plan is stable.
3. **Run.** In one transaction per chunk, the inputs are logged, each partition's rule state
   is marked fired and its run created; then a dispatcher that claims only this rule's runs
   executes them, ``concurrency`` at a time, with the usual retries, backoff and
   completion events (published by the next ``eventflow run``, which also feeds datasets the
   runs produce to the rules downstream).

Partitions whose inputs are incomplete are reported, never run: eventflow runs a job when
its inputs have arrived, and a backfill is no exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, cast

from eventflow.aio import wait_event
from eventflow.dispatcher import Dispatcher
from eventflow.engine import Engine
from eventflow.errors import EventflowError
from eventflow.events import InputRef, Observation, utcnow
from eventflow.log import get_logger
from eventflow.pipeline import EMIT_SENSOR, CompiledPipeline, RuleRuntime
from eventflow.records import Changes, InboxItem, NewRun, RunRecord, StoredEvent
from eventflow.rules.core import MatchState, run_id_for
from eventflow.store.memory import MemoryStore
from eventflow.types import ListableSensor, PluginEnv, RunContext, Store, TaskResult, TaskRunner

Action = Literal["run", "resume", "skip", "incomplete"]
Bound = tuple[str, ...]
CHUNK = 500
"""Partitions written per transaction."""
LOG_PAGE = 5000
"""Events read from the event log per page while enumerating."""


class BackfillError(EventflowError):
    """A backfill cannot start: an unknown rule, a bad key range."""


@dataclass(slots=True)
class Item:
    """One partition of a backfill and what happens to it."""

    partition: dict[str, str]
    key: str
    action: Action
    reason: str
    generation: int = 0
    run_id: str | None = None
    inputs: tuple[InputRef, ...] = ()
    status: str | None = None
    """The run's final status once executed."""


@dataclass(slots=True)
class Plan:
    rule: str
    items: list[Item] = field(default_factory=list)
    events: dict[str, StoredEvent] = field(default_factory=dict)
    """The input events by id, logged with the runs."""
    fires: dict[str, RunRecord] = field(default_factory=dict)
    """What the scratch engine fired, by partition key (a live backfill decides again)."""
    why_empty: str | None = None
    """Why the plan has no partition at all: never a silent 0."""

    def of(self, *actions: Action) -> list[Item]:
        return [i for i in self.items if i.action in actions]


# --- the key range -------------------------------------------------------------------------


def parse_bound(text: str, by: Sequence[str], what: str) -> Bound:
    """``2024-05-01``, ``2024-05-01/07`` or ``dt=2024-05-01/hr=07``: values of the rule's
    ``by`` variables in order, possibly only the first few (a prefix bounds them all)."""
    parts = [p for p in text.split("/") if p]
    if not parts or len(parts) > len(by):
        raise BackfillError(
            f"{what} {text!r} does not name the rule's partition ({', '.join(by)})",
            hint=f"write values in that order separated by '/', e.g. {'/'.join(by)}=... ",
        )
    values: list[str] = []
    for var, part in zip(by, parts, strict=False):
        name, sep, value = part.partition("=")
        if sep and name != var:
            raise BackfillError(
                f"{what} {text!r}: expected {var}=..., found {name}=",
                hint=f"the rule joins on {', '.join(by)}, in this order",
            )
        values.append(value if sep else part)
    return tuple(values)


def in_range(partition: dict[str, str], by: Sequence[str], lo: Bound, hi: Bound) -> bool:
    """Whether the partition's values (in ``by`` order) lie within ``[lo, hi]``; a bound
    shorter than ``by`` compares with as many values (``--to 2024-05-31`` takes all hours)."""
    values = tuple(partition.get(v, "") for v in by)
    return lo <= values[: len(lo)] and values[: len(hi)] <= hi


# --- 1. enumerate ------------------------------------------------------------------------


@dataclass(slots=True)
class Found:
    """What enumerating saw: to say why a backfill found nothing."""

    listed: int = 0
    logged: int = 0
    notes: list[str] = field(default_factory=list)


async def enumerate_partitions(
    pipeline: CompiledPipeline,
    store: Store,
    rule: RuleRuntime,
    *,
    list_sources: bool = True,
    clock: Callable[[], datetime] = utcnow,
    found: Found | None = None,
    batch_size: int | None = None,
) -> tuple[list[RunRecord], list[MatchState], dict[str, StoredEvent]]:
    """What the rule would fire given every input that can be found: the scratch fires
    (newest generation per partition), the incomplete partitions, and the input events.

    The scratch engine takes ``batch_size`` observations at a time (default
    ``engine.batch_size``) and lets the event loop go on between two batches: inside
    ``eventflow run`` (a live backfill) small ones keep the live events moving."""
    size = batch_size or pipeline.engine.batch_size
    alone = replace(pipeline, rules={rule.name: rule}, publishers=[])
    scratch = MemoryStore()
    seen = found if found is not None else Found()
    async with scratch:
        engine = Engine(alone, scratch, clock=clock)
        if list_sources:
            observations = await _listed(pipeline, rule, seen)
            seen.listed = len(observations)
            for start in range(0, len(observations), size):
                await engine.process(observations[start : start + size])
                await asyncio.sleep(0)
        sensors = {EMIT_SENSOR, *(pipeline.datasets[d].sensor for d in rule.spec.datasets)}
        after = 0
        while page := await store.read_events(sensors=sensors, after=after, limit=LOG_PAGE):
            after = page[-1][0]
            seen.logged += len(page)
            observations = []
            for _, e in page:
                if e.sensor in pipeline.sensors:
                    observations.append(
                        Observation(e.sensor, e.position, e.key, e.time, e.payload, e.attributes)
                    )
                    continue
                for name, partition in e.datasets:  # produced or emitted: as they arrived
                    await scratch.add_inbox(
                        InboxItem(e.sensor, name, partition, e.position, e.payload, e.time)
                    )
            engine.wake()
            for start in range(0, len(observations), size):
                await engine.process(observations[start : start + size])
                await asyncio.sleep(0)
            while (await scratch.counts())["inbox"]:
                engine.wake()
                await engine.process([])
        newest: dict[str, RunRecord] = {}
        for run in await scratch.list_runs(rule=rule.name, limit=1 << 62):
            if run.key not in newest or run.generation > newest[run.key].generation:
                newest[run.key] = run
        incomplete = await scratch.list_matches(rule=rule.name, status="open")
        ids = {ref.event_id for run in newest.values() for ref in run.inputs}
        events = {e.id: e for e in await scratch.get_events(ids)}
    return list(newest.values()), incomplete, events


async def _listed(pipeline: CompiledPipeline, rule: RuleRuntime, seen: Found) -> list[Observation]:
    """What the sensors of the rule's datasets that can list have now, once each."""
    env = PluginEnv(pipeline.name, pipeline.base_dir, pipeline.environment)
    prefixes: dict[str, set[str]] = {}
    for name in rule.spec.datasets:
        ds = pipeline.datasets[name]
        spec = pipeline.sensors.get(ds.sensor)
        if spec is None:
            continue
        if not issubclass(spec.plugin, ListableSensor):
            seen.notes.append(
                f"sensor {spec.name} ({spec.type}) cannot list its source: dataset {name}"
                " comes from the event log only"
            )
            continue
        prefix = ds.pattern.literal_prefix if ds.pattern is not None else ""
        prefixes.setdefault(ds.sensor, set()).add(prefix)
    found: dict[str, Observation] = {}
    for sensor_name, wanted in prefixes.items():
        spec = pipeline.sensors[sensor_name]
        sensor: ListableSensor = spec.plugin(spec.name, spec.config, env)
        for prefix in _outermost(wanted):
            listed = await sensor.list_observations(prefix)
            for obs in listed:
                found.setdefault(obs.id, obs)
            seen.notes.append(f"sensor {sensor_name} listed {len(listed)} under {prefix!r}")
    return list(found.values())


def _outermost(prefixes: set[str]) -> list[str]:
    """The prefixes that no other one of the set contains (so each key is listed once)."""
    ordered = sorted(prefixes)
    return [p for p in ordered if not any(p != q and p.startswith(q) for q in ordered)]


# --- 2. plan -------------------------------------------------------------------------------


async def plan(
    pipeline: CompiledPipeline,
    store: Store,
    rule_name: str,
    lo: Bound,
    hi: Bound,
    *,
    force: bool = False,
    list_sources: bool = True,
    clock: Callable[[], datetime] = utcnow,
    batch_size: int | None = None,
) -> Plan:
    rule = pipeline.rules[rule_name]
    seen = Found()
    fires, incomplete, events = await enumerate_partitions(
        pipeline, store, rule, list_sources=list_sources, clock=clock, found=seen,
        batch_size=batch_size,
    )  # fmt: skip
    by = rule.spec.by
    result = Plan(rule_name, events=events)
    for fire in sorted(fires, key=lambda r: sort_key(r.partition, by)):
        if in_range(dict(fire.partition), by, lo, hi):
            result.fires[fire.key] = fire
            result.items.append(await decide(store, rule, fire, force))
    for match in incomplete:
        if in_range(dict(match.partition), by, lo, hi):
            missing = ", ".join(match.missing(rule.spec)) or "inputs"
            result.items.append(
                Item(dict(match.partition), match.key, "incomplete", f"missing {missing}")
            )
    if not result.items:
        result.why_empty = _why_empty(pipeline, rule, seen, fires, incomplete, lo, hi)
    return result


def sort_key(partition: Mapping[str, str], by: Sequence[str]) -> tuple[str, ...]:
    """A partition's values in the rule's ``by`` order: the order a backfill fires in."""
    return tuple(partition.get(v, "") for v in by)


def _why_empty(
    pipeline: CompiledPipeline,
    rule: RuleRuntime,
    seen: Found,
    fires: Sequence[RunRecord],
    incomplete: Sequence[MatchState],
    lo: Bound,
    hi: Bound,
) -> str:
    """Why nothing was found: nothing at the sources, nothing matching, or all outside."""
    where = "; ".join(seen.notes) or "no sensor of the rule can list its source"
    if not seen.listed and not seen.logged:
        return f"nothing found: {where}; the event log holds no event of the rule's sensors"
    partitions = [*(f.partition for f in fires), *(m.partition for m in incomplete)]
    if not partitions:
        patterns = ", ".join(
            f"{name}: {ds.pattern.text if ds.pattern else '(produced)'}"
            for name in rule.spec.datasets
            for ds in (pipeline.datasets[name],)
        )
        return (
            f"{seen.listed} listed and {seen.logged} logged events, none matching the"
            f" datasets' patterns ({patterns}); {where}"
        )
    keys = sorted(sort_key(p, rule.spec.by) for p in partitions)
    return (
        f"{len(partitions)} partitions found, from {'/'.join(keys[0])} to {'/'.join(keys[-1])},"
        f" all outside --from {'/'.join(lo)} --to {'/'.join(hi)}"
    )


async def decide(store: Store, rule: RuleRuntime, fire: RunRecord, force: bool) -> Item:
    partition, key = dict(fire.partition), fire.key
    # Both from the last commit, off the writer's queue (SQLite): the engine's commits do
    # not wait behind a backfill's decisions.
    runs = list(await store.partition_runs(rule.name, key))
    if rule.renamed_from is not None:  # what ran under the former name ran for this rule
        runs += await store.partition_runs(rule.renamed_from, key)
    state = (await store.committed_matches([(rule.name, key)])).get((rule.name, key))
    statuses = {r.status for r in runs}
    if "succeeded" in statuses and not force:
        return Item(partition, key, "skip", "succeeded before")
    live = [r for r in runs if r.status in ("pending", "running")]
    if live:
        newest = max(live, key=lambda r: r.generation)
        return Item(
            partition, key, "resume", newest.status, newest.generation, newest.run_id, newest.inputs
        )
    if state is not None and state.status == "open":
        generation = state.generation
    else:
        generation = max([state.generation if state else 0, *(r.generation for r in runs)]) + 1
    reason = "forced" if "succeeded" in statuses else "failed before" if runs else "never ran"
    return Item(
        partition,
        key,
        "run",
        reason,
        generation,
        run_id_for(rule.name, key, generation),
        fire.inputs,
    )


# --- 3. run --------------------------------------------------------------------------------


async def write_runs(
    pipeline: CompiledPipeline,
    store: Store,
    the_plan: Plan,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Log the inputs, mark each partition fired and create its run, a chunk per commit."""
    rule = pipeline.rules[the_plan.rule]
    todo = the_plan.of("run")
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        changes = fire_changes(rule, the_plan, chunk, clock(), pipeline.version.rule(rule.name))
        async with store.transaction() as tx:
            await tx.apply(changes)


def fire_changes(
    rule: RuleRuntime,
    the_plan: Plan,
    items: Sequence[Item],
    now: datetime,
    version: str = "",
) -> Changes:
    """What firing ``items`` writes: their input events, their rule state (fired) and runs
    (made by ``version`` of the rule, as the engine's fires record it)."""
    changes = Changes()
    for item in items:
        assert item.run_id is not None
        inputs: dict[str, tuple[InputRef, ...]] = {}
        for ref in item.inputs:
            inputs[ref.dataset] = (*inputs.get(ref.dataset, ()), ref)
            if ref.event_id in the_plan.events:
                # Logged as listed: when the sensor observes one live, the other rules of the
                # pipeline still get it (this rule's fired state has it: a duplicate there).
                changes.listed_events.append(the_plan.events[ref.event_id])
        changes.matches[(rule.name, item.key)] = MatchState(
            rule=rule.name,
            key=item.key,
            partition=item.partition,
            generation=item.generation,
            status="fired",
            inputs=inputs,
            opened_at=now,
            fired_at=now,
            updated_at=now,
        )
        changes.runs.append(
            NewRun(
                run_id=item.run_id,
                rule=rule.name,
                key=item.key,
                partition=item.partition,
                generation=item.generation,
                inputs=item.inputs,
                max_attempts=rule.max_attempts,
                created_at=now,
                pipeline_version=version,
            )
        )
    return changes


class _Watched:
    """The rule's task runner, noting each run that finished an attempt."""

    def __init__(self, runner: TaskRunner, finished: set[str], changed: asyncio.Event) -> None:
        self._runner = runner
        self._finished = finished
        self._changed = changed

    async def run(self, ctx: RunContext) -> TaskResult:
        try:
            return await self._runner.run(ctx)
        finally:
            self._finished.add(ctx.run_id)
            self._changed.set()

    async def close(self) -> None:
        close = getattr(self._runner, "close", None)
        if close is not None:
            await close()


async def execute(
    pipeline: CompiledPipeline,
    store: Store,
    the_plan: Plan,
    concurrency: int,
    *,
    on_done: Callable[[Item], None] = lambda item: None,
) -> None:
    """Run the plan's runs (new and resumed) to their end, ``concurrency`` at a time."""
    rule = pipeline.rules[the_plan.rule]
    env = PluginEnv(pipeline.name, pipeline.base_dir, pipeline.environment)
    limited = replace(pipeline, engine=pipeline.engine.model_copy(update={"max_runs": concurrency}))
    changed = asyncio.Event()
    finished: set[str] = set()
    runner = _Watched(rule.task_plugin(rule.task_config, env), finished, changed)
    runners = {rule.name: cast(TaskRunner, runner)}
    identity = await store.store_identity()
    dispatcher = Dispatcher(
        limited,
        store,
        runners,
        claim_only={rule.name},
        store_id=identity.store_id if identity is not None else "",
    )
    waiting = {i.run_id: i for i in the_plan.of("run", "resume") if i.run_id is not None}
    task = asyncio.create_task(dispatcher.run(), name="backfill-dispatcher")
    rounds = 0
    try:
        while waiting:
            await wait_event(changed, 0.5)
            changed.clear()
            if task.done():
                task.result()  # the dispatcher failed: raise its error
            rounds += 1
            # The runs that ended an attempt; every 10th round all of them (a run can also
            # fail before its task starts).
            check = list(waiting) if rounds % 10 == 0 else list(finished & waiting.keys())
            for run_id in check:
                record = await store.get_run(run_id)
                if record is None or record.status == "running":
                    continue  # its result is being recorded
                finished.discard(run_id)
                if record.status in ("succeeded", "failed"):
                    item = waiting.pop(run_id)
                    item.status = record.status
                    on_done(item)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await dispatcher.drain(pipeline.engine.drain_timeout.total_seconds())
        await runner.close()


async def backfill(
    pipeline: CompiledPipeline,
    store: Store,
    the_plan: Plan,
    concurrency: int,
    *,
    on_done: Callable[[Item], None] = lambda item: None,
) -> None:
    """Write and execute a plan. Takes the worker lock: ``eventflow run`` must be stopped."""
    await store.lock_worker()
    recovered = await store.recover_running(utcnow())
    log = get_logger(component="backfill", rule=the_plan.rule)
    log.info(
        "backfill_started",
        runs=len(the_plan.of("run")),
        resumed=len(the_plan.of("resume")),
        skipped=len(the_plan.of("skip")),
        recovered_runs=len(recovered),
    )
    await write_runs(pipeline, store, the_plan)
    await execute(pipeline, store, the_plan, concurrency, on_done=on_done)
    done = the_plan.of("run", "resume")
    log.info(
        "backfill_finished",
        succeeded=sum(i.status == "succeeded" for i in done),
        failed=sum(i.status == "failed" for i in done),
    )
