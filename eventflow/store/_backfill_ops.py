"""The backfill requests' operations of the three stores (the rows of
:mod:`eventflow.backfill_requests`), kept out of the stores' own operation modules."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from eventflow.backfill_requests import (
    BackfillRequest,
    cancel_text,
    decode,
    encode,
    not_cancellable,
    time_text,
)

if TYPE_CHECKING:
    from eventflow.store._postgres_ops import PostgresOps
    from eventflow.store._sqlite_ops import SQLiteOps


PROGRESS = (
    "status",
    "planned",
    "fired",
    "skipped",
    "incomplete",
    "message",
    "updated_at",
    "finished_at",
)
"""What saving a request again changes (``save_backfill`` in ``queries.sql`` too)."""


def _where(status: str | None, limit: int) -> dict[str, object]:
    return {"status": status, "limit": max(limit, 0)}


# --- SQLite (on the store's thread) --------------------------------------------------------


def sqlite_save(ops: SQLiteOps, request: BackfillRequest) -> None:
    ops.conn.execute(ops.q["save_backfill"], encode(request))


def sqlite_get(ops: SQLiteOps, backfill_id: str) -> BackfillRequest | None:
    row = ops.conn.execute(ops.q["get_backfill"], {"id": backfill_id}).fetchone()
    return None if row is None else decode(row)


def sqlite_list(ops: SQLiteOps, status: str | None, limit: int) -> list[BackfillRequest]:
    return [decode(r) for r in ops.conn.execute(ops.q["list_backfills"], _where(status, limit))]


def sqlite_cancel(ops: SQLiteOps, backfill_id: str, by: str, now: datetime) -> BackfillRequest:
    params = {"id": backfill_id, "request": cancel_text(by, now), "now": time_text(now)}
    changed = ops.conn.execute(ops.q["request_backfill_cancel"], params).rowcount
    found = sqlite_get(ops, backfill_id)
    if not changed or found is None:
        raise not_cancellable(backfill_id, found)
    return found


# --- PostgreSQL ----------------------------------------------------------------------------


async def pg_save(ops: PostgresOps, request: BackfillRequest) -> None:
    await ops.conn.execute(ops.q["save_backfill"], encode(request))


async def pg_get(ops: PostgresOps, backfill_id: str) -> BackfillRequest | None:
    cur = await ops.conn.execute(ops.q["get_backfill"], {"id": backfill_id})
    row = await cur.fetchone()
    return None if row is None else decode(row)


async def pg_list(ops: PostgresOps, status: str | None, limit: int) -> list[BackfillRequest]:
    cur = await ops.conn.execute(ops.q["list_backfills"], _where(status, limit))
    return [decode(r) for r in await cur.fetchall()]


async def pg_cancel(ops: PostgresOps, backfill_id: str, by: str, now: datetime) -> BackfillRequest:
    params = {"id": backfill_id, "request": cancel_text(by, now), "now": time_text(now)}
    changed = (await ops.conn.execute(ops.q["request_backfill_cancel"], params)).rowcount
    found = await pg_get(ops, backfill_id)
    if not changed or found is None:
        raise not_cancellable(backfill_id, found)
    return found


# --- memory --------------------------------------------------------------------------------


class MemoryBackfills:
    """The in-memory store's backfill rows (encoded, so they round-trip like the others)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, object]] = {}

    def save(self, request: BackfillRequest) -> None:
        row = encode(request)
        old = self.rows.get(request.id)
        if old is not None:  # the request and its cancel are kept, as the SQL stores do
            row = {**old, **{k: row[k] for k in PROGRESS}}
        self.rows[request.id] = row

    def get(self, backfill_id: str) -> BackfillRequest | None:
        row = self.rows.get(backfill_id)
        return None if row is None else decode(list(row.values()))

    def list(self, status: str | None, limit: int) -> list[BackfillRequest]:
        found = [decode(list(r.values())) for r in self.rows.values()]
        if status == "active":
            found = [r for r in found if r.active]
        elif status is not None:
            found = [r for r in found if r.status == status]
        found.sort(key=lambda r: (r.requested_at, r.id), reverse=True)
        return found[: max(limit, 0)]

    def cancel(self, backfill_id: str, by: str, now: datetime) -> BackfillRequest:
        found = self.get(backfill_id)
        if found is None or not found.active:
            raise not_cancellable(backfill_id, found)
        row = self.rows[backfill_id]
        if row["cancel_requested"] is None:
            row["cancel_requested"] = cancel_text(by, now)
        row["updated_at"] = time_text(now)
        result = self.get(backfill_id)
        assert result is not None
        return result
