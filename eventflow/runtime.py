"""The process: one supervisor owning the engine, the dispatcher, the outbox and the sensors.

Start-up recovers what a dead process left (runs that were running go back to pending),
opens publishers and starts every component as a named task. A sensor that fails is
restarted with capped exponential backoff while the others go on; a failure of the engine,
the dispatcher or the store stops the process. On SIGTERM it drains: sensors stop, the
engine commits what is queued, in-flight runs get ``drain_timeout`` to finish (then they are
stopped and run again at the next start), and the outbox is flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
from collections.abc import Collection, Coroutine
from datetime import timedelta
from typing import Any

from eventflow import backoff, health, metrics
from eventflow.backfill_worker import BackfillWorker
from eventflow.dispatcher import Dispatcher
from eventflow.engine import Engine
from eventflow.events import JSON, Observation, utcnow
from eventflow.lifecycle import open_all
from eventflow.log import get_logger
from eventflow.migrate import Started, start_version
from eventflow.outbox import OutboxDrainer
from eventflow.pause_watch import PauseWatch
from eventflow.pipeline import CompiledPipeline, SensorSpec
from eventflow.quality import checker as quality_checker
from eventflow.replay import retention_loop
from eventflow.store import open_store
from eventflow.types import PluginEnv, Store

SENSOR_BACKOFF_MAX = 60.0
"""Longest wait before restarting a failed sensor (seconds)."""
SENSOR_HEALTHY_AFTER = 60.0
"""A sensor that ran this long before failing starts its backoff from the beginning."""
RULE_GAUGES_EVERY = 30.0
"""Seconds between two refreshes of the rules' error rate and MTTR gauges."""
GC_YOUNG_THRESHOLD = 50_000
"""Container allocations (net) between two young-generation collections; Python's is 700.
At 10,000 a Kafka stream of 1,000-message batches still met one young collection per batch
(3 ms each, and every tenth promoted what was queued to be walked again): 8% of the time;
at 50,000 the queue's churn stays below it (4 young collections in 100,000 messages)."""


def tune_gc() -> None:
    """Set Python's cyclic garbage collector up for a process that runs one pipeline.

    The engine allocates and frees hundreds of thousands of small containers a second
    (observations, events, rule states, rows), nearly all freed by reference counting. With
    Python's defaults the collector still ran a young collection every 700 of them, and
    promoted batches that were alive during a collection until a full collection walked
    every object in the process; that was a quarter of the engine's CPU time. So, once start-up
    is done: collect once, freeze what exists (modules, the config, plugins: they live as long
    as the process and are never walked again) and collect the young generation less often.
    Called by ``eventflow run``, whose process it is; an application that embeds the Runtime
    decides for its own process.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)


class SensorHandle:
    """The :class:`~eventflow.types.SensorContext` the runtime gives each sensor."""

    def __init__(self, name: str, engine: Engine, store: Store) -> None:
        self.name = name
        self.log = get_logger(sensor=name)
        self._engine = engine
        self._store = store
        self.healthy = False
        self.detail = "starting"
        self.since = time.monotonic()
        """When ``healthy`` last changed (``/readyz`` gives a failing sensor a retry budget)."""
        self.report = health.report(name)

    async def emit(self, observation: Observation) -> None:
        await self._engine.submit(observation)

    async def load_cursor(self) -> dict[str, JSON]:
        return await self._store.load_cursors(self.name)

    async def forget(self, keys: Any) -> None:
        await self._store.delete_cursors(self.name, keys)

    def set_health(self, ok: bool, detail: str = "") -> None:
        if ok != self.healthy:
            self.log.info("sensor_health", healthy=ok, detail=detail)
            self.since = time.monotonic()
        self.healthy, self.detail = ok, detail
        self.report.health(ok, detail)
        metrics.sensor_health(self.name, ok)


class Runtime:
    """Runs a pipeline until ``stop`` is set."""

    def __init__(
        self,
        pipeline: CompiledPipeline,
        store: Store | None = None,
        *,
        own_process: bool = False,
        accept: Collection[str] = (),
    ) -> None:
        """``own_process``: the process runs only this pipeline; tune it (:func:`tune_gc`).
        ``accept``: plan lines this start may apply (``eventflow run --accept``)."""
        self.pipeline = pipeline
        self.own_process = own_process
        self.accept = tuple(accept)
        self.store = store or open_store(pipeline.state_dsn, pipeline.base_dir)
        self.env = PluginEnv(
            pipeline=pipeline.name, base_dir=pipeline.base_dir, environment=pipeline.environment
        )
        self.log = get_logger(pipeline=pipeline.name)
        self.sensors: dict[str, SensorHandle] = {}
        self.leases: set[str] = set()
        """The sensor leases this worker holds (its heartbeat row lists them)."""
        self.heartbeat: health.Heartbeat | None = None
        self._gauged = -RULE_GAUGES_EVERY
        self.engine: Engine | None = None
        self.dispatcher: Dispatcher | None = None
        self.checker: quality_checker.Checker | None = None
        """Set once the store is open and start-up recovery is done (``/readyz``)."""
        self.pauses = PauseWatch(self.store, pipeline.engine.poll_interval.total_seconds())
        """The paused rules and sensors (:mod:`eventflow.pauses`), read from the store."""
        self.backfills: BackfillWorker | None = None
        self.started: Started | None = None
        """This process's start: the store's identity and the plan it applied."""

    async def run(self, stop: asyncio.Event) -> None:
        async with self.store, contextlib.AsyncExitStack() as resources:
            await self._run(stop, resources)

    async def _run(self, stop: asyncio.Event, resources: contextlib.AsyncExitStack) -> None:
        """Start everything, run until ``stop`` or a failure, drain; ``resources`` closes the
        task runners and publishers afterwards (and on a failed start)."""
        pipeline, store = self.pipeline, self.store
        await store.lock_worker()
        self.started = await start_version(pipeline, store, utcnow(), self.log, self.accept)
        recovered = await store.recover_running(utcnow())
        if recovered:
            self.log.warning("runs_recovered", runs=recovered, count=len(recovered))
        runners = {
            name: rule.task_plugin(rule.task_config, self.env)
            for name, rule in pipeline.rules.items()
        }
        await open_all(resources, "task", runners)
        publishers = {p.name: p.plugin(p.name, p.config, self.env) for p in pipeline.publishers}
        await open_all(resources, "publisher", publishers)

        check_runners = quality_checker.check_runners(pipeline, self.env)
        await open_all(resources, "check", check_runners)
        engine = self.engine = Engine(pipeline, store)
        dispatcher = self.dispatcher = Dispatcher(
            pipeline, store, runners, store_id=self.started.identity.store_id
        )
        objects = quality_checker.object_sensors(pipeline, self.env)
        # A store shared by workers (PostgreSQL) has a worker lease: a claim lasts as long.
        lease = getattr(store, "lease_seconds", None)
        claim_lease = timedelta(seconds=lease) if lease else quality_checker.CLAIM_LEASE
        checker = self.checker = quality_checker.Checker(
            pipeline, store, check_runners, objects=objects, claim_lease=claim_lease
        )
        poll = pipeline.engine.poll_interval.total_seconds()
        drainers = [OutboxDrainer(n, p, store, poll) for n, p in publishers.items()]

        def wake_outbox() -> None:
            for d in drainers:
                d.wake()

        engine.on_runs = dispatcher.wake
        engine.on_outbox = wake_outbox
        dispatcher.on_outbox = wake_outbox
        dispatcher.on_produced = engine.wake
        dispatcher.on_gates = checker.wake
        checker.on_produced = engine.wake
        checker.on_outbox = wake_outbox
        self.pauses.on_rule_resumed = dispatcher.wake
        await self.pauses.refresh()  # a paused sensor does not start

        core: dict[str, asyncio.Task[None]] = {
            "engine": asyncio.create_task(engine.run(), name="engine"),
            "dispatcher": asyncio.create_task(dispatcher.run(), name="dispatcher"),
        }
        if checker.active:
            core["checks"] = asyncio.create_task(checker.run(), name="checks")
        for d in drainers:
            core[f"outbox:{d.name}"] = asyncio.create_task(d.run(), name=f"outbox:{d.name}")
        core["pauses"] = asyncio.create_task(self.pauses.run(), name="pauses")
        backfills = self.backfills = BackfillWorker(pipeline, store, engine, dispatcher.wake)
        intake = [asyncio.create_task(backfills.run(), name="backfills")]
        if pipeline.raw.retention.events is not None:
            core["retention"] = asyncio.create_task(
                retention_loop(pipeline, store), name="retention"
            )
        health.forget(pipeline.sensors)
        beat = self.heartbeat = health.Heartbeat(
            store,
            pipeline.sensors,
            lambda: self.leases,
            seconds=pipeline.raw.engine.heartbeat.total_seconds(),
            on_beat=self._rule_gauges,
        )
        core["heartbeat"] = asyncio.create_task(_forever(beat.run()), name="heartbeat")
        sensor_tasks = intake  # stopped first, with the sensors
        for spec in pipeline.sensors.values():
            handle = SensorHandle(spec.name, engine, store)
            self.sensors[spec.name] = handle
            sensor_tasks.append(
                asyncio.create_task(self._supervise(spec, handle), name=f"sensor:{spec.name}")
            )
        if self.own_process:
            tune_gc()
        self.log.info(
            "pipeline_started",
            sensors=list(pipeline.sensors),
            rules=list(pipeline.rules),
            publishers=list(publishers),
            recovered_runs=len(recovered),
        )

        stopper = asyncio.create_task(stop.wait(), name="stop")
        done, _ = await asyncio.wait({stopper, *core.values()}, return_when=asyncio.FIRST_COMPLETED)
        failure: BaseException | None = None
        for task in done:
            if task is not stopper and not task.cancelled() and task.exception() is not None:
                failure = task.exception()
                self.log.error("component_failed", component=task.get_name(), error=repr(failure))
        stopper.cancel()

        # Drain: stop intake, commit what is queued, let runs finish, flush the outbox.
        self.log.info("pipeline_stopping", reason="failure" if failure else "signal")
        started = time.monotonic()
        await _cancel(sensor_tasks)
        if failure is None:
            engine.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await core["engine"]
            await engine.drain()
            await dispatcher.drain(pipeline.engine.drain_timeout.total_seconds())
        await checker.drain()
        await _cancel(list(core.values()))
        if failure is None:
            for d in drainers:
                await d.flush(timeout=5.0)
            await beat.stop()
        await resources.aclose()
        self.log.info(
            "pipeline_stopped",
            seconds=round(time.monotonic() - started, 3),
            events=engine.total.events,
            fires=engine.total.fires,
        )
        if failure is not None:
            raise failure

    async def _supervise(self, spec: SensorSpec, handle: SensorHandle) -> None:
        """Run a sensor on every worker (``scale_out = "shared"``) or, by default, only while
        this worker holds its lease in the store: when the holder dies (or loses the store)
        another worker takes the lease and the sensor over (see ``ScaleOut``)."""
        first: Any = spec.plugin(spec.name, spec.config, self.env)
        if getattr(first, "scale_out", "exclusive") == "shared":  # the instance may decide
            await self._restarting(spec, handle, first)
            return
        name = f"sensor:{self.pipeline.name}:{spec.name}"
        while True:
            asked = time.monotonic()
            waiting = asyncio.get_running_loop().call_later(1.0, _standby, handle, name)
            try:
                async with self.store.lease(name) as lost:
                    waiting.cancel()
                    waited = time.monotonic() - asked
                    if waited >= 1.0:
                        handle.log.info(
                            "sensor_waited",
                            waiting_for="lease",
                            lease=name,
                            seconds=round(waited, 3),
                        )
                    self.leases.add(name)
                    work = self._restarting(spec, handle, first)
                    first = None
                    try:
                        if await _until_lost(work, lost):
                            return
                    finally:
                        self.leases.discard(name)
                    handle.set_health(False, "lease lost")
                    handle.log.warning("sensor_lease_lost", lease=name)
            finally:
                waiting.cancel()

    async def _rule_gauges(self) -> None:
        """Refresh the Prometheus gauges of each rule's error rate and MTTR (at a beat, at
        most every :data:`RULE_GAUGES_EVERY`: they read up to a day of runs)."""
        from eventflow.views.reliability import reliability

        if time.monotonic() - self._gauged < RULE_GAUGES_EVERY:
            return
        self._gauged = time.monotonic()

        for r in await reliability(self.pipeline, self.store):
            metrics.rule_health(
                r.rule, r.attempt_error_rate, r.run_error_rate, r.mttr_seconds, r.failing
            )

    async def _restarting(self, spec: SensorSpec, handle: SensorHandle, first: Any = None) -> None:
        """Run a sensor (``first``, then new instances); restart it with capped exponential
        backoff when it fails; stop it while it is paused."""
        failures = 0
        rng = random.Random()
        while True:
            await self.pauses.wait_resumed(spec.name, handle)
            sensor = first if first is not None else spec.plugin(spec.name, spec.config, self.env)
            first = None
            started = time.monotonic()
            try:
                if not await self.pauses.until_paused(spec.name, sensor.run(handle)):
                    continue  # paused: a new instance reads on from the cursor at the resume
                handle.log.info("sensor_finished")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() - started > SENSOR_HEALTHY_AFTER:
                    failures = 0
                failures += 1
                delay = backoff.delay(failures, first=1.0, cap=SENSOR_BACKOFF_MAX, rng=rng)
                handle.set_health(False, str(exc))
                metrics.sensor_restarted(spec.name)
                handle.log.error(
                    "sensor_failed",
                    error=str(exc),
                    error_type=type(exc).__name__,
                    failures=failures,
                    restart_in=round(delay, 2),
                )
                await asyncio.sleep(delay)


def _standby(handle: SensorHandle, lease: str) -> None:
    """The lease was not granted at once: another worker runs the sensor; say so."""
    handle.set_health(True, "standby: another worker runs this sensor")
    handle.log.info(
        "sensor_waiting",
        waiting_for="lease",
        lease=lease,
        hint="another worker holds it; this one takes the sensor over when that worker stops",
    )


async def _forever(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work``; a failure is logged by it, never stops the process (the heartbeat)."""
    with contextlib.suppress(Exception):
        await work
    await asyncio.Event().wait()


async def _until_lost(work: Coroutine[Any, Any, None], lost: asyncio.Event) -> bool:
    """Run ``work`` until it ends (True) or ``lost`` is set (cancelled; False)."""
    task = asyncio.create_task(work)
    watch = asyncio.create_task(lost.wait())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return False
    task.result()  # a failure of the sensor's supervision propagates
    return True


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
