"""The dispatcher: claims due runs, executes their tasks, records each result atomically.

A run is claimed (``pending`` -> ``running``, attempt + 1, ``eventflow.run.started`` in the
outbox) in one transaction, executed by its task runner, and its result is recorded in a
second one: ``succeeded`` with its completion event and the dataset it ``produces`` (an inbox
row the engine turns into the next rule's input), or ``pending`` with a durable
``not_before`` for the retry, or ``failed`` for good. A run that was ``running`` when the
process died goes back to ``pending`` at start-up and runs again with the same run id.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import random
import time
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from eventflow import backoff, completion, metrics
from eventflow.aio import wait_event
from eventflow.clock import SteadyClock
from eventflow.config.models import Backoff
from eventflow.crashpoints import crash_point
from eventflow.diskspace import SpaceWait, is_no_space
from eventflow.errors import StoreError, StoreFull, TaskError
from eventflow.events import JSON, format_partition
from eventflow.log import get_logger
from eventflow.payloads import InputEvent, evaluate_params, input_events, params_context
from eventflow.pipeline import PRODUCED_SENSOR_PREFIX, CompiledPipeline, RuleRuntime
from eventflow.quality import gates
from eventflow.records import (
    Changes,
    InboxItem,
    OutboxItem,
    RunNote,
    RunRecord,
    RunStatus,
    RunUpdate,
)
from eventflow.run_hooks import failure_hook, hook_params
from eventflow.types import (
    OPERATOR_CANCEL,
    RunContext,
    Store,
    TaskResult,
    TaskRunner,
    operator_cancelled,
)

Clock = Callable[[], datetime]
STORE_ATTEMPTS = 5
"""How often the dispatcher tries a store transaction that failed with a retriable error (a
shared store lost its connection mid-transaction; the next attempt reconnects)."""


def backoff_delay(policy: Backoff, attempt: int, rng: random.Random) -> timedelta:
    """The wait before the attempt after ``attempt``: exponential, capped, with equal jitter
    (between half and all of the exponential delay, so retries spread but never bunch at 0)."""
    wait = backoff.delay(
        attempt,
        first=policy.initial.total_seconds(),
        cap=policy.max.total_seconds(),
        factor=policy.multiplier,
        jitter=policy.jitter,
        rng=rng,
    )
    return timedelta(seconds=wait)


class Dispatcher:
    """Runs what the engine fired, within the global and per-rule concurrency limits."""

    def __init__(
        self,
        pipeline: CompiledPipeline,
        store: Store,
        runners: Mapping[str, TaskRunner],
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        claim_only: Collection[str] | None = None,
        store_id: str = "",
    ) -> None:
        """``claim_only``: claim runs of these rules only (``eventflow backfill``).
        ``store_id``: the store's identity, which tasks get (``RunContext.store_id``).
        ``clock``: by default a :class:`~eventflow.clock.SteadyClock`, so that setting the
        system clock back does not postpone the retries that are due."""
        self.pipeline = pipeline
        self.store = store
        self.runners = runners
        self.store_id = store_id
        self.clock = clock or SteadyClock()
        self.rng = rng or random.Random()
        self.log = get_logger(component="dispatcher")
        self.on_outbox: Callable[[], None] = lambda: None
        self.on_produced: Callable[[], None] = lambda: None
        self.on_gates: Callable[[], None] = lambda: None
        """A produced partition waits for its checks (:mod:`eventflow.quality`)."""
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._cancelling: dict[str, dict[str, JSON]] = {}
        self._cancels_checked_at = -math.inf
        """When the store was last asked for cancel requests: once per poll interval, not
        at every wake-up (a busy pipeline wakes the dispatcher at every fire)."""
        """Runs of ``_inflight`` an operator cancelled: who asked, and when."""
        self._claiming = True
        self.space = SpaceWait("dispatcher", self.log)
        self._stalled = 0
        """In-flight runs waiting for disk space to be prepared or recorded."""
        self._limits = {
            name: rule.run.concurrency
            for name, rule in pipeline.rules.items()
            if rule.run.concurrency is not None
        }
        if claim_only is not None:
            self._limits.update({name: 0 for name in pipeline.rules if name not in claim_only})
        for name, rule in pipeline.rules.items():  # runs made under a rule's former name
            if rule.renamed_from is not None and name in self._limits:
                self._limits.setdefault(rule.renamed_from, self._limits[name])

    def wake(self) -> None:
        self._wake.set()

    def cancel_requested(self) -> None:
        """An operator asked (in this process) to cancel a run: look at once, not at the next
        poll interval."""
        self._cancels_checked_at = -math.inf
        self._wake.set()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def run(self) -> None:
        """Claim and start runs until cancelled."""
        poll = self.pipeline.engine.poll_interval.total_seconds()
        while True:
            self._wake.clear()
            room = self.pipeline.engine.max_runs - self.inflight
            try:
                started = await self.claim_and_start()
            except StoreFull as exc:
                await self.space.wait("claim", exc)
                continue
            except StoreError as exc:
                if not exc.retriable:
                    raise
                self.log.warning("store_retried", operation="claim", error=str(exc))
                await asyncio.sleep(poll)
                continue
            if time.monotonic() - self._cancels_checked_at >= poll:
                await self._act_on_cancel_requests()
            if started and started == room:
                continue  # capacity ran out first: more runs may be due
            timeout = poll
            due = await self.store.next_run_due()
            if due is not None and self.inflight < self.pipeline.engine.max_runs:
                timeout = max(0.0, min(poll, (due - self.clock()).total_seconds()))
            await wait_event(self._wake, timeout)

    async def _act_on_cancel_requests(self) -> None:
        """Cancel what an operator asked to cancel (``eventflow cancel``, the API): a pending
        run at once; a run this dispatcher is running by stopping its task with
        :data:`~eventflow.types.OPERATOR_CANCEL` (the runner ends its process group or its
        downstream run). A run running on another worker is left to that worker."""
        self._cancels_checked_at = time.monotonic()
        try:
            requests = await self.store.cancel_requests()
        except StoreError as exc:
            if not exc.retriable:
                raise
            return  # asked again at the next turn of the loop
        for run in requests:
            task = self._inflight.get(run.run_id)
            if task is not None:
                if run.run_id not in self._cancelling:
                    self._cancelling[run.run_id] = dict(run.cancel_requested or {})
                    task.cancel(OPERATOR_CANCEL)
            elif run.status == "pending":
                await self._record_cancelled(run, dict(run.cancel_requested or {}), 0.0)

    async def _record_cancelled(
        self, run: RunRecord, request: Mapping[str, JSON], duration: float
    ) -> None:
        """``run`` ends ``cancelled``, with its ``eventflow.run.cancelled`` event."""
        now = self.clock()
        by = str(request.get("by") or "an operator")
        error = f"cancelled by {by}"
        event = self._run_event(completion.RUN_CANCELLED, run, now, duration=duration, error=error)
        update = RunUpdate(run.run_id, "cancelled", run.attempt, now, finished_at=now, error=error)
        changes = Changes(run_updates=[update], outbox=event)
        await self._commit(changes)
        self.log.warning(
            "run_cancelled", run_id=run.run_id, rule=run.rule, attempt=run.attempt, by=by
        )
        metrics.attempt_finished(run.rule, "cancelled", duration)
        if changes.outbox:
            self.on_outbox()

    def _run_event(
        self, type_: str, run: RunRecord, now: datetime, **data: Any
    ) -> list[OutboxItem]:
        """The outbox items of ``run``'s event of ``type_`` (one per publisher taking it)."""
        rule = self.pipeline.rules.get(self.pipeline.current_name(run.rule))
        produces = rule.produces if rule is not None else None
        event = completion.run_event(self.pipeline.name, type_, run, now, produces=produces, **data)
        return completion.route(self.pipeline, event)

    async def claim_and_start(self) -> int:
        """Claim as many due runs as there is room for and start them; returns how many."""
        capacity = self.pipeline.engine.max_runs - self.inflight
        if capacity <= 0 or not self._claiming or self._stalled:
            return 0
        now = self.clock()
        changes = Changes()
        # Durable: the attempt number a task is given must never be handed out again, even
        # after the store's server crashed (a lost claim would start the same attempt twice).
        async with self.store.transaction() as tx:
            runs = await tx.claim_runs(now, capacity, self._limits)
            for run in runs:
                changes.outbox.extend(self._run_event(completion.RUN_STARTED, run, now))
            if changes:
                await tx.apply(changes)
        self.space.cleared("claim")
        if not runs:
            return 0
        crash_point("dispatcher.after_claim")
        metrics.runs_started(runs, now)
        for run in runs:
            task = asyncio.create_task(self._execute(run), name=f"run:{run.run_id}")
            self._inflight[run.run_id] = task
            task.add_done_callback(functools.partial(self._done, run.run_id))
        if changes.outbox:
            self.on_outbox()
        return len(runs)

    def _done(self, run_id: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(run_id, None)
        self._wake.set()

    async def drain(self, timeout: float) -> None:
        """Stop claiming; let in-flight runs finish for ``timeout`` seconds, then stop them.
        A stopped run goes back to ``pending`` and runs again at the next start."""
        self._claiming = False
        tasks = list(self._inflight.values())
        if not tasks:
            return
        self.log.info("drain_waiting", runs=len(tasks), timeout=timeout)
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            self.log.warning("drain_stopped_runs", runs=len(pending))

    # -- one attempt -----------------------------------------------------------------------

    async def _execute(self, run: RunRecord) -> None:
        """One attempt of ``run``; stopped by a shutdown, it goes back to ``pending``; by an
        operator's cancel, it ends ``cancelled``."""
        started = time.monotonic()
        try:
            await self._attempt(run)
        except asyncio.CancelledError as exc:
            log = self.log.bind(run_id=run.run_id, rule=run.rule, attempt=run.attempt)
            if not operator_cancelled(exc):
                log.warning("run_stopped", reason="shutdown")
                await asyncio.shield(self._requeue(run))
                raise
            request = self._cancelling.pop(run.run_id, None) or {}
            await asyncio.shield(self._record_cancelled(run, request, time.monotonic() - started))

    async def _attempt(self, run: RunRecord) -> None:
        log = self.log.bind(run_id=run.run_id, rule=run.rule, attempt=run.attempt)
        name = self.pipeline.current_name(run.rule)  # a rule renamed since the run was made
        rule, runner = self.pipeline.rules.get(name), self.runners.get(name)
        if rule is None or runner is None:
            result = TaskResult(False, f"rule {run.rule!r} is no longer in the pipeline")
            await self._record(run, None, result, 0.0)
            return
        try:
            events = await self._input_events(run)
            ctx = await self._context_when_space(run, rule, events)
        except (OSError, StoreError) as exc:
            await self._record(run, rule, TaskResult(False, f"cannot prepare the run: {exc}"), 0)
            return
        except TaskError as exc:  # a param that cannot be evaluated over these inputs
            await self._record(run, rule, TaskResult(False, str(exc)), 0)
            return
        log.info("run_started", partition=dict(run.partition))
        started = time.monotonic()
        try:
            result = await runner.run(ctx)
        except Exception as exc:  # a runner bug must not take the dispatcher down
            log.exception("run_crashed")
            result = TaskResult(False, f"{type(exc).__name__}: {exc}")
        crash_point("dispatcher.after_task")
        await self._record(run, rule, result, time.monotonic() - started)

    async def _context_when_space(
        self, run: RunRecord, rule: RuleRuntime, events: tuple[InputEvent, ...]
    ) -> RunContext:
        """The run's context; while the runs directory is full the run stays claimed (its
        attempt is not used up) and claiming stops, until its files can be written."""
        while True:
            try:
                # A small file written inline: cheaper than a round trip to a worker thread,
                # and on the latency path of every run.
                ctx = self._context(run, rule, events)
            except OSError as exc:
                if not is_no_space(exc):
                    raise
                await self._wait_for_space("prepare", exc)
                continue
            self.space.cleared("prepare")
            return ctx

    async def _wait_for_space(self, operation: str, exc: BaseException) -> None:
        """Wait for space with a run in hand; no run is claimed meanwhile."""
        self._stalled += 1
        try:
            await self.space.wait(operation, exc)
        finally:
            self._stalled -= 1

    async def _input_events(self, run: RunRecord) -> tuple[InputEvent, ...]:
        """The run's inputs with their payloads, read from the event log in one store read
        (the same for every attempt; an event that ``retention`` pruned is marked so)."""
        if not run.inputs:
            return ()
        stored = await self.store.get_events({r.event_id for r in run.inputs})
        by_id = {e.id: e for e in stored}
        return input_events(run.inputs, by_id, self.pipeline.engine.payload_max_bytes)

    def _context(
        self, run: RunRecord, rule: RuleRuntime, events: tuple[InputEvent, ...]
    ) -> RunContext:
        items = [e.to_dict() for e in events]
        params = hook_params(run.notes)  # an on_failure / on_missed run: what it reports
        if rule.params:  # before any file is written: a failed param fails the attempt
            params |= evaluate_params(rule.params, params_context(items, run.partition))
        folder = self.pipeline.runs_dir / run.run_id
        folder.mkdir(parents=True, exist_ok=True)
        # Written in place, not renamed: the task starts only after the write completed, and
        # an attempt after a crash rewrites it (one metadata operation less per run).
        events_file = folder / "events.json"
        events_file.write_text(json.dumps(items, indent=1, default=str))
        variables = {
            **run.partition,
            "run_id": run.run_id,
            "rule": run.rule,
            "attempt": str(run.attempt),
            "partition": format_partition(run.partition),
            **params,
        }
        timeout = rule.run.timeout.total_seconds() if rule.run.timeout else None
        return RunContext(
            run_id=run.run_id,
            rule=run.rule,
            attempt=run.attempt,
            partition=dict(run.partition),
            inputs=run.inputs,
            events_file=events_file,
            stdout_path=folder / f"attempt-{run.attempt}.stdout",
            stderr_path=folder / f"attempt-{run.attempt}.stderr",
            timeout=timeout,
            log_max_bytes=self.pipeline.engine.log_max_bytes,
            variables=variables,
            events=events,
            params=params,
            pipeline=self.pipeline.name,
            store_id=self.store_id,
            notes=dict(run.notes),
            note=functools.partial(self._note, run.run_id),
        )

    async def _note(self, run_id: str, facts: Mapping[str, JSON], *, durable: bool = True) -> None:
        """``RunContext.note``: the facts are committed before the runner goes on (a process
        group noted before a crash is what lets the next attempt end it)."""
        await self._commit(Changes(run_notes=[RunNote(run_id, dict(facts))]), durable=durable)

    async def _requeue(self, run: RunRecord) -> None:
        now = self.clock()
        update = RunUpdate(run.run_id, "pending", run.attempt, now, error="stopped at shutdown")
        await self._commit(Changes(run_updates=[update]))

    async def _commit(self, changes: Changes, *, durable: bool = False) -> None:
        """Apply ``changes`` in a transaction of their own, again after a retriable store
        error (writing a run's result twice is harmless: same status, and outbox events
        keep their ids; a note written twice is the same note)."""
        attempt = 0
        while True:
            try:
                async with self.store.transaction(durable=durable) as tx:
                    await tx.apply(changes)
                self.space.cleared("result")
                return
            except StoreFull as exc:  # kept until there is room; a drain gives up
                if not self._claiming:
                    raise
                await self._wait_for_space("result", exc)
                continue
            except StoreError as exc:
                attempt += 1
                if not exc.retriable or attempt == STORE_ATTEMPTS:
                    raise
                self.log.warning("store_retried", operation="result", error=str(exc))
                await asyncio.sleep(0.1 * 2**attempt)

    async def _record(
        self, run: RunRecord, rule: RuleRuntime | None, result: TaskResult, duration: float
    ) -> None:
        now = self.clock()
        changes = Changes()
        log = self.log.bind(
            run_id=run.run_id, rule=run.rule, attempt=run.attempt, partition=dict(run.partition)
        )
        not_before: datetime | None = None
        status: RunStatus
        if result.ok:
            status, type_ = "succeeded", completion.RUN_SUCCEEDED
            if rule is not None and rule.produces and rule.checks is not None:
                changes.gates.append(gates.held(run, rule.produces, now))
            elif rule is not None and rule.produces:
                changes.inbox_add.append(
                    InboxItem(
                        observation_sensor=PRODUCED_SENSOR_PREFIX + rule.name,
                        dataset=rule.produces,
                        partition=dict(run.partition),
                        position={"run_id": run.run_id},
                        payload={"run_id": run.run_id, "rule": run.rule, "attempt": run.attempt},
                        created_at=now,
                    )
                )
            log.info("run_succeeded", duration=round(duration, 3))
        elif rule is not None and run.attempt < run.max_attempts:
            status, type_ = "pending", completion.RUN_RETRYING
            not_before = now + backoff_delay(rule.run.backoff, run.attempt, self.rng)
            log.warning("run_retrying", error=result.detail, next_attempt_at=not_before.isoformat())
        else:
            status, type_ = "failed", completion.RUN_FAILED
            log.error("run_failed", error=result.detail)
            hook = failure_hook(self.pipeline, run, result.detail, now)
            if hook is not None:  # `on_failure:`, committed with the failure
                changes.runs.append(hook[0])
                changes.run_notes.append(hook[1])
                log.info("hook_scheduled", hook="on_failure", hook_run_id=hook[0].run_id)
        error = None if result.ok else result.detail
        finished_at = None if status == "pending" else now
        changes.run_updates.append(
            RunUpdate(
                run.run_id,
                status,
                run.attempt,
                now,
                not_before=not_before,
                finished_at=finished_at,
                error=error,
                output=result.output,
            )
        )
        changes.outbox.extend(
            self._run_event(
                type_,
                run,
                now,
                duration=duration,
                error=error,
                output=result.output,
                next_attempt_at=not_before,
            )
        )
        await self._commit(changes)
        crash_point("dispatcher.after_result")
        metrics.attempt_finished(run.rule, type_.rsplit(".", 1)[-1], duration)
        if changes.runs:
            self.wake()
        if changes.inbox_add:
            self.on_produced()
        if changes.gates:
            self.on_gates()
        if changes.outbox:
            self.on_outbox()
