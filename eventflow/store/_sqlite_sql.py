"""The SQL of the SQLite store: named queries from ``sql/queries.sql`` and the migrations.

Migrations are ``sql/migrations/NNNN_name.sql`` files, applied in version order at open,
each once, inside one ``BEGIN IMMEDIATE`` transaction together with its row in
``schema_migrations`` (so two processes opening a new file at once apply it once). A file
whose schema is newer than the newest migration shipped here is refused.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

from eventflow.errors import StoreError

_NAME = re.compile(r"^-- name: ([a-z0-9_]+)[ \t]*\n(?:--.*\n)*", re.MULTILINE)
_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def parse_queries(text: str) -> dict[str, str]:
    """``-- name: x`` blocks (with their description comment lines) to ``{x: sql}``."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


@cache
def queries() -> dict[str, str]:
    return parse_queries(_sql_dir().joinpath("queries.sql").read_text(encoding="utf-8"))


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


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


def split_statements(script: str) -> list[str]:
    """The complete statements of ``script`` (``executescript`` would commit first)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    rest = "".join(ln for ln in buffer.splitlines() if not ln.strip().startswith("--"))
    if rest.strip():
        raise ValueError(f"incomplete SQL statement at the end: {buffer.strip()[:60]!r}")
    return statements


def migrate(conn: sqlite3.Connection, where: str) -> list[int]:
    """Apply the pending migrations in one immediate transaction; return their versions.

    An up-to-date file is only read: opening it (``eventflow status``) never waits for the
    write lock that ``eventflow run`` holds during a commit.
    """
    q = queries()
    known = migrations()
    if not _pending(conn, known, where):
        return []
    conn.execute("BEGIN IMMEDIATE")
    try:
        done: list[int] = []
        for m in _pending(conn, known, where):  # again, under the lock
            for statement in split_statements(m.sql):
                conn.execute(statement)
            now = datetime.now(UTC).isoformat(timespec="microseconds")
            conn.execute(q["record_migration"], {"version": m.version, "applied_at": now})
            done.append(m.version)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return done


def _pending(conn: sqlite3.Connection, known: tuple[Migration, ...], where: str) -> list[Migration]:
    """The migrations not applied to the file; refuses a file newer than ``known``."""
    q = queries()
    applied: set[int] = set()
    if conn.execute(q["has_migrations_table"]).fetchone()[0]:
        applied = {row[0] for row in conn.execute(q["applied_migrations"])}
    return unapplied(known, applied, where, "file")


def unapplied(
    known: tuple[Migration, ...], applied: set[int], where: str, what: str
) -> list[Migration]:
    """The migrations of ``known`` not in ``applied``; raises StoreError when ``applied``
    holds a version newer than any of ``known`` (a newer eventflow wrote the ``what``)."""
    newest = known[-1].version if known else 0
    if applied and max(applied) > newest:
        raise StoreError(
            f"{where}: this state was written by a newer eventflow "
            f"(schema version {max(applied)}, this eventflow knows up to {newest})",
            hint=f"upgrade eventflow, or point `state:` at another {what}",
        )
    return [m for m in known if m.version not in applied]


def _sql_dir() -> Traversable:
    return resources.files("eventflow.store").joinpath("sql")
