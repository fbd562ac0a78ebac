"""An in-memory state store with the SQLite store's semantics, for unit tests and fakes.

Tables are dicts of the same encoded rows the SQLite store writes (see
:mod:`eventflow.store._memory_ops`), so both stores order, compare and round-trip values
alike. A transaction writes to per-table overlays that its own reads see; commit publishes
them and an exception in the ``async with store.transaction()`` body discards them. Nothing is
kept across processes: ``memory://`` is a fresh, empty store every time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Self, TypeVar

from eventflow.backfill_requests import BackfillRequest
from eventflow.errors import ClosedError, StoreError
from eventflow.events import JSON
from eventflow.pauses import Pause, PauseAction, PauseActionName, PauseKind
from eventflow.records import (
    Changes,
    CheckGate,
    DeadLetter,
    DeadLetterStatus,
    GateStatus,
    InboxItem,
    MatchKey,
    OutboxItem,
    RunRecord,
    RunStatus,
    StoredEvent,
    Timer,
    WorkerBeat,
)
from eventflow.rules.core import MatchState
from eventflow.store import _codec as c
from eventflow.store import _gates as g
from eventflow.store import _workers, scheme_of
from eventflow.store._backfill_ops import MemoryBackfills
from eventflow.store._base import StoreLifecycle
from eventflow.store._codec import FAR_FUTURE
from eventflow.store._deadletters import DeadLetterAction
from eventflow.store._memory_ops import MemoryOps, Tables
from eventflow.store._versions import MemoryVersions
from eventflow.types import RunPosition, Transaction
from eventflow.version_records import StoreIdentity, VersionStart

T = TypeVar("T")


class _MemoryTransaction:
    """The :class:`~eventflow.types.Transaction` of a MemoryStore; usable until it exits."""

    def __init__(self, ops: MemoryOps) -> None:
        self._ops: MemoryOps | None = ops

    def _live(self) -> MemoryOps:
        if self._ops is None:
            raise ClosedError("the transaction has ended", hint="open a new one")
        return self._ops

    def _end(self) -> None:
        self._ops = None

    async def seen_events(self, ids: Collection[str]) -> set[str]:
        return self._live().seen_events(ids)

    async def get_matches(self, keys: Collection[MatchKey]) -> dict[MatchKey, MatchState]:
        return self._live().get_matches(keys)

    async def get_gate(self, run_id: str) -> CheckGate | None:
        return self._live().get_gate(run_id)

    async def claim_runs(
        self, now: datetime, limit: int, rule_limits: Mapping[str, int]
    ) -> list[RunRecord]:
        return self._live().claim_runs(now, limit, rule_limits)

    async def apply(self, changes: Changes) -> None:
        self._live().apply(changes)


class MemoryStore(StoreLifecycle):
    """The state store in dicts: same semantics as :class:`~eventflow.store.sqlite.SQLiteStore`,
    nothing durable. Transactions are serialised by an :class:`asyncio.Lock`."""

    def __init__(self) -> None:
        super().__init__()
        self._tables = Tables()
        self._versions = MemoryVersions()
        self._backfills = MemoryBackfills()
        self._workers: dict[str, WorkerBeat] = {}

    def __repr__(self) -> str:
        return f"MemoryStore(id={id(self):#x})"

    @classmethod
    def from_dsn(cls, dsn: str, base_dir: Path) -> Self:
        """``memory://``: a new, empty store (``base_dir`` is not used)."""
        if scheme_of(dsn) != "memory" or dsn.partition("://")[2]:
            raise StoreError(f"bad in-memory store DSN {dsn!r}", hint="write memory://")
        return cls()

    async def _open(self) -> None:
        return None

    async def _close(self) -> None:
        return None

    async def lock_worker(self) -> None:
        """Nothing to lock: an in-memory store belongs to one process."""
        self._check_open()

    def transaction(self, *, durable: bool = True) -> AbstractAsyncContextManager[Transaction]:
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Transaction]:
        async with self._exclusive():
            ops = MemoryOps(self._tables)
            tx = _MemoryTransaction(ops)
            try:
                yield tx
            finally:
                tx._end()
            ops.commit()
            for start in ops.starts:
                self._versions.record_start(start)

    async def _do(self, fn: Callable[[MemoryOps], T]) -> T:
        async with self._exclusive():
            ops = MemoryOps(self._tables)
            result = fn(ops)
            ops.commit()
            return result

    async def beat_worker(self, beat: WorkerBeat) -> None:
        self._check_open()
        _workers.memory_beat(self._workers, beat)

    async def list_workers(self) -> list[WorkerBeat]:
        self._check_open()
        return _workers.memory_list(self._workers)

    async def load_cursors(self, sensor: str) -> dict[str, JSON]:
        return await self._do(lambda o: o.load_cursors(sensor))

    async def delete_cursors(self, sensor: str, keys: Collection[str]) -> None:
        await self._do(lambda o: o.delete_cursors(sensor, keys))

    async def recover_running(self, now: datetime) -> list[str]:
        return await self._do(lambda o: o.recover_running(now))

    async def next_run_due(self) -> datetime | None:
        return await self._do(MemoryOps.next_run_due)

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self._do(lambda o: o.get_run(run_id))

    async def list_runs(
        self,
        *,
        rule: str | None = None,
        status: RunStatus | None = None,
        key: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        before: RunPosition | None = None,
    ) -> list[RunRecord]:
        where = c.run_filter(rule, status, key, since, until, before)
        return await self._do(lambda o: o.list_runs(where, limit))

    async def count_runs(
        self,
        *,
        rule: str | None = None,
        status: RunStatus | None = None,
        key: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        where = c.run_filter(rule, status, key, since, until)
        return await self._do(lambda o: o.count_runs(where))

    async def partition_runs(self, rule: str, key: str) -> list[RunRecord]:
        return await self._do(lambda o: o.partition_runs(rule, key))

    async def unfinished_runs(self, rule: str) -> int:
        return await self._do(lambda o: o.unfinished_runs(rule))

    async def retry_run(self, run_id: str, now: datetime) -> RunRecord:
        return await self._do(lambda o: o.retry_run(run_id, now))

    async def request_cancel(self, run_id: str, by: str, now: datetime) -> RunRecord:
        return await self._do(lambda o: o.request_cancel(run_id, by, now))

    async def cancel_requests(self) -> list[RunRecord]:
        return await self._do(lambda o: o.cancel_requests())

    async def set_pause(
        self,
        kind: PauseKind,
        name: str,
        action: PauseActionName,
        by: str,
        reason: str | None,
        now: datetime,
    ) -> PauseAction:
        return await self._do(
            lambda o: o.tables.pauses.set_pause(kind, name, action, by, reason, now)
        )

    async def pauses(self) -> list[Pause]:
        return await self._do(lambda o: o.tables.pauses.list_pauses())

    async def pause_actions(self, limit: int = 100) -> list[PauseAction]:
        return await self._do(lambda o: o.tables.pauses.list_actions(limit))

    async def save_backfill(self, request: BackfillRequest) -> None:
        await self._do(lambda o: self._backfills.save(request))

    async def get_backfill(self, backfill_id: str) -> BackfillRequest | None:
        return await self._do(lambda o: self._backfills.get(backfill_id))

    async def list_backfills(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[BackfillRequest]:
        return await self._do(lambda o: self._backfills.list(status, limit))

    async def request_backfill_cancel(
        self, backfill_id: str, by: str, now: datetime
    ) -> BackfillRequest:
        return await self._do(lambda o: self._backfills.cancel(backfill_id, by, now))

    async def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        return await self._do(lambda o: o.due_timers(now, limit))

    async def timers(self, limit: int) -> list[Timer]:
        return await self.due_timers(FAR_FUTURE, limit)

    async def next_timer_due(self) -> datetime | None:
        return await self._do(MemoryOps.next_timer_due)

    async def fetch_outbox(self, publisher: str, limit: int) -> list[OutboxItem]:
        return await self._do(lambda o: o.fetch_outbox(publisher, limit))

    async def delete_outbox(self, ids: Collection[int]) -> None:
        await self._do(lambda o: o.delete_outbox(ids))

    async def fetch_inbox(self, limit: int) -> list[InboxItem]:
        return await self._do(lambda o: o.fetch_inbox(limit))

    async def add_inbox(self, item: InboxItem) -> int:
        return await self._do(lambda o: o.add_inbox(item))

    async def list_matches(
        self,
        *,
        rule: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        partial: bool = False,
        key: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: tuple[str, str] | None = None,
    ) -> list[MatchState]:
        where = c.match_filter(rule, status, partial, key, since, until, after)
        return await self._do(lambda o: o.list_matches(where, limit))

    async def count_matches(
        self,
        *,
        rule: str | None = None,
        status: str | None = None,
        partial: bool = False,
        key: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        where = c.match_filter(rule, status, partial, key, since, until)
        return await self._do(lambda o: o.count_matches(where))

    async def committed_seen_events(self, ids: Collection[str]) -> set[str]:
        self._check_open()  # committed tables only: no lock, like a second connection
        return MemoryOps(self._tables).seen_events(ids)

    async def committed_matches(self, keys: Collection[MatchKey]) -> dict[MatchKey, MatchState]:
        self._check_open()
        return MemoryOps(self._tables).get_matches(keys)

    async def get_match(self, rule: str, key: str) -> MatchState | None:
        return await self._do(lambda o: o.get_match(rule, key))

    async def match_counts(self) -> dict[str, dict[str, int]]:
        return await self._do(MemoryOps.match_counts)

    async def get_events(self, ids: Collection[str]) -> list[StoredEvent]:
        return await self._do(lambda o: o.get_events(ids))

    async def read_events(
        self,
        *,
        since: datetime | None = None,
        sensors: Collection[str] | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[tuple[int, StoredEvent]]:
        return await self._do(lambda o: o.read_events(since, sensors, after, limit))

    async def prune_events(self, before: datetime, limit: int) -> int:
        return await self._do(lambda o: o.prune_events(before, limit))

    async def list_events(
        self,
        limit: int = 100,
        *,
        dataset: str | None = None,
        sensor: str | None = None,
        partition: Mapping[str, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
    ) -> list[StoredEvent]:
        where = c.event_filter(dataset, sensor, partition, since, until, after)
        return await self._do(lambda o: o.list_events(where, limit))

    async def count_events(
        self,
        *,
        dataset: str | None = None,
        sensor: str | None = None,
        partition: Mapping[str, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        where = c.event_filter(dataset, sensor, partition, since, until)
        return await self._do(lambda o: o.count_events(where))

    async def list_deadletters(
        self,
        limit: int = 100,
        *,
        sensor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
        status: DeadLetterStatus | None = None,
    ) -> list[DeadLetter]:
        where = c.deadletter_filter(sensor, since, until, after, status)
        return await self._do(lambda o: o.list_deadletters(where, limit))

    async def list_gates(
        self,
        *,
        rule: str | None = None,
        dataset: str | None = None,
        key: str | None = None,
        status: GateStatus | None = None,
        run_id: str | None = None,
        run_ids: Collection[str] | None = None,
        limit: int = 100,
    ) -> list[CheckGate]:
        where = g.gate_filter(
            rule=rule, dataset=dataset, key=key, status=status, run_id=run_id, run_ids=run_ids
        )
        return await self._do(lambda o: o.list_gates(where, limit))

    async def claim_gates(
        self, now: datetime, until: datetime, limit: int
    ) -> list[tuple[CheckGate, str]]:
        params = g.claim_params(self._claimant, now, until, limit)
        return await self._do(lambda o: o.claim_gates(params))

    async def renew_gates(self, run_ids: Collection[str], until: datetime) -> set[str]:
        if not run_ids:
            return set()
        params = g.renew_params(self._claimant, run_ids, until)
        return await self._do(lambda o: o.renew_gates(params))

    async def count_deadletters(
        self,
        *,
        sensor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        status: DeadLetterStatus | None = None,
    ) -> int:
        where = c.deadletter_filter(sensor, since, until, None, status)
        return await self._do(lambda o: o.count_deadletters(where))

    async def get_deadletter(self, event_id: str) -> DeadLetter | None:
        return await self._do(lambda o: o.get_deadletter(event_id))

    async def act_on_deadletter(
        self, event_id: str, action: DeadLetterAction, by: str, now: datetime
    ) -> DeadLetter:
        return await self._do(lambda o: o.act_on_deadletter(event_id, action, by, now))

    async def fetch_redrives(self, limit: int) -> list[DeadLetter]:
        return await self._do(lambda o: o.fetch_redrives(limit))

    async def counts(self) -> dict[str, int]:
        return await self._do(MemoryOps.counts)

    async def claim_identity(self, identity: StoreIdentity) -> StoreIdentity:
        return await self._do(lambda _: self._versions.claim_identity(identity))

    async def store_identity(self) -> StoreIdentity | None:
        return await self._do(lambda _: self._versions.identity)

    async def record_start(self, start: VersionStart) -> None:
        await self._do(lambda _: self._versions.record_start(start))

    async def list_starts(
        self, limit: int = 100, *, before: int | None = None
    ) -> list[VersionStart]:
        return await self._do(lambda _: self._versions.list_starts(limit, before))

    async def count_starts(self) -> int:
        return await self._do(lambda _: len(self._versions.starts))
