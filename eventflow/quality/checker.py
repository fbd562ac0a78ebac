"""The checker: runs the checks of the partitions waiting for them, records each outcome.

Pending gates are *claimed* by the store at once (:meth:`~eventflow.types.Store.claim_gates`:
``running``, evaluation + 1, this worker, a lease of :data:`CLAIM_LEASE` renewed while the
checks run), so two workers sharing a PostgreSQL store never run the same gate's checks.
The rule's checks run, each with its retries and timeout; the outcome is recorded in one
transaction with what it causes (:func:`~eventflow.quality.gates.decided`). A gate left
``running`` by a dead worker is claimed again when its lease expires (at once by the next
process on a single-worker store, SQLite or memory), so a crash never skips a check. An
operator's re-run makes a gate ``pending`` from another process: the checker looks for
pending gates at every poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from eventflow import metrics
from eventflow.aio import wait_event
from eventflow.crashpoints import crash_point
from eventflow.errors import StoreError
from eventflow.events import JSON, utcnow
from eventflow.log import get_logger
from eventflow.payloads import input_events
from eventflow.pipeline import CompiledPipeline
from eventflow.quality import gates
from eventflow.quality.sources import Target, run_check
from eventflow.quality.suite import CheckSuite
from eventflow.records import CheckGate, RunRecord
from eventflow.types import ObjectSensor, PluginEnv, Store, TaskRunner

CONCURRENCY = 4
"""Gates checked at once."""
CLAIM_LEASE = timedelta(seconds=30)
"""How long a claim holds without renewal, by default: a dead worker's gates are checked
again by another worker this long after its last renewal (every third of it). On
PostgreSQL the store's worker lease (its ``lease=`` DSN option) is used instead."""


def check_runners(pipeline: CompiledPipeline, env: PluginEnv) -> dict[str, TaskRunner]:
    """A task runner per ``command`` and ``python`` check, keyed ``rule/check``."""
    runners: dict[str, TaskRunner] = {}
    for name, rule in pipeline.rules.items():
        for spec in rule.checks.checks if rule.checks is not None else ():
            if spec.task_plugin is not None:
                runners[f"{name}/{spec.name}"] = spec.task_plugin(spec.task_config, env)
    return runners


def object_sensors(pipeline: CompiledPipeline, env: PluginEnv) -> dict[str, ObjectSensor]:
    """An instance of each sensor an ``exists`` check looks for objects through (its client
    settings; it is not run), by name."""
    wanted = {
        name
        for rule in pipeline.rules.values()
        for spec in (rule.checks.checks if rule.checks is not None else ())
        for location in spec.locations
        for name in location.sensors
    }
    out: dict[str, ObjectSensor] = {}
    for name in sorted(wanted):
        spec = pipeline.sensors[name]
        out[name] = spec.plugin(spec.name, spec.config, env)
    return out


class Checker:
    """Checks produced partitions until cancelled."""

    def __init__(
        self,
        pipeline: CompiledPipeline,
        store: Store,
        runners: Mapping[str, TaskRunner],
        *,
        objects: Mapping[str, ObjectSensor] | None = None,
        claim_lease: timedelta = CLAIM_LEASE,
        rng: random.Random | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.runners = runners
        self.objects = dict(objects or {})
        self.claim_lease = claim_lease
        self.rng = rng or random.Random()
        self.log = get_logger(component="checks")
        self.on_produced: Callable[[], None] = lambda: None
        self.on_outbox: Callable[[], None] = lambda: None
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}

    @property
    def active(self) -> bool:
        """Whether any rule has checks (else the checker need not run)."""
        return any(rule.checks is not None for rule in self.pipeline.rules.values())

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        poll = self.pipeline.engine.poll_interval.total_seconds()
        renew_every = self.claim_lease.total_seconds() / 3
        renewed = utcnow()
        while True:
            self._wake.clear()
            try:
                if self._inflight and utcnow() - renewed >= timedelta(seconds=renew_every):
                    renewed = utcnow()
                    await self._renew(renewed)
                await self._start_pending()
            except StoreError as exc:
                if not exc.retriable:
                    raise
                self.log.warning("store_retried", operation="checks", error=str(exc))
            await wait_event(self._wake, min(poll, renew_every) if self._inflight else poll)

    async def drain(self) -> None:
        """Stop the checks under way: their gates stay ``running`` with their claims
        released (expired now), so the next start, or another worker, checks them again."""
        tasks = list(self._inflight.values())
        held = set(self._inflight)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        with contextlib.suppress(Exception):  # else the claims expire on their own
            await self.store.renew_gates(held, utcnow())

    async def _start_pending(self) -> None:
        room = CONCURRENCY - len(self._inflight)
        if room <= 0:
            return
        now = utcnow()
        claimed = await self.store.claim_gates(now, now + self.claim_lease, room)
        taken = [gate.run_id for gate, was in claimed if was == "running"]
        if taken:
            self.log.warning("checks_recovered", runs=taken)
        for gate, _ in claimed:
            crash_point("checks.after_claim")
            task = asyncio.create_task(self._check(gate), name=f"checks:{gate.run_id}")
            self._inflight[gate.run_id] = task
            task.add_done_callback(functools.partial(self._done, gate.run_id))

    async def _renew(self, now: datetime) -> None:
        """Extend the claims of the gates being checked; one taken over by another worker
        (this one stalled past its lease) is left to it."""
        held = set(self._inflight)
        kept = await self.store.renew_gates(held, now + self.claim_lease)
        for run_id in held - kept:
            self.log.warning("checks_claim_lost", run_id=run_id)

    def _done(self, run_id: str, task: asyncio.Task[None]) -> None:
        self._inflight.pop(run_id, None)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("checks_crashed", run_id=run_id, error=repr(task.exception()))
        self._wake.set()

    async def _check(self, gate: CheckGate) -> None:
        log = self.log.bind(run_id=gate.run_id, rule=gate.rule, partition=dict(gate.partition))
        rule = self.pipeline.rules.get(gate.rule)
        run = await self.store.get_run(gate.run_id)
        suite = rule.checks if rule is not None else None
        if suite is None or run is None:
            detail = "the rule has no checks any more" if run is not None else "no such run"
            results = [_unrunnable(detail)]
        else:
            results = await self._evaluate(gate, suite, run)
        crash_point("checks.before_record")
        # Read and written in one transaction that holds the gate: an operator's override or
        # rerun committed meanwhile supersedes these results, one still to come waits.
        async with self.store.transaction() as tx:
            current = await tx.get_gate(gate.run_id)
            if current is None or current.status != "running" or current.attempt != gate.attempt:
                log.info("checks_superseded", status=current.status if current else None)
                return
            changes = gates.decided(self.pipeline, current, results, run, utcnow())
            await tx.apply(changes)
        decided = changes.gates[0]
        for r in results:
            metrics.check_finished(
                gate.rule, str(r["check"]), str(r["severity"]), bool(r["passed"])
            )
            if not r["passed"]:
                log.warning(
                    "check_failed",
                    check=r["check"],
                    severity=r["severity"],
                    detail=r.get("detail"),
                    value=r.get("value"),
                )
        metrics.gate_decided(gate.rule, decided.status)
        if decided.status == "passed":
            log.info("checks_passed", dataset=gate.dataset, evaluation=gate.attempt)
            self.on_produced()
        else:
            log.warning("partition_blocked", dataset=gate.dataset, checks=decided.blocking)
        if changes.outbox:
            self.on_outbox()

    async def _evaluate(
        self, gate: CheckGate, suite: CheckSuite, run: RunRecord
    ) -> list[dict[str, JSON]]:
        stored = await self.store.get_events({r.event_id for r in run.inputs})
        events = input_events(
            run.inputs, {e.id: e for e in stored}, self.pipeline.engine.payload_max_bytes
        )
        target = Target(
            run=run,
            evaluation=gate.attempt,
            events=events,
            base_dir=self.pipeline.base_dir,
            folder=self.pipeline.runs_dir / run.run_id / "checks",
            pipeline=self.pipeline.name,
            log_max_bytes=self.pipeline.engine.log_max_bytes,
            objects=self.objects,
        )
        previous = await self._previous(gate, suite)
        jobs = [
            run_check(
                spec,
                suite,
                target,
                self.runners.get(f"{gate.rule}/{spec.name}"),
                previous.get(spec.name),
                utcnow,
                self.rng,
            )
            for spec in suite.checks
        ]
        return list(await asyncio.gather(*jobs))

    async def _previous(self, gate: CheckGate, suite: CheckSuite) -> dict[str, JSON]:
        """Each ``change`` check's value for the rule's previous partition that passed."""
        wanted = {s.name for s in suite.checks if s.config.expect and s.config.expect.change}
        if not wanted:
            return {}
        found: dict[str, JSON] = {}
        for other in await self.store.list_gates(rule=gate.rule, limit=50):
            if other.key == gate.key or other.status not in ("passed", "overridden"):
                continue
            for r in other.results:
                name = str(r.get("check"))
                if name in wanted and name not in found and r.get("value") is not None:
                    found[name] = r["value"]
            if len(found) == len(wanted):
                break
        return found


def _unrunnable(detail: str) -> dict[str, JSON]:
    """The result of checks that cannot run (the rule lost its checks, the run is gone)."""
    return {
        "check": "-",
        "kind": "value",
        "severity": "error",
        "passed": False,
        "value": None,
        "attempts": 1,
        "duration": 0.0,
        "at": utcnow().isoformat(),
        "detail": detail,
    }
