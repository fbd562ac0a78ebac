"""The default state store: one SQLite file, embedded, durable, zero set-up.

A dedicated thread does what may wait: opening the file, ``COMMIT`` (the fsync and the WAL
checkpoint), a ``BEGIN IMMEDIATE`` that finds another process holding the write lock (it is
tried once without waiting first), and the stand-alone operations, each one hop through
``loop.run_in_executor``. The statements inside a transaction (the engine's inserts, the
dispatcher's claim) run on the caller's thread, the event loop: they are CPU work on pages
in the connection's cache, and on the thread they made both threads fight for the GIL row by
row (sqlite3 releases and takes it back around every row of ``executemany``). Measured on
the engine benchmark: 21,500 events/s with them on the thread, 25,500 on the loop. A hop
always runs once submitted, even if its caller is cancelled, and hops run in order: a
cancelled transaction is rolled back before the next operation starts. The file is in WAL
mode, so ``eventflow status`` and friends read from other processes while ``eventflow run``
writes, and ``busy_timeout`` (10 s) makes a writer wait for another's lock instead of
failing. Every commit is durable (``synchronous=FULL``) unless the DSN says otherwise:

    sqlite:///.eventflow/state.db                     relative to the pipeline's directory
    sqlite:////var/lib/eventflow/state.db             absolute
    sqlite:///state.db?synchronous=normal&busy_timeout=30

Transactions are ``BEGIN IMMEDIATE``: the write lock is taken at the start, so a
transaction never fails half-way for a lock. Datetimes are stored as sortable UTC text and
JSON as compact text (see :mod:`eventflow.store._codec`); SQL lives in ``sql/queries.sql``
and ``sql/migrations/``. sqlite3 errors leave this module as StoreError, raised from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO, Any, Concatenate, Literal, ParamSpec, Self, TypeVar, cast, get_args
from urllib.parse import unquote

from eventflow.backfill_requests import BackfillRequest
from eventflow.errors import ClosedError, StoreError, StoreFull, WorkerBusy
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
from eventflow.store import _backfill_ops as bo
from eventflow.store import _codec as c
from eventflow.store import _gates as g
from eventflow.store import _versions as v
from eventflow.store import _workers
from eventflow.store import dsn as dsn_options
from eventflow.store._base import StoreLifecycle
from eventflow.store._codec import FAR_FUTURE
from eventflow.store._deadletters import DeadLetterAction
from eventflow.store._sqlite_ops import SQLiteOps
from eventflow.store._sqlite_sql import migrate
from eventflow.types import RunPosition, Transaction
from eventflow.version_records import StoreIdentity, VersionStart

T = TypeVar("T")
P = ParamSpec("P")
Synchronous = Literal["off", "normal", "full", "extra"]

CACHE_KIB = 65536
"""Page cache per connection (64 MiB, grown only as used): keeps the B-trees that a batch
touches (event ids are hashes, so inserts land all over the index) off the disk."""
CHECKPOINT_PAGES = 4000
"""Checkpoint the WAL into the database after this many pages (16 MiB at 4 KiB pages),
not SQLite's 1000: a batch writes a few hundred pages, and checkpointing less often writes
hot index pages once instead of every other commit (measured: commit ~18 -> ~12 ms)."""
_DSN_HINT = "write sqlite:///relative/path.db or sqlite:////absolute/path.db"
_SYNCHRONOUS = {
    "full": "durable, the default",
    "normal": "faster; a power cut may lose the last commits, a process crash does not",
    "off": "no fsync: a power cut may corrupt the file",
    "extra": "full, and the directory synced after each commit too; the slowest",
}
"""The ``synchronous`` modes a DSN may name, with what each means."""


class SQLiteStore(StoreLifecycle):
    """The state store in one SQLite file (see the module docstring)."""

    def __init__(
        self, path: Path, *, synchronous: Synchronous = "full", busy_timeout: float = 10.0
    ) -> None:
        super().__init__()
        if synchronous not in get_args(Synchronous):
            raise StoreError(f"unknown synchronous mode {synchronous!r}", hint="use full")
        self.path = Path(path)
        self.synchronous: Synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._ops: SQLiteOps | None = None
        self._worker_lock: IO[bytes] | None = None
        self._reader_executor: ThreadPoolExecutor | None = None
        self._reader: SQLiteOps | None = None

    def __repr__(self) -> str:
        return f"SQLiteStore('{self.path}')"

    @property
    def busy_timeout_ms(self) -> int:
        return int(self.busy_timeout * 1000)

    @classmethod
    def from_dsn(cls, dsn: str, base_dir: Path) -> Self:
        """Parse ``sqlite:///path[?synchronous=full|normal|off|extra&busy_timeout=SECONDS]``;
        StoreError naming the option, the value and what is accepted when one is wrong."""
        parts = dsn_options.split(dsn, dsn, _DSN_HINT)
        if parts.scheme.lower() != "sqlite" or parts.netloc or parts.fragment:
            raise StoreError(f"bad SQLite state DSN {dsn!r}", hint=_DSN_HINT)
        raw = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if not raw:
            raise StoreError(f"the SQLite state DSN {dsn!r} names no file", hint=_DSN_HINT)
        path = Path(raw)
        options = dsn_options.options(parts.query)
        synchronous = dsn_options.choice(
            "synchronous", options.pop("synchronous", "full"), dsn, _SYNCHRONOUS
        )
        busy_timeout = dsn_options.seconds(
            "busy_timeout", options.pop("busy_timeout", "10"), dsn, default=10, zero=True
        )
        dsn_options.no_others(options, dsn, ("synchronous", "busy_timeout"))
        return cls(
            path if path.is_absolute() else base_dir / path,
            synchronous=cast(Synchronous, synchronous),
            busy_timeout=busy_timeout,
        )

    # --- lifecycle and the thread ---------------------------------------------------------

    async def _open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="eventflow-sqlite")
        try:
            await self._hop(self._connect)
        except BaseException:
            # The connect job may still be running (cancelled open): close after it, in FIFO.
            self._executor.submit(self._close_ops)
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def _close(self) -> None:
        assert self._executor is not None
        try:
            await self._hop(self._close_ops)
        finally:
            self._executor.shutdown(wait=False)
            self._executor = None
            if self._worker_lock is not None:
                self._worker_lock.close()  # releases the flock
                self._worker_lock = None
            if self._reader_executor is not None:
                self._reader_executor.submit(self._close_reader)
                self._reader_executor.shutdown(wait=True)
                self._reader_executor = None

    async def lock_worker(self) -> None:
        """One ``eventflow run`` per SQLite file: an exclusive ``flock`` on ``FILE.lock``,
        held until ``close`` (the kernel releases it when the process dies, even by SIGKILL)."""
        self._check_open()
        if self._worker_lock is not None:
            return
        lock_path = self.path.with_name(self.path.name + ".lock")
        handle = lock_path.open("a+b")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise WorkerBusy(
                f"another eventflow process is running on {self.path}",
                hint="stop it first; several workers need a PostgreSQL state store",
            ) from None
        self._worker_lock = handle

    def _connect(self) -> None:
        """On the store's thread: open the file, set it up and bring its schema up to date."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the directory of the state store {self.path}: {exc}"
            ) from exc
        # Used by two threads, never at once: the store's lock orders every operation.
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            self._enable_wal(conn)
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")
            migrate(conn, str(self.path))
        except BaseException:
            conn.close()
            raise
        self._ops = SQLiteOps(conn, self.synchronous)

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL (a no-op once it is). Switching needs an exclusive lock and
        SQLite may refuse it at once, without waiting, while another connection opens the
        new file too: retry until busy_timeout."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL").fetchone()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _close_ops(self) -> None:
        ops, self._ops = self._ops, None
        if ops is not None:
            ops.close()

    async def _hop(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the store's thread; sqlite3 errors come back as StoreError."""
        if self._executor is None:
            raise ClosedError(f"{self!r} is closed")
        job = asyncio.get_running_loop().run_in_executor(
            self._executor, partial(fn, *args, **kwargs)
        )
        job.add_done_callback(_retrieve)
        try:
            # Shielded: a cancelled caller stops waiting, but a submitted job always runs (a
            # COMMIT or ROLLBACK must not be dropped), and later jobs queue behind it.
            return await asyncio.shield(job)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return StoreFull(
                f"SQLite state store {self.path}: {text}",
                hint=f"free space on the file system of {self.path.parent}; eventflow "
                "waits and tries again, keeping what is committed",
            )
        hint = None
        busy = "locked" in text or "busy" in text
        if busy:
            hint = (
                f"another process held the write lock for more than {self.busy_timeout:g}s; "
                "raise busy_timeout in the DSN or find the long transaction"
            )
        elif "unable to open" in text:
            hint = "check that the path exists and is writable"
        elif "not a database" in text or "malformed" in text:
            hint = "the file is not an eventflow state store, or it is damaged"
        error = StoreError(f"SQLite state store {self.path}: {text}", hint=hint)
        error.retriable = busy
        return error

    def _live(self) -> SQLiteOps:
        if self._ops is None:
            raise ClosedError(f"{self!r} is closed")
        return self._ops

    async def _read(
        self, fn: Callable[Concatenate[SQLiteOps, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """One reading operation in a (deferred) transaction of its own: one snapshot."""

        def call(ops: SQLiteOps) -> T:
            return fn(ops, *args, **kwargs)

        return await self._op(False, call)

    async def _write(
        self, fn: Callable[Concatenate[SQLiteOps, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """One writing operation in an immediate transaction of its own."""

        def call(ops: SQLiteOps) -> T:
            return fn(ops, *args, **kwargs)

        return await self._op(True, call)

    async def _op(self, immediate: bool, call: Callable[[SQLiteOps], T]) -> T:
        async with self._exclusive():
            ops = self._live()
            return await self._hop(ops.run, call, ops, immediate=immediate)

    # --- transactions ----------------------------------------------------------------------

    def transaction(self, *, durable: bool = True) -> AbstractAsyncContextManager[Transaction]:
        return self._transaction(durable)

    @asynccontextmanager
    async def _transaction(self, durable: bool) -> AsyncIterator[Transaction]:
        # A non-durable transaction commits with synchronous=NORMAL: in WAL mode the commit
        # is safe from process crashes but not fsynced; the next durable commit's fsync
        # covers it, since the WAL is written in order.
        # BEGIN goes with the transaction's first operation: a transaction that does nothing
        # costs no hop.
        relaxed = not durable and self.synchronous in ("full", "extra")
        async with self._exclusive():
            ops = self._live()
            tx = _SQLiteTransaction(self, ops, relaxed)
            try:
                yield tx
            except BaseException:
                tx._ops = None
                if tx._submitted:  # rollback() does nothing if BEGIN did not happen
                    with contextlib.suppress(StoreError):
                        await self._hop(ops.rollback, relaxed)
                raise
            tx._ops = None
            if tx._submitted:
                await self._hop(ops.commit, relaxed)

    # --- the Store protocol ----------------------------------------------------------------

    async def beat_worker(self, beat: WorkerBeat) -> None:
        await self._write(_workers.sqlite_beat, beat)

    async def list_workers(self) -> list[WorkerBeat]:
        return await self._read(_workers.sqlite_list)

    async def load_cursors(self, sensor: str) -> dict[str, JSON]:
        return await self._read(SQLiteOps.load_cursors, sensor)

    async def delete_cursors(self, sensor: str, keys: Collection[str]) -> None:
        await self._write(SQLiteOps.delete_cursors, sensor, list(keys))

    async def recover_running(self, now: datetime) -> list[str]:
        return await self._write(SQLiteOps.recover_running, now)

    async def next_run_due(self) -> datetime | None:
        return await self._read(SQLiteOps.next_run_due)

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self._read(SQLiteOps.get_run, run_id)

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
        return await self._read(SQLiteOps.list_runs, where, limit)

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
        return await self._read(SQLiteOps.count_runs, where)

    async def partition_runs(self, rule: str, key: str) -> list[RunRecord]:
        return await self._read_committed(SQLiteOps.partition_runs, rule, key)

    async def unfinished_runs(self, rule: str) -> int:
        return await self._read_committed(SQLiteOps.unfinished_runs, rule)

    async def retry_run(self, run_id: str, now: datetime) -> RunRecord:
        return await self._write(SQLiteOps.retry_run, run_id, now)

    async def request_cancel(self, run_id: str, by: str, now: datetime) -> RunRecord:
        return await self._write(SQLiteOps.request_cancel, run_id, by, now)

    async def cancel_requests(self) -> list[RunRecord]:
        return await self._read(SQLiteOps.cancel_requests)

    async def set_pause(
        self,
        kind: PauseKind,
        name: str,
        action: PauseActionName,
        by: str,
        reason: str | None,
        now: datetime,
    ) -> PauseAction:
        return await self._write(SQLiteOps.set_pause, kind, name, action, by, reason, now)

    async def pauses(self) -> list[Pause]:
        return await self._read(SQLiteOps.pauses)

    async def pause_actions(self, limit: int = 100) -> list[PauseAction]:
        return await self._read(SQLiteOps.pause_actions, limit)

    async def save_backfill(self, request: BackfillRequest) -> None:
        await self._write(bo.sqlite_save, request)

    async def get_backfill(self, backfill_id: str) -> BackfillRequest | None:
        return await self._read(bo.sqlite_get, backfill_id)

    async def list_backfills(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[BackfillRequest]:
        return await self._read(bo.sqlite_list, status, limit)

    async def request_backfill_cancel(
        self, backfill_id: str, by: str, now: datetime
    ) -> BackfillRequest:
        return await self._write(bo.sqlite_cancel, backfill_id, by, now)

    async def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        return await self._read(SQLiteOps.due_timers, now, limit)

    async def timers(self, limit: int) -> list[Timer]:
        return await self.due_timers(FAR_FUTURE, limit)

    async def next_timer_due(self) -> datetime | None:
        return await self._read(SQLiteOps.next_timer_due)

    async def fetch_outbox(self, publisher: str, limit: int) -> list[OutboxItem]:
        return await self._read(SQLiteOps.fetch_outbox, publisher, limit)

    async def delete_outbox(self, ids: Collection[int]) -> None:
        await self._write(SQLiteOps.delete_outbox, list(ids))

    async def fetch_inbox(self, limit: int) -> list[InboxItem]:
        return await self._read(SQLiteOps.fetch_inbox, limit)

    async def add_inbox(self, item: InboxItem) -> int:
        return await self._write(SQLiteOps.add_inbox, item)

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
        return await self._read(SQLiteOps.list_matches, where, limit)

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
        return await self._read(SQLiteOps.count_matches, where)

    async def committed_seen_events(self, ids: Collection[str]) -> set[str]:
        return await self._read_committed(SQLiteOps.seen_events, list(ids))

    async def committed_matches(self, keys: Collection[MatchKey]) -> dict[MatchKey, MatchState]:
        return await self._read_committed(SQLiteOps.get_matches, list(keys))

    async def _read_committed(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read on a second connection with a thread of its own: WAL lets it read the
        last commit while the writer's transaction is open, without waiting for it."""
        self._check_open()
        if self._reader_executor is None:
            self._reader_executor = ThreadPoolExecutor(1, thread_name_prefix="eventflow-read")
        job = asyncio.get_running_loop().run_in_executor(
            self._reader_executor, partial(self._on_reader, fn, *args)
        )
        try:
            return await job
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite state store {self.path}: {exc}") from exc

    def _on_reader(self, fn: Callable[..., T], *args: Any) -> T:
        if self._reader is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            conn.execute("PRAGMA query_only = ON")
            self._reader = SQLiteOps(conn, self.synchronous)
        return fn(self._reader, *args)

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.conn.close()
            self._reader = None

    async def get_match(self, rule: str, key: str) -> MatchState | None:
        return await self._read(SQLiteOps.get_match, rule, key)

    async def match_counts(self) -> dict[str, dict[str, int]]:
        return await self._read(SQLiteOps.match_counts)

    async def get_events(self, ids: Collection[str]) -> list[StoredEvent]:
        return await self._read(SQLiteOps.get_events, list(ids))

    async def read_events(
        self,
        *,
        since: datetime | None = None,
        sensors: Collection[str] | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[tuple[int, StoredEvent]]:
        wanted = None if sensors is None else list(sensors)
        return await self._read(SQLiteOps.read_events, since, wanted, after, limit)

    async def prune_events(self, before: datetime, limit: int) -> int:
        return await self._write(SQLiteOps.prune_events, before, limit)

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
        return await self._read(SQLiteOps.list_events, where, limit)

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
        return await self._read(SQLiteOps.count_events, where)

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
        return await self._read(SQLiteOps.list_deadletters, where, limit)

    async def count_deadletters(
        self,
        *,
        sensor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        status: DeadLetterStatus | None = None,
    ) -> int:
        where = c.deadletter_filter(sensor, since, until, None, status)
        return await self._read(SQLiteOps.count_deadletters, where)

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
        return await self._read(SQLiteOps.list_gates, where, limit)

    async def get_deadletter(self, event_id: str) -> DeadLetter | None:
        return await self._read(SQLiteOps.get_deadletter, event_id)

    async def act_on_deadletter(
        self, event_id: str, action: DeadLetterAction, by: str, now: datetime
    ) -> DeadLetter:
        return await self._write(SQLiteOps.act_on_deadletter, event_id, action, by, now)

    async def fetch_redrives(self, limit: int) -> list[DeadLetter]:
        return await self._read(SQLiteOps.fetch_redrives, limit)

    async def claim_gates(
        self, now: datetime, until: datetime, limit: int
    ) -> list[tuple[CheckGate, str]]:
        params = g.claim_params(self._claimant, now, until, limit)
        return await self._write(SQLiteOps.claim_gates, params)

    async def renew_gates(self, run_ids: Collection[str], until: datetime) -> set[str]:
        if not run_ids:
            return set()
        params = g.renew_params(self._claimant, run_ids, until)
        return await self._write(SQLiteOps.renew_gates, params)

    async def counts(self) -> dict[str, int]:
        return await self._read(SQLiteOps.counts)

    async def claim_identity(self, identity: StoreIdentity) -> StoreIdentity:
        return await self._write(lambda o: v.sqlite_claim_identity(o.conn, o.q, identity))

    async def store_identity(self) -> StoreIdentity | None:
        return await self._read(lambda o: v.sqlite_identity(o.conn, o.q))

    async def record_start(self, start: VersionStart) -> None:
        await self._write(lambda o: v.sqlite_record_start(o.conn, o.q, start))

    async def list_starts(
        self, limit: int = 100, *, before: int | None = None
    ) -> list[VersionStart]:
        return await self._read(lambda o: v.sqlite_list_starts(o.conn, o.q, limit, before))

    async def count_starts(self) -> int:
        return await self._read(lambda o: v.sqlite_count_starts(o.conn, o.q))

    async def diagnostics(self) -> dict[str, JSON]:
        """What ``eventflow status`` may show about the file: path, journal mode,
        synchronous, busy timeout and schema version."""
        return {"path": str(self.path), **await self._read(SQLiteOps.diagnostics)}


def _retrieve(job: asyncio.Future[Any]) -> None:
    """Mark the outcome of a job whose caller was cancelled as seen (no asyncio warning)."""
    if not job.cancelled():
        job.exception()


class _SQLiteTransaction:
    """The :class:`~eventflow.types.Transaction` of a SQLiteStore: every call runs on the
    caller's thread; the first one takes the write lock first (``BEGIN IMMEDIATE``, on the
    store's thread when it has to wait for another process)."""

    def __init__(self, store: SQLiteStore, ops: SQLiteOps, relaxed: bool) -> None:
        self._store = store
        self._ops: SQLiteOps | None = ops
        self._relaxed = relaxed
        self._submitted = False
        """Whether an operation (and so the BEGIN before it) went to the store's thread."""

    async def _call(
        self, fn: Callable[Concatenate[SQLiteOps, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``fn(ops, *args)`` here, after the BEGIN if it is the first call."""
        ops = self._ops
        if ops is None:
            raise ClosedError("the transaction has ended", hint="open a new one")
        store = self._store
        try:
            if not self._submitted:
                self._submitted = True  # set first: a cancelled BEGIN hop still runs (roll back)
                if not ops.try_begin(self._relaxed, store.busy_timeout_ms):
                    await store._hop(ops.begin, True, self._relaxed)  # wait for the lock there
            return fn(ops, *args, **kwargs)
        except sqlite3.Error as exc:
            raise store._translate(exc) from exc

    async def seen_events(self, ids: Collection[str]) -> set[str]:
        return await self._call(SQLiteOps.seen_events, list(ids))

    async def get_matches(self, keys: Collection[MatchKey]) -> dict[MatchKey, MatchState]:
        return await self._call(SQLiteOps.get_matches, list(keys))

    async def get_gate(self, run_id: str) -> CheckGate | None:
        # Held: the transaction is BEGIN IMMEDIATE (the file's one writer until it ends).
        return await self._call(SQLiteOps.get_gate, run_id)

    async def claim_runs(
        self, now: datetime, limit: int, rule_limits: Mapping[str, int]
    ) -> list[RunRecord]:
        return await self._call(SQLiteOps.claim_runs, now, limit, dict(rule_limits))

    async def apply(self, changes: Changes) -> None:
        await self._call(SQLiteOps.apply, changes)
