"""The PostgreSQL state store: several ``eventflow run`` workers share one database.

    postgresql://user@db.example.com:5432/eventflow           (also postgres://)
    postgresql://user@db/eventflow?sslmode=require&lease=30&reconnect_timeout=120

The password comes from the environment or a password file (``PGPASSWORD``,
``~/.pgpass``, as for every libpq program); a password written in the DSN works but is
printed as ``***`` everywhere. libpq parameters in the query string (``sslmode``,
``application_name``, ``connect_timeout``…) are passed through; eventflow's own are:

- ``lease`` (seconds, default 30): how long a worker that stopped heartbeating keeps its
  running runs before another worker takes them back (heartbeat every third of it);
- ``reconnect_timeout`` (seconds, default 60): how long an operation keeps reconnecting,
  with exponential backoff, when the server is unreachable before it fails.

**Connections.** Three, each opened when first needed and replaced when it breaks: the
*writer* (transactions and every operation, one at a time, like the SQLite store's thread),
the *reader* (``committed_*`` reads: the last commit, without waiting for the writer's open
transaction) and, in a worker, the *lease* connection (heartbeat and session advisory locks).

**Several workers.** :meth:`PostgresStore.lock_worker` registers this process in
``workers`` with a lease renewed by a heartbeat on the database's clock. Runs are claimed
with ``FOR UPDATE SKIP LOCKED`` and remember their worker; ``recover_running`` (at start
and at every heartbeat) takes back only the runs of workers whose lease expired. Sensors
that must run once (directory, S3) hold a session advisory lock through :meth:`lease`; so
does the drainer of each publisher's outbox, and one worker's engine polls the timers and
the inbox. When two workers' engines write the same rule state, the later commit is
refused with :class:`~eventflow.errors.StoreConflict` (see :mod:`._postgres_ops`) and the
engine evaluates its batch again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, urlencode, urlunsplit

from eventflow.backfill_requests import BackfillRequest
from eventflow.backoff import Backoff
from eventflow.errors import ClosedError, StoreConflict, StoreError, StoreFull
from eventflow.events import JSON
from eventflow.log import get_logger
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
from eventflow.store import _workers, redact_dsn
from eventflow.store import dsn as dsn_options
from eventflow.store._base import StoreLifecycle
from eventflow.store._codec import FAR_FUTURE
from eventflow.store._deadletters import DeadLetterAction
from eventflow.store._postgres_ops import PostgresOps, ReadGuard
from eventflow.store._postgres_sql import migrate, queries
from eventflow.types import RunPosition, Transaction
from eventflow.version_records import StoreIdentity, VersionStart

T = TypeVar("T")

_OWN_OPTIONS = {"lease": 30.0, "reconnect_timeout": 60.0}
"""eventflow's own DSN options (seconds), with their defaults; the rest go to libpq."""
_LIBPQ_OPTIONS = "https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS"
_DSN_HINT = "write postgresql://user@host:5432/database (password in PGPASSWORD or ~/.pgpass)"
_POLLS_LEASE = "engine:polls"
"""The lease of the worker whose engine polls the timers and the inbox."""
LEASE_POLL = 1.0
"""How often a worker waiting for a lease tries to take it (seconds)."""


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise StoreError(
            "the PostgreSQL state store needs psycopg",
            hint="pip install 'eventflow[postgres]'",
        ) from exc
    return psycopg


def _check_libpq(dsn: str, shown: str) -> None:
    """StoreError when libpq cannot read ``dsn``: an unknown option name, say."""
    psycopg = _psycopg()
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        own = ", ".join(_OWN_OPTIONS)
        raise StoreError(
            f"libpq cannot read the state DSN {shown!r}: {str(exc).strip().replace(dsn, shown)}",
            hint=f"eventflow's options are {own}; libpq's are listed at {_LIBPQ_OPTIONS}",
        ) from None


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for a lease name."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


class PostgresStore(StoreLifecycle):
    """The state store in a PostgreSQL database (see the module docstring)."""

    def __init__(self, dsn: str, *, lease: float = 30.0, reconnect_timeout: float = 60.0) -> None:
        super().__init__()
        self.dsn = dsn
        self.lease_seconds = lease
        self.reconnect_timeout = reconnect_timeout
        self.worker_id: str | None = None
        """Set by :meth:`lock_worker`."""
        self.log = get_logger(component="store", store=redact_dsn(dsn))
        self._guard = ReadGuard()
        self._writer: PostgresOps | None = None
        self._reader: PostgresOps | None = None
        self._reader_lock = asyncio.Lock()
        self._lease_conn: PostgresOps | None = None
        self._lease_lock = asyncio.Lock()
        self._held: dict[str, asyncio.Event] = {}
        """Leases this worker holds: name -> event set when the lease is lost."""
        self._heartbeat: asyncio.Task[None] | None = None
        self._registered = False
        """Whether this worker registered once (a new lease session renews, or re-registers)."""

    def __repr__(self) -> str:
        return f"PostgresStore('{redact_dsn(self.dsn)}')"

    @classmethod
    def from_dsn(cls, dsn: str, base_dir: Path) -> Self:
        """Parse ``postgresql://…[?lease=SECONDS&reconnect_timeout=SECONDS&libpq options]``;
        StoreError naming the option, the value and what is accepted when one is wrong (libpq
        checks the names of its own options here, their values when it connects)."""
        shown = redact_dsn(dsn)
        parts = dsn_options.split(dsn, shown, _DSN_HINT)
        if parts.scheme.lower() not in ("postgresql", "postgres") or parts.fragment:
            raise StoreError(f"bad PostgreSQL state DSN {shown!r}", hint=_DSN_HINT)
        params = parse_qsl(parts.query, keep_blank_values=True)
        own = {k: v for k, v in params if k in _OWN_OPTIONS}
        libpq = [(k, v) for k, v in params if k not in _OWN_OPTIONS]
        numbers = {
            name: dsn_options.seconds(name, raw, shown, default=_OWN_OPTIONS[name])
            for name, raw in own.items()
        }
        clean = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(libpq)))
        _check_libpq(clean, shown)
        return cls(clean, **numbers)

    # --- connections ----------------------------------------------------------------------

    async def _connect(self, guard: ReadGuard | None = None) -> PostgresOps:
        psycopg = _psycopg()
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, application_name="eventflow"
            )
        except psycopg.Error as exc:
            raise self._translate(exc) from exc
        return PostgresOps(conn, guard)

    async def _with_retry(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``, again after a connection failure, with backoff, for at most
        ``reconnect_timeout`` seconds. Only for work that is safe to repeat."""
        deadline = time.monotonic() + self.reconnect_timeout
        waits = Backoff(first=0.05, cap=5.0)
        while True:
            try:
                return await attempt()
            except StoreError as exc:
                delay = waits.failed()
                if not _is_disconnect(exc) or time.monotonic() + delay > deadline:
                    raise
                self.log.warning(
                    "store_reconnecting", operation=what, error=str(exc), retry_in=round(delay, 2)
                )
                await asyncio.sleep(delay)

    async def _writer_ops(self) -> PostgresOps:
        if self._writer is None or self._writer.conn.closed:
            self._writer = await self._connect(self._guard)
        return self._writer

    async def _drop(self, ops: PostgresOps | None) -> None:
        if ops is not None:
            with contextlib.suppress(Exception):
                await ops.conn.close()
        if ops is self._writer:
            self._writer = None
        elif ops is self._reader:
            self._reader = None
        elif ops is self._lease_conn:
            self._lease_conn = None

    def _translate(self, exc: Exception) -> StoreError:
        psycopg = _psycopg()
        text = str(exc).strip() or type(exc).__name__
        sqlstate = getattr(exc, "sqlstate", None)
        where = redact_dsn(self.dsn)
        if sqlstate in ("40001", "40P01"):  # serialization failure, deadlock
            return StoreConflict(f"PostgreSQL state store {where}: {text}")
        if sqlstate == "53100":  # disk_full
            return StoreFull(
                f"PostgreSQL state store {where}: {text}",
                hint="free space on the database server's disk; eventflow waits and tries "
                "again, keeping what is committed",
            )
        error = StoreError(f"PostgreSQL state store {where}: {text}")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and sqlstate in (
            None,
            "57P01",  # admin shutdown
            "57P02",
            "57P03",  # cannot connect now (starting up, shutting down)
            "08000",
            "08003",
            "08006",
        ):
            error.hint = "the server is unreachable; eventflow reconnects with backoff"
            error.retriable = True
            error.disconnect = True  # type: ignore[attr-defined]
        return error

    # --- lifecycle ------------------------------------------------------------------------

    async def _open(self) -> None:
        async def first() -> None:
            ops = await self._writer_ops()
            try:
                await migrate(ops.conn, redact_dsn(self.dsn))
            except _psycopg().Error as exc:
                await self._drop(ops)
                raise self._translate(exc) from exc

        try:
            await self._with_retry("open", first)
        except BaseException:
            await self._close()
            raise

    async def _close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(BaseException):
                await self._heartbeat
            self._heartbeat = None
        if self._lease_conn is not None and self.worker_id is not None:
            with contextlib.suppress(Exception):
                await self._lease_conn.conn.execute(
                    queries()["forget_worker"], {"id": self.worker_id}
                )
        for event in self._held.values():
            event.set()
        self._held.clear()
        for ops in (self._writer, self._reader, self._lease_conn):
            await self._drop(ops)

    # --- operations on the writer ---------------------------------------------------------

    async def _op(self, what: str, fn: Callable[[PostgresOps], Awaitable[T]]) -> T:
        """One operation in a transaction of its own, retried after a disconnect."""

        async def attempt() -> T:
            ops = await self._writer_ops()
            try:
                async with ops.conn.transaction():
                    return await fn(ops)
            except _psycopg().Error as exc:
                error = self._translate(exc)
                if _is_disconnect(error):
                    await self._drop(ops)
                raise error from exc
            except Exception:
                raise  # rolled back by the transaction block; the connection is fine
            except BaseException:
                await self._drop(ops)  # cancelled mid-statement: the server rolls back
                raise

        async with self._exclusive():
            return await self._with_retry(what, attempt)

    def transaction(self, *, durable: bool = True) -> AbstractAsyncContextManager[Transaction]:
        """A transaction on the writer connection. ``durable=False`` commits with
        ``synchronous_commit = off`` (a server crash may lose it; a process crash never)."""
        return self._transaction(durable)

    @asynccontextmanager
    async def _transaction(self, durable: bool) -> AsyncIterator[Transaction]:
        async def begin() -> PostgresOps:
            ops = await self._writer_ops()

            async def statements() -> None:
                await ops.conn.execute("BEGIN")
                if not durable:
                    await ops.conn.execute("SET LOCAL synchronous_commit = off")

            # A failure here is often a connection the server closed while it was idle.
            await self._dropping_on_failure(ops, statements())
            return ops

        async with self._exclusive():
            ops = await self._with_retry("begin", begin)
            tx = _PostgresTransaction(self, ops)
            try:
                yield tx
            except BaseException as exc:
                tx._ops = None
                if isinstance(exc, Exception) and not _is_disconnect(exc):
                    try:
                        await ops.conn.execute("ROLLBACK")
                    except Exception:
                        await self._drop(ops)
                else:  # cancelled or disconnected: the server rolls back when it goes
                    await self._drop(ops)
                raise
            tx._ops = None
            await self._dropping_on_failure(ops, ops.conn.execute("COMMIT"))

    async def _dropping_on_failure(self, ops: PostgresOps, work: Awaitable[T]) -> T:
        """Await ``work`` on ``ops``; if it fails in any way the connection is dropped (its
        state is unknown), and a psycopg error leaves as StoreError."""
        try:
            return await work
        except _psycopg().Error as exc:
            error = self._translate(exc)
            await self._drop(ops)
            raise error from exc
        except BaseException:
            await self._drop(ops)
            raise

    async def _tx_call(
        self, tx: _PostgresTransaction, call: Callable[[PostgresOps], Awaitable[T]]
    ) -> T:
        ops = tx._live()
        try:
            return await call(ops)
        except _psycopg().Error as exc:
            raise self._translate(exc) from exc

    # --- committed reads on the reader -----------------------------------------------------

    async def _read_committed(self, what: str, fn: Callable[[PostgresOps], Awaitable[T]]) -> T:
        self._check_open()

        async def attempt() -> T:
            if self._reader is None or self._reader.conn.closed:
                self._reader = await self._connect(self._guard)
            return await self._dropping_on_failure(self._reader, fn(self._reader))

        async with self._reader_lock:
            return await self._with_retry(what, attempt)

    # --- workers and leases ---------------------------------------------------------------

    async def lock_worker(self) -> None:
        """Register this process as a worker with a lease renewed by a heartbeat task.

        Any number of workers may share a PostgreSQL store; nothing is refused."""
        self._check_open()
        if self.worker_id is not None:
            return
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        await self._lease_call("register", self._register)
        self._heartbeat = asyncio.create_task(self._beat(), name="store-heartbeat")
        self.log.info("worker_registered", worker=self.worker_id, lease=self.lease_seconds)

    async def _register(self, ops: PostgresOps) -> None:
        params = {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "lease": self.lease_seconds,
        }
        await ops.conn.execute(queries()["register_worker"], params)
        self._registered = True

    async def _stay_registered(self, ops: PostgresOps) -> None:
        """Renew this worker's lease, or register it again (and say so) when it expired:
        whether the heartbeat was late or the server was away longer than the lease."""
        if await self._renew(ops):
            return
        self.log.error(
            "worker_lease_expired",
            worker=self.worker_id,
            hint="the heartbeat was late by more than the lease: other workers "
            "may have taken this worker's running runs; registering again",
        )
        await self._register(ops)

    async def _lease_call(self, what: str, fn: Callable[[PostgresOps], Awaitable[T]]) -> T:
        """``fn`` on the lease connection; a broken one is replaced and every lease held on
        it is reported lost (the server released its advisory locks)."""

        async def attempt() -> T:
            fresh = self._lease_conn is None or self._lease_conn.conn.closed
            if fresh:
                self._lease_conn = await self._connect()
            ops = self._lease_conn
            assert ops is not None
            try:
                if fresh and self._registered:  # a new session: renew, or register again
                    await self._stay_registered(ops)
                return await fn(ops)
            except _psycopg().Error as exc:
                error = self._translate(exc)
                if _is_disconnect(error):
                    await self._drop(ops)
                    self._lose_all("the connection to the server was lost")
                raise error from exc

        async with self._lease_lock:
            return await self._with_retry(what, attempt)

    def _lose_all(self, why: str) -> None:
        for name, event in self._held.items():
            self.log.warning("lease_lost", lease=name, reason=why)
            event.set()
        self._held.clear()

    async def _beat(self) -> None:
        """Renew this worker's lease and take back the runs of workers whose lease expired."""
        interval = self.lease_seconds / 3
        q = queries()
        while True:
            await asyncio.sleep(interval)
            try:
                await self._lease_call("heartbeat", self._stay_registered)
                recovered = await self.recover_running(_now())
                if recovered:
                    self.log.warning("runs_recovered", runs=recovered, count=len(recovered))
                await self._lease_call("reap", lambda ops: ops.conn.execute(q["reap_workers"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next beat tries again
                self.log.warning("heartbeat_failed", error=str(exc))

    async def _renew(self, ops: PostgresOps) -> bool:
        params = {"id": self.worker_id, "lease": self.lease_seconds}
        cur = await ops.conn.execute(queries()["renew_worker"], params)
        return await cur.fetchone() is not None

    async def try_lease(self, name: str) -> asyncio.Event | None:
        """Take the lease ``name`` if no other worker holds it: returns an event set when
        it is lost (the connection broke), or None when another worker holds it."""
        self._check_open()
        if name in self._held:
            return self._held[name]

        async def take(ops: PostgresOps) -> bool:
            cur = await ops.conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(name),))
            row = await cur.fetchone()
            return bool(row and row[0])

        if not await self._lease_call("lease", take):
            return None
        lost = self._held[name] = asyncio.Event()
        self.log.info("lease_acquired", lease=name, worker=self.worker_id)
        return lost

    async def release(self, name: str) -> None:
        event = self._held.pop(name, None)
        if event is None or self._lease_conn is None:
            return
        with contextlib.suppress(Exception):
            await self._lease_call(
                "release",
                lambda ops: ops.conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(name),)),
            )

    @asynccontextmanager
    async def lease(self, name: str) -> AsyncIterator[asyncio.Event]:
        """Wait until this worker holds the lease ``name`` (a session advisory lock); yield
        an event that is set if the lease is lost; release it on exit. The lock dies with
        the holder's connection, so a killed worker's leases pass on at once."""
        while True:
            lost = await self.try_lease(name)
            if lost is not None:
                break
            await asyncio.sleep(LEASE_POLL * random.uniform(0.8, 1.2))
        try:
            yield lost
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.release(name))

    async def _leader(self, name: str) -> bool:
        """In a worker: whether this worker holds (or now takes) the lease ``name``. Outside
        one (``eventflow status``, tests) every read is allowed."""
        if self.worker_id is None:
            return True
        return await self.try_lease(name) is not None

    # --- the Store protocol ---------------------------------------------------------------

    async def beat_worker(self, beat: WorkerBeat) -> None:
        await self._op("beat_worker", lambda o: _workers.postgres_beat(o, beat))

    async def list_workers(self) -> list[WorkerBeat]:
        return await self._op("list_workers", _workers.postgres_list)

    async def load_cursors(self, sensor: str) -> dict[str, JSON]:
        return await self._op("load_cursors", lambda o: o.load_cursors(sensor))

    async def delete_cursors(self, sensor: str, keys: Collection[str]) -> None:
        await self._op("delete_cursors", lambda o: o.delete_cursors(sensor, list(keys)))

    async def recover_running(self, now: datetime) -> list[str]:
        """Runs left ``running`` by workers whose lease expired (or by no live worker) go
        back to pending; a live worker's runs are left alone."""
        return await self._op("recover_running", lambda o: o.recover_running(now))

    async def next_run_due(self) -> datetime | None:
        return await self._op("next_run_due", PostgresOps.next_run_due)

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self._op("get_run", lambda o: o.get_run(run_id))

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
        return await self._op("list_runs", lambda o: o.list_runs(where, limit))

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
        return await self._op("count_runs", lambda o: o.count_runs(where))

    async def partition_runs(self, rule: str, key: str) -> list[RunRecord]:
        return await self._read_committed("partition_runs", lambda o: o.partition_runs(rule, key))

    async def unfinished_runs(self, rule: str) -> int:
        return await self._read_committed("unfinished_runs", lambda o: o.unfinished_runs(rule))

    async def retry_run(self, run_id: str, now: datetime) -> RunRecord:
        return await self._op("retry_run", lambda o: o.retry_run(run_id, now))

    async def request_cancel(self, run_id: str, by: str, now: datetime) -> RunRecord:
        return await self._op("request_cancel", lambda o: o.request_cancel(run_id, by, now))

    async def cancel_requests(self) -> list[RunRecord]:
        return await self._op("cancel_requests", lambda o: o.cancel_requests())

    async def set_pause(
        self,
        kind: PauseKind,
        name: str,
        action: PauseActionName,
        by: str,
        reason: str | None,
        now: datetime,
    ) -> PauseAction:
        return await self._op(
            "set_pause", lambda o: o.set_pause(kind, name, action, by, reason, now)
        )

    async def pauses(self) -> list[Pause]:
        return await self._op("pauses", PostgresOps.pauses)

    async def pause_actions(self, limit: int = 100) -> list[PauseAction]:
        return await self._op("pause_actions", lambda o: o.pause_actions(limit))

    async def save_backfill(self, request: BackfillRequest) -> None:
        await self._op("save_backfill", lambda o: bo.pg_save(o, request))

    async def get_backfill(self, backfill_id: str) -> BackfillRequest | None:
        return await self._op("get_backfill", lambda o: bo.pg_get(o, backfill_id))

    async def list_backfills(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[BackfillRequest]:
        return await self._op("list_backfills", lambda o: bo.pg_list(o, status, limit))

    async def request_backfill_cancel(
        self, backfill_id: str, by: str, now: datetime
    ) -> BackfillRequest:
        return await self._op(
            "request_backfill_cancel", lambda o: bo.pg_cancel(o, backfill_id, by, now)
        )

    async def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        if not await self._leader(_POLLS_LEASE):
            return []
        return await self._op("due_timers", lambda o: o.due_timers(now, limit))

    async def timers(self, limit: int) -> list[Timer]:
        return await self._op("timers", lambda o: o.due_timers(FAR_FUTURE, limit))

    async def next_timer_due(self) -> datetime | None:
        return await self._op("next_timer_due", PostgresOps.next_timer_due)

    async def fetch_outbox(self, publisher: str, limit: int) -> list[OutboxItem]:
        if not await self._leader(f"outbox:{publisher}"):
            return []
        return await self._op("fetch_outbox", lambda o: o.fetch_outbox(publisher, limit))

    async def delete_outbox(self, ids: Collection[int]) -> None:
        await self._op("delete_outbox", lambda o: o.delete_outbox(list(ids)))

    async def fetch_inbox(self, limit: int) -> list[InboxItem]:
        if not await self._leader(_POLLS_LEASE):
            return []
        return await self._op("fetch_inbox", lambda o: o.fetch_inbox(limit))

    async def add_inbox(self, item: InboxItem) -> int:
        return await self._op("add_inbox", lambda o: o.add_inbox(item))

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
        return await self._op("list_matches", lambda o: o.list_matches(where, limit))

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
        return await self._op("count_matches", lambda o: o.count_matches(where))

    async def committed_seen_events(self, ids: Collection[str]) -> set[str]:
        wanted = list(ids)
        return await self._read_committed("seen_events", lambda o: o.seen_events(wanted))

    async def committed_matches(self, keys: Collection[MatchKey]) -> dict[MatchKey, MatchState]:
        wanted = list(keys)
        return await self._read_committed("get_matches", lambda o: o.get_matches(wanted))

    async def get_match(self, rule: str, key: str) -> MatchState | None:
        return await self._op("get_match", lambda o: o.get_match(rule, key))

    async def match_counts(self) -> dict[str, dict[str, int]]:
        return await self._op("match_counts", PostgresOps.match_counts)

    async def get_events(self, ids: Collection[str]) -> list[StoredEvent]:
        return await self._op("get_events", lambda o: o.get_events(list(ids)))

    async def read_events(
        self,
        *,
        since: datetime | None = None,
        sensors: Collection[str] | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[tuple[int, StoredEvent]]:
        """A page of the event log by sequence number. With several workers, sequence
        numbers are taken at insert and commits may land out of that order: a page read
        while workers write may miss an event that commits just after it."""
        chosen = None if sensors is None else list(sensors)
        return await self._op("read_events", lambda o: o.read_events(since, chosen, after, limit))

    async def prune_events(self, before: datetime, limit: int) -> int:
        return await self._op("prune_events", lambda o: o.prune_events(before, limit))

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
        return await self._op("list_events", lambda o: o.list_events(where, limit))

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
        return await self._op("count_events", lambda o: o.count_events(where))

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
        return await self._op("list_deadletters", lambda o: o.list_deadletters(where, limit))

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
        return await self._op("list_gates", lambda o: o.list_gates(where, limit))

    async def claim_gates(
        self, now: datetime, until: datetime, limit: int
    ) -> list[tuple[CheckGate, str]]:
        params = g.claim_params(self.worker_id or self._claimant, now, until, limit)
        return await self._op("claim_gates", lambda o: o.claim_gates(params))

    async def renew_gates(self, run_ids: Collection[str], until: datetime) -> set[str]:
        if not run_ids:
            return set()
        params = g.renew_params(self.worker_id or self._claimant, run_ids, until)
        return await self._op("renew_gates", lambda o: o.renew_gates(params))

    async def count_deadletters(
        self,
        *,
        sensor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        status: DeadLetterStatus | None = None,
    ) -> int:
        where = c.deadletter_filter(sensor, since, until, None, status)
        return await self._op("count_deadletters", lambda o: o.count_deadletters(where))

    async def get_deadletter(self, event_id: str) -> DeadLetter | None:
        return await self._op("get_deadletter", lambda o: o.get_deadletter(event_id))

    async def act_on_deadletter(
        self, event_id: str, action: DeadLetterAction, by: str, now: datetime
    ) -> DeadLetter:
        return await self._op(
            "act_on_deadletter", lambda o: o.act_on_deadletter(event_id, action, by, now)
        )

    async def fetch_redrives(self, limit: int) -> list[DeadLetter]:
        if not await self._leader(_POLLS_LEASE):
            return []
        return await self._op("fetch_redrives", lambda o: o.fetch_redrives(limit))

    async def counts(self) -> dict[str, int]:
        return await self._op("counts", PostgresOps.counts)

    async def claim_identity(self, identity: StoreIdentity) -> StoreIdentity:
        return await self._op("claim_identity", lambda o: v.pg_claim_identity(o, identity))

    async def store_identity(self) -> StoreIdentity | None:
        return await self._op("store_identity", v.pg_identity)

    async def record_start(self, start: VersionStart) -> None:
        await self._op("record_start", lambda o: v.pg_record_start(o, start))

    async def list_starts(
        self, limit: int = 100, *, before: int | None = None
    ) -> list[VersionStart]:
        return await self._op("list_starts", lambda o: v.pg_list_starts(o, limit, before))

    async def count_starts(self) -> int:
        return await self._op("count_starts", v.pg_count_starts)

    async def diagnostics(self) -> dict[str, JSON]:
        """What ``eventflow status`` may show: the server, schema version and workers."""

        async def read(ops: PostgresOps) -> dict[str, JSON]:
            q = queries()
            server = await ops._one("SHOW server_version")
            versions = [row[0] for row in await ops._all(q["applied_migrations"])]
            return {
                "server_version": server[0] if server else None,
                "schema_version": max(versions, default=0),
            }

        return {"dsn": redact_dsn(self.dsn), **await self._op("diagnostics", read)}


def _is_disconnect(exc: BaseException) -> bool:
    return bool(getattr(exc, "disconnect", False))


def _now() -> datetime:
    from eventflow.events import utcnow

    return utcnow()


class _PostgresTransaction:
    """The :class:`~eventflow.types.Transaction` of a PostgresStore."""

    def __init__(self, store: PostgresStore, ops: PostgresOps) -> None:
        self._store = store
        self._ops: PostgresOps | None = ops

    def _live(self) -> PostgresOps:
        if self._ops is None:
            raise ClosedError("the transaction has ended", hint="open a new one")
        return self._ops

    async def seen_events(self, ids: Collection[str]) -> set[str]:
        wanted = list(ids)
        return await self._store._tx_call(self, lambda o: o.seen_events(wanted))

    async def get_matches(self, keys: Collection[MatchKey]) -> dict[MatchKey, MatchState]:
        wanted = list(keys)
        return await self._store._tx_call(self, lambda o: o.get_matches(wanted))

    async def get_gate(self, run_id: str) -> CheckGate | None:
        return await self._store._tx_call(self, lambda o: o.get_gate(run_id))

    async def claim_runs(
        self, now: datetime, limit: int, rule_limits: Mapping[str, int]
    ) -> list[RunRecord]:
        worker = self._store.worker_id
        limits = dict(rule_limits)
        return await self._store._tx_call(self, lambda o: o.claim_runs(now, limit, limits, worker))

    async def apply(self, changes: Changes) -> None:
        await self._store._tx_call(self, lambda o: o.apply(changes))
