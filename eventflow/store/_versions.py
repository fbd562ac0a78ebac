"""The store's identity and pipeline starts, for the memory, SQLite and PostgreSQL stores.

One row codec and one function per store kind, so each store adds only one-line methods
(``claim_identity``, ``store_identity``, ``record_start``, ``list_starts``); the SQL is in
``sql/queries.sql`` and ``sql/postgres/queries.sql``, the tables in SQLite migration 0010
and PostgreSQL migration 0008.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from eventflow.store import _codec as c
from eventflow.version_records import StoreIdentity, VersionStart

if TYPE_CHECKING:
    from eventflow.store._postgres_ops import PostgresOps


class VersionStartRow(NamedTuple):
    version: str
    pipeline: str
    environment: str
    worker: str
    started_at: str
    git_commit: str | None
    git_dirty: int | None
    rules: str
    definition: str
    accepted: str


def start_row(start: VersionStart) -> VersionStartRow:
    return VersionStartRow(
        start.version,
        start.pipeline,
        start.environment,
        start.worker,
        c.dt_text(start.started_at),
        start.git_commit,
        None if start.git_dirty is None else int(start.git_dirty),
        c.json_text(dict(start.rules), "rule versions"),
        c.json_text(dict(start.definition), "pipeline definition"),
        c.json_text([dict(a) for a in start.accepted], "accepted plan"),
    )


def decode_start(row: Sequence[Any]) -> VersionStart:
    seq, *rest = row
    version, pipeline, environment, worker, started, commit, dirty, rules, defn, acc = rest
    return VersionStart(
        version=version,
        pipeline=pipeline,
        environment=environment,
        worker=worker,
        started_at=c.text_dt(started),
        rules=c.json_loads(rules),
        definition=c.json_loads(defn),
        git_commit=commit,
        git_dirty=None if dirty is None else bool(dirty),
        accepted=tuple(c.json_loads(acc)),
        seq=int(seq),
    )


def identity_row(identity: StoreIdentity) -> tuple[str, str, str, str]:
    return (
        identity.store_id,
        identity.environment,
        identity.pipeline,
        c.dt_text(identity.created_at),
    )


def decode_identity(row: Sequence[Any] | None) -> StoreIdentity | None:
    if row is None:
        return None
    store_id, environment, pipeline, created_at = row
    return StoreIdentity(store_id, environment, pipeline, c.text_dt(created_at))


# --- SQLite (called on the store's thread, inside its transaction) -------------------------


def sqlite_claim_identity(
    conn: sqlite3.Connection, q: dict[str, str], identity: StoreIdentity
) -> StoreIdentity:
    conn.execute(q["claim_identity"], identity_row(identity))
    found = decode_identity(conn.execute(q["get_identity"]).fetchone())
    assert found is not None
    return found


def sqlite_identity(conn: sqlite3.Connection, q: dict[str, str]) -> StoreIdentity | None:
    return decode_identity(conn.execute(q["get_identity"]).fetchone())


def sqlite_record_start(conn: sqlite3.Connection, q: dict[str, str], start: VersionStart) -> None:
    conn.execute(q["insert_start"], start_row(start))


def sqlite_list_starts(
    conn: sqlite3.Connection, q: dict[str, str], limit: int, before: int | None
) -> list[VersionStart]:
    rows = conn.execute(q["list_starts"], {"limit": limit, "before": before})
    return [decode_start(r) for r in rows]


def sqlite_count_starts(conn: sqlite3.Connection, q: dict[str, str]) -> int:
    return int(conn.execute(q["count_starts"]).fetchone()[0])


# --- PostgreSQL ------------------------------------------------------------------------------


async def pg_claim_identity(ops: PostgresOps, identity: StoreIdentity) -> StoreIdentity:
    await ops.conn.execute(ops.q["claim_identity"], identity_row(identity))
    found = decode_identity(await ops._one(ops.q["get_identity"]))
    assert found is not None
    return found


async def pg_identity(ops: PostgresOps) -> StoreIdentity | None:
    return decode_identity(await ops._one(ops.q["get_identity"]))


async def pg_record_start(ops: PostgresOps, start: VersionStart) -> None:
    await ops.conn.execute(ops.q["insert_start"], start_row(start))


async def pg_list_starts(ops: PostgresOps, limit: int, before: int | None) -> list[VersionStart]:
    rows = await ops._all(ops.q["list_starts"], {"limit": limit, "before": before})
    return [decode_start(r) for r in rows]


async def pg_count_starts(ops: PostgresOps) -> int:
    row = await ops._one(ops.q["count_starts"])
    return int(row[0]) if row else 0


# --- memory -----------------------------------------------------------------------------------


@dataclass
class MemoryVersions:
    """The memory store's identity and starts (plain lists: written outside transactions)."""

    identity: StoreIdentity | None = None
    starts: list[VersionStart] = field(default_factory=list)

    def claim_identity(self, identity: StoreIdentity) -> StoreIdentity:
        if self.identity is None:
            self.identity = identity
        return self.identity

    def record_start(self, start: VersionStart) -> None:
        row = start_row(start)  # the same encoding checks as the SQL stores
        seq = len(self.starts) + 1
        self.starts.append(decode_start((seq, *row)))

    def list_starts(self, limit: int, before: int | None = None) -> list[VersionStart]:
        newest = reversed(self.starts)
        found = [s for s in newest if before is None or (s.seq is not None and s.seq < before)]
        return found[:limit]
