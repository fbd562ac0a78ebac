"""The SQL of the PostgreSQL store: named queries from ``sql/postgres/queries.sql`` and its
numbered migrations in ``sql/postgres/migrations/``.

Migrations are applied at open, in version order, each once, in one transaction that first
takes a transaction-level advisory lock: workers starting at the same moment apply them
once, the others wait and find them done. A database whose schema is newer than the newest
migration shipped here is refused.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING

from eventflow.store._sqlite_sql import Migration, parse_queries, unapplied

if TYPE_CHECKING:
    from psycopg import AsyncConnection

_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
MIGRATION_LOCK = 0x6576_666C_6F77  # "evflow": the advisory lock key of the migrations


@cache
def queries() -> dict[str, str]:
    return parse_queries(_sql_dir().joinpath("queries.sql").read_text(encoding="utf-8"))


@cache
def migrations() -> tuple[Migration, ...]:
    """The shipped migrations in version order."""
    found: list[Migration] = []
    for entry in _sql_dir().joinpath("migrations").iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    return tuple(found)


async def migrate(conn: AsyncConnection[tuple[object, ...]], where: str) -> list[int]:
    """Apply the pending migrations (``conn`` is in autocommit mode); return their versions.

    An up-to-date database is only read: no lock is taken.
    """
    q = queries()
    known = migrations()
    if not await _pending(conn, known, where):
        return []
    done: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        for m in await _pending(conn, known, where):  # again, under the lock
            await conn.execute(m.sql.encode())
            now = datetime.now(UTC).isoformat(timespec="microseconds")
            await conn.execute(q["record_migration"], {"version": m.version, "applied_at": now})
            done.append(m.version)
    return done


async def _pending(
    conn: AsyncConnection[tuple[object, ...]], known: tuple[Migration, ...], where: str
) -> list[Migration]:
    q = queries()
    applied: set[int] = set()
    row = await (await conn.execute(q["has_migrations_table"])).fetchone()
    if row is not None and row[0]:
        cur = await conn.execute(q["applied_migrations"])
        applied = {int(r[0]) for r in await cur.fetchall()}  # type: ignore[call-overload]
    return unapplied(known, applied, where, "database")


def _sql_dir() -> Traversable:
    return resources.files("eventflow.store").joinpath("sql", "postgres")
