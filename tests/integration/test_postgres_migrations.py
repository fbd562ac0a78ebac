"""The PostgreSQL store's schema: migrations build it once, even when workers start together,
a newer schema is refused, and every named query is valid against it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import psycopg
import pytest

from eventflow.errors import StoreError
from eventflow.store._postgres_sql import migrate, migrations, queries
from eventflow.store.postgres import PostgresStore

TABLES = {
    "schema_migrations",
    "events",
    "cursors",
    "matches",
    "workers",
    "worker_health",
    "runs",
    "timers",
    "outbox",
    "inbox",
    "deadletters",
    "check_gates",
    "pauses",
    "pause_actions",
    "store_identity",
    "pipeline_starts",
    "backfills",
}
INDEXES = {
    "events_received",
    "matches_status",
    "runs_claim",
    "runs_created",
    "runs_rule",
    "runs_partition",
    "runs_cancel_requested",
    "pause_actions_name",
    "backfills_requested",
    "backfills_active",
    "runs_worker",
    "timers_due",
    "outbox_publisher",
    "check_gates_status",
    "check_gates_dataset",
    "pipeline_starts_version",
    "deadletters_status",
    "deadletters_requested",
}


def names(dsn: str, kind: str) -> set[str]:
    sql = {
        "table": "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
        "index": "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
        " AND indexname NOT LIKE '%%_pkey' AND indexname NOT LIKE '%%_key'",
    }[kind]
    with psycopg.connect(dsn) as conn:
        return {row[0] for row in conn.execute(sql)}


def versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


async def test_migrations_build_the_expected_schema_from_empty(
    postgres_dsn: str, tmp_path: Path
) -> None:
    """Opening an empty database applies every migration and builds all tables and indexes."""
    async with PostgresStore.from_dsn(postgres_dsn, tmp_path) as store:
        info = await store.diagnostics()
    assert info["schema_version"] == migrations()[-1].version
    assert str(info["server_version"]).startswith("15")
    assert names(postgres_dsn, "table") == TABLES
    assert names(postgres_dsn, "index") == INDEXES
    assert versions(postgres_dsn) == [m.version for m in migrations()]


async def test_reopening_applies_no_migration_twice(postgres_dsn: str, tmp_path: Path) -> None:
    """A second open finds every migration applied and changes nothing."""
    async with PostgresStore.from_dsn(postgres_dsn, tmp_path):
        pass
    before = versions(postgres_dsn)
    async with PostgresStore.from_dsn(postgres_dsn, tmp_path):
        pass
    assert versions(postgres_dsn) == before
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        assert await migrate(conn, "test") == []


async def test_workers_opening_an_empty_database_at_once_migrate_it_once(
    postgres_dsn: str, tmp_path: Path
) -> None:
    """Concurrent first opens apply each migration exactly once (an advisory lock)."""
    stores = [PostgresStore.from_dsn(postgres_dsn, tmp_path) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    for s in stores:
        await s.close()
    assert versions(postgres_dsn) == [m.version for m in migrations()]


async def test_a_schema_newer_than_this_eventflow_is_refused(
    postgres_dsn: str, tmp_path: Path
) -> None:
    """A database with a schema version this code does not know raises StoreError on open."""
    async with PostgresStore.from_dsn(postgres_dsn, tmp_path):
        pass
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (9999, '2099-01-01')")
    store = PostgresStore.from_dsn(postgres_dsn, tmp_path)
    with pytest.raises(StoreError, match="newer eventflow") as info:
        await store.open()
    assert info.value.hint
    await store.close()


async def test_every_named_query_is_valid_against_the_schema(
    postgres_dsn: str, tmp_path: Path
) -> None:
    """Each statement in sql/postgres/queries.sql prepares against the migrated schema
    (the server parses it, resolves every name and infers every parameter's type)."""
    async with PostgresStore.from_dsn(postgres_dsn, tmp_path):
        pass
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        for name, sql in queries().items():
            numbered: dict[str, int] = {}

            def number(match: re.Match[str], numbered: dict[str, int] = numbered) -> str:
                key = match[1] or f"#{len(numbered)}"
                return f"${numbered.setdefault(key, len(numbered) + 1)}"

            text = re.sub(r"%(?:\(([a-z_]+)\))?[sb]", number, sql).rstrip(";")
            try:
                conn.execute(f"PREPARE check_{name} AS {text}".encode())
            except psycopg.Error as exc:
                raise AssertionError(f"query {name!r} is not valid: {exc}") from exc
