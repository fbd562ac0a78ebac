"""The checker: runs the checks of the partitions waiting for them, records each outcome.

A pending gate is claimed (``running``, evaluation + 1) in a transaction of its own; its
rule's checks run at once, each with its retries and timeout; the outcome is recorded in
one transaction with what it causes (:func:`~eventflow.quality.gates.decided`). A gate left
``running`` by a dead process goes back to ``pending`` at start-up and is checked again, so
a crash never skips a check. An operator's re-run makes a gate ``pending`` from another
process: the checker looks for pending gates at every poll interval.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable, Mapping
from dataclasses import replace

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
from eventflow.records import Changes, CheckGate, RunRecord
from eventflow.types import PluginEnv, Store, TaskRunner

CONCURRENCY = 4
"""Gates checked at once."""


def check_runners(pipeline: CompiledPipeline, env: PluginEnv) -> dict[str, TaskRunner]:
    """A task runner per ``command`` and ``python`` check, keyed ``rule/check``."""
    runners: dict[str, TaskRunner] = {}
    for name, rule in pipeline.rules.items():
        for spec in rule.checks.checks if rule.checks is not None else ():
            if spec.task_plugin is not None:
                runners[f"{name}/{spec.name}"] = spec.task_plugin(spec.task_config, env)
    return runners


class Checker:
    """Checks produced partitions until cancelled."""

    def __init__(
        self,
        pipeline: CompiledPipeline,
        store: Store,
        runners: Mapping[str, TaskRunner],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.runners = runners
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

    async def recover(self) -> list[str]:
        """At start-up: gates a dead process left ``running`` are checked again."""
        now = utcnow()
        stale = await self.store.list_gates(status="running", limit=10_000)
        if stale:
            back = [replace(g, status="pending", updated_at=now) for g in stale]
            async with self.store.transaction() as tx:
                await tx.apply(Changes(gates=back))
            self.log.warning("checks_recovered", runs=[g.run_id for g in stale])
        return [g.run_id for g in stale]

    async def run(self) -> None:
        poll = self.pipeline.engine.poll_interval.total_seconds()
        while True:
            self._wake.clear()
            try:
                await self._start_pending()
            except StoreError as exc:
                if not exc.retriable:
                    raise
                self.log.warning("store_retried", operation="checks", error=str(exc))
            await wait_event(self._wake, poll)

    async def drain(self) -> None:
        """Stop the checks under way: their gates stay ``running`` and are checked again
        at the next start."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _start_pending(self) -> None:
        room = CONCURRENCY - len(self._inflight)
        if room <= 0:
            return
        pending = await self.store.list_gates(status="pending", limit=room + len(self._inflight))
        for gate in reversed(pending):  # oldest first
            if gate.run_id in self._inflight or room <= 0:
                continue
            room -= 1
            claimed = replace(gate, status="running", attempt=gate.attempt + 1, updated_at=utcnow())
            async with self.store.transaction() as tx:
                await tx.apply(Changes(gates=[claimed]))
            crash_point("checks.after_claim")
            task = asyncio.create_task(self._check(claimed), name=f"checks:{gate.run_id}")
            self._inflight[gate.run_id] = task
            task.add_done_callback(functools.partial(self._done, gate.run_id))

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
        current = await gates.get_gate(self.store, gate.run_id)
        if current is None or current.status != "running" or current.attempt != gate.attempt:
            log.info("checks_superseded", status=current.status if current else None)
            return
        changes = gates.decided(self.pipeline, gate, results, run, utcnow())
        async with self.store.transaction() as tx:
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
