"""The running pipeline's side of a live backfill: carry out the requests in the store.

``eventflow run`` starts one :class:`BackfillWorker`. It looks for pending and running
:class:`~eventflow.backfill_requests.BackfillRequest` rows every poll interval (at once when
its own API takes one), oldest first, one at a time, and for each:

1. **plans** it as ``eventflow backfill`` does (:func:`eventflow.backfill.plan`: the sensors'
   listings and the event log through a scratch engine);
2. **fires** the partitions in key order, a small chunk per transaction at the request's
   rate (``--rate``, else ``engine.backfill_rate``) at most. Each chunk is decided again,
   then confirmed and written while the engine is held between two batches (the engine is
   otherwise the only writer of rule state), so a partition that fired live meanwhile is
   skipped, never fired twice. The chunk's commit also writes the request's cursor (the
   last partition fired and the counts) as a cursor row of the pseudo-sensor
   ``backfill:ID``: after a SIGKILL the request resumes after that partition. Live work
   goes first: a chunk fires only when the rule's unfinished runs leave it room under
   ``engine.backfill_max_runs``, and the wait after a chunk is at least as long as the
   chunk took, and longer while the event loop runs late (:class:`_Pace`);
3. leaves the runs to the pipeline's own dispatcher, which executes them with the live ones
   (the rule's ``run.concurrency`` and ``engine.max_runs`` apply), and records its progress
   in the row (``fired``, ``skipped``, ``incomplete``; ``message`` says why a backfill found
   nothing).

A cancel request is looked at before each chunk: what fired stays fired (``eventflow
cancel`` stops runs), nothing more fires. Several workers on PostgreSQL: one holds the
``backfills`` lease and does the backfills.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from structlog.typing import FilteringBoundLogger

from eventflow import backfill as bf
from eventflow.aio import wait_event
from eventflow.backfill_requests import BackfillRequest
from eventflow.crashpoints import crash_point
from eventflow.errors import EventflowError, StoreError
from eventflow.events import JSON, utcnow
from eventflow.log import get_logger
from eventflow.pipeline import CompiledPipeline, RuleRuntime
from eventflow.types import Store

if TYPE_CHECKING:
    from eventflow.engine import Engine

CHUNKS_PER_SECOND = 10
"""A rate is reached in this many chunks a second (fewer when it is below that)."""
MAX_CHUNK = 100
PLAN_BATCH = 50
"""Observations the plan's scratch engine evaluates before the live work goes on."""
ROOM_POLL = 0.05
"""Seconds between two looks at the rule's unfinished runs while they fill
``engine.backfill_max_runs``."""
LATE = 0.01
"""Seconds a backfill's wait may end late before it takes the process for busy."""
SLOWEST = 16.0
"""The most a busy process slows a backfill down (its rate divided by this)."""
PROGRESS_EVERY = 0.5
"""Seconds between two updates of the request's row (and looks at its cancel request); the
position committed with each chunk is what a restart resumes from."""


def cursor_sensor(backfill_id: str) -> str:
    """The pseudo-sensor whose cursor row holds a backfill's position."""
    return f"backfill:{backfill_id}"


def chunk_size(rate: float) -> int:
    return max(1, min(MAX_CHUNK, math.ceil(rate / CHUNKS_PER_SECOND)))


class BackfillWorker:
    """Carries out the store's backfill requests inside ``eventflow run``."""

    def __init__(
        self,
        pipeline: CompiledPipeline,
        store: Store,
        engine: Engine,
        on_runs: Callable[[], None] = lambda: None,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.engine = engine
        self.on_runs = on_runs
        """Called after a chunk created runs (wakes the dispatcher)."""
        self.log = get_logger(component="backfill")
        self._wake = asyncio.Event()
        self._lost: asyncio.Event | None = None
        """Set when this worker lost the backfills' lease (another one may go on)."""

    def wake(self) -> None:
        """Look at the requests now (one was submitted through this process's API)."""
        self._wake.set()

    async def run(self) -> None:
        """Until cancelled: hold the lease, carry out the requests, wait for the next."""
        poll = self.pipeline.engine.poll_interval.total_seconds()
        while True:
            try:
                async with self.store.lease(f"backfills:{self.pipeline.name}") as lost:
                    self._lost = lost
                    while not lost.is_set():
                        for request in reversed(await self.store.list_backfills(status="active")):
                            await self.carry_out(request)
                        await wait_event(self._wake, poll)
                        self._wake.clear()
            except EventflowError as exc:  # the store: tried again, the request resumes
                self.log.warning("backfill_interrupted", error=str(exc))
                await asyncio.sleep(max(poll, 1.0))

    async def carry_out(self, request: BackfillRequest) -> BackfillRequest:
        """Plan and fire one request to its end (done, failed or cancelled)."""
        log = self.log.bind(backfill=request.id, rule=request.rule)
        try:
            return await self._carry_out(request, log)
        except StoreError:
            raise  # the store's trouble, not the request's: it resumes later
        except Exception as exc:  # the request's trouble: it fails, the worker goes on
            detail = str(exc) if isinstance(exc, EventflowError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, EventflowError):
                log.error("backfill_failed", error=detail)
            else:  # a bug: its traceback too
                log.exception("backfill_failed", error=detail)
            now = utcnow()
            failed = request.progressed(
                status="failed", message=detail, updated_at=now, finished_at=now
            )
            await self.store.save_backfill(failed)
            return failed

    async def _carry_out(
        self, request: BackfillRequest, log: FilteringBoundLogger
    ) -> BackfillRequest:
        pipeline, store = self.pipeline, self.store
        rule = pipeline.rules.get(request.rule)
        if rule is None:
            raise bf.BackfillError(f"rule {request.rule!r} is no longer in the pipeline")
        if request.cancel_requested:
            return await self._cancelled(request, log)
        by = rule.spec.by
        lo, hi = bf.parse_bound(request.lo, by, "from"), bf.parse_bound(request.hi, by, "to")
        if request.status == "pending":
            log.info("backfill_started", requested_by=request.requested_by, lo=request.lo,
                     hi=request.hi, force=request.force)  # fmt: skip
        request = request.progressed(status="running", updated_at=utcnow())
        await store.save_backfill(request)
        the_plan = await bf.plan(pipeline, store, rule.name, lo, hi, force=request.force,
                                 list_sources=request.list_sources,
                                 batch_size=PLAN_BATCH)  # fmt: skip
        name = cursor_sensor(request.id)
        at = _Position.of((await store.load_cursors(name)).get("after"))
        if at.after is None:  # the first plan: what the counts are of
            at.planned = len(the_plan.of("run"))
            at.base_skipped = len(the_plan.of("skip", "resume"))
        todo = [i for i in the_plan.of("run")
                if at.after is None or bf.sort_key(i.partition, by) > at.after]  # fmt: skip
        request = request.progressed(
            planned=at.planned, fired=at.fired, skipped=at.base_skipped + at.skipped,
            incomplete=len(the_plan.of("incomplete")), message=the_plan.why_empty,
            updated_at=utcnow(),
        )  # fmt: skip
        await store.save_backfill(request)
        rate = request.rate or pipeline.engine.backfill_rate
        room = pipeline.engine.backfill_runs_limit
        size = min(chunk_size(rate), room)
        loop = asyncio.get_running_loop()
        looked = -math.inf
        pace = _Pace()
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            while True:  # until the rule's runs leave room for the chunk's
                if self._lost is not None and self._lost.is_set():
                    raise StoreError(
                        "the backfills' lease was lost (the store's connection?): the request"
                        " goes on where its position is, here or in another worker"
                    )
                if loop.time() - looked >= PROGRESS_EVERY:
                    looked = loop.time()
                    current = await store.get_backfill(request.id)
                    if current is not None and current.cancel_requested:
                        cancelled = request.progressed(
                            cancel_requested=current.cancel_requested, fired=at.fired
                        )
                        return await self._cancelled(cancelled, log)
                    if start:
                        request = request.progressed(
                            fired=at.fired, skipped=at.base_skipped + at.skipped,
                            updated_at=utcnow(),
                        )  # fmt: skip
                        await store.save_backfill(request)
                if await store.unfinished_runs(rule.name) + len(chunk) <= room:
                    break
                await asyncio.sleep(ROOM_POLL)
            began = loop.time()
            fired = await self._fire(the_plan, rule, chunk, at, request.force, name)
            crash_point("backfill.after_commit")
            if fired:
                self.on_runs()
            # The rate's pace, and at least as long as the chunk took: on a host too slow or
            # too busy for the rate (the chunk's reads and commit wait for the CPU and the
            # store) the backfill slows down, busy half the time at most, instead of going
            # from one chunk to the next with the engine held at each.
            took = loop.time() - began
            await pace.pause(max(len(chunk) / rate - took, took))
        request = request.progressed(fired=at.fired, skipped=at.base_skipped + at.skipped)
        now = utcnow()
        request = request.progressed(
            status="done", skipped=at.base_skipped + at.planned - at.fired,
            updated_at=now, finished_at=now,
        )  # fmt: skip
        await store.save_backfill(request)
        await store.delete_cursors(name, ["after"])
        log.info("backfill_finished", planned=request.planned, fired=request.fired,
                 skipped=request.skipped, incomplete=request.incomplete,
                 why_empty=request.message)  # fmt: skip
        return request

    async def _fire(
        self,
        the_plan: bf.Plan,
        rule: RuleRuntime,
        chunk: list[bf.Item],
        at: _Position,
        force: bool,
        cursor_name: str,
    ) -> int:
        """Decide the chunk again and fire it with the new position in one commit, the
        engine held; ``at`` moves on. A partition that fired live meanwhile is skipped.

        The decisions are made before the engine is held; held, one read of the chunk's rule
        state confirms them (the engine is the only writer of rule state, and fires by
        writing it): a partition whose state changed since is decided again. The engine
        waits for that read and the commit only. The commit is not flushed to disk (a power
        cut may lose it with the position it writes, and the chunk fires again with the
        same run ids); claiming a run flushes it. Returns how many fired."""
        store, fires = self.store, the_plan.fires
        keys = [(rule.name, i.key) for i in chunk]
        seen = await store.committed_matches(keys)
        decided = [await bf.decide(store, rule, fires[i.key], force) for i in chunk]
        async with self.engine.held():
            current = await store.committed_matches(keys)
            fresh = [
                d if current.get(k) == seen.get(k) else await bf.decide(store, rule, fire, force)
                for k, d, fire in zip(keys, decided, (fires[i.key] for i in chunk), strict=True)
            ]
            firing = [i for i in fresh if i.action == "run"]
            version = self.pipeline.version.rule(rule.name)
            changes = bf.fire_changes(rule, the_plan, firing, utcnow(), version)
            moved = replace(
                at,
                after=bf.sort_key(chunk[-1].partition, rule.spec.by),
                fired=at.fired + len(firing),
                skipped=at.skipped + len(chunk) - len(firing),
            )
            changes.cursors[(cursor_name, "after")] = moved.to_json()
            async with store.transaction(durable=False) as tx:
                crash_point("backfill.before_commit")
                await tx.apply(changes)
        at.after, at.fired, at.skipped = moved.after, moved.fired, moved.skipped
        return len(firing)

    async def _cancelled(
        self, request: BackfillRequest, log: FilteringBoundLogger
    ) -> BackfillRequest:
        now = utcnow()
        request = request.progressed(status="cancelled", updated_at=now, finished_at=now)
        await self.store.save_backfill(request)
        await self.store.delete_cursors(cursor_sensor(request.id), ["after"])
        by = (request.cancel_requested or {}).get("by")
        log.info("backfill_cancelled", fired=request.fired, by=by)
        return request


@dataclass(slots=True)
class _Pace:
    """The wait after each chunk, longer while the process is behind with its live work.

    The sign is the event loop itself: a wait that ends later than asked (by more than
    :data:`LATE`) means the loop had other work queued (events to evaluate, runs to start)
    or the process waited for the CPU. Each late wait doubles the waits, up to
    :data:`SLOWEST` times the rate's; each punctual one shortens them by a tenth."""

    slower: float = 1.0

    async def pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        wait = seconds * self.slower
        began = loop.time()
        await asyncio.sleep(wait)
        if loop.time() - began - wait > LATE:
            self.slower = min(SLOWEST, self.slower * 2)
        else:
            self.slower = max(1.0, self.slower * 0.9)


@dataclass(slots=True)
class _Position:
    """Where a backfill is (after which partition) and its counts, committed with each
    chunk: the first plan's size and skips, what it fired and skipped since."""

    after: tuple[str, ...] | None = None
    planned: int = 0
    base_skipped: int = 0
    fired: int = 0
    skipped: int = 0

    @classmethod
    def of(cls, saved: JSON) -> _Position:
        if not isinstance(saved, dict) or not isinstance(saved.get("after"), list):
            return cls()
        counts = {k: saved.get(k) for k in ("planned", "base_skipped", "fired", "skipped")}
        after = saved["after"]
        assert isinstance(after, list)
        return cls(
            tuple(str(v) for v in after),
            **{k: v if isinstance(v, int) else 0 for k, v in counts.items()},
        )

    def to_json(self) -> JSON:
        return {
            "after": list(self.after or ()),
            "planned": self.planned,
            "base_skipped": self.base_skipped,
            "fired": self.fired,
            "skipped": self.skipped,
        }
