"""The SQLite store's file: migrations, the schema they build, and sharing it between processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventflow.errors import StoreError
from eventflow.records import Changes, InboxItem, StoredEvent
from eventflow.store._sqlite_sql import migrate, migrations, parse_queries, queries
from eventflow.store.sqlite import SQLiteStore

TABLES = {
    "schema_migrations",
    "events",
    "cursors",
    "matches",
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
    "worker_health",
}
INDEXES = {
    "matches_status",
    "runs_claim",
    "runs_created",
    "runs_rule",
    "runs_partition",
    "runs_cancel_requested",
    "pause_actions_name",
    "backfills_requested",
    "backfills_active",
    "timers_due",
    "outbox_publisher",
    "check_gates_status",
    "check_gates_dataset",
    "events_received",
    "pipeline_starts_version",
    "deadletters_status",
    "deadletters_requested",
}


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def names(conn: sqlite3.Connection, kind: str) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = ? AND name NOT LIKE 'sqlite_%'", (kind,)
    )
    return {r[0] for r in rows}


def inbox_item() -> InboxItem:
    return InboxItem("emit", "orders", {"dt": "x"}, {}, None, datetime(2024, 1, 1, tzinfo=UTC))


def event(eid: str) -> StoredEvent:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    return StoredEvent(eid, "lake", None, t, {"k": eid}, None, {}, (), t)


async def test_migrations_build_the_expected_schema_from_empty(tmp_path: Path) -> None:
    """Opening a new file applies every migration in order and builds all tables and indexes."""
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        info = await store.diagnostics()
    assert info["journal_mode"] == "wal"
    assert info["synchronous"] == "full"
    assert info["busy_timeout_ms"] == 10000
    assert info["schema_version"] == migrations()[-1].version
    with raw(path) as conn:
        assert names(conn, "table") == TABLES
        assert names(conn, "index") == INDEXES
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in migrations()] == sorted(versions)


async def test_reopening_applies_no_migration_twice(tmp_path: Path) -> None:
    """A second open finds every migration applied and changes nothing."""
    path = tmp_path / "state.db"
    async with SQLiteStore(path):
        pass
    with raw(path) as conn:
        before = conn.execute("SELECT * FROM schema_migrations").fetchall()
    async with SQLiteStore(path):
        pass
    with raw(path) as conn:
        assert conn.execute("SELECT * FROM schema_migrations").fetchall() == before
        assert migrate(conn, str(path)) == []


async def test_two_stores_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    """Concurrent first opens of one file apply each migration exactly once."""
    path = tmp_path / "state.db"
    stores = [SQLiteStore(path) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    for s in stores:
        await s.close()
    with raw(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in migrations()]


async def test_a_schema_newer_than_this_eventflow_is_refused(tmp_path: Path) -> None:
    """A file with a schema version this code does not know raises StoreError on open."""
    path = tmp_path / "state.db"
    async with SQLiteStore(path):
        pass
    with raw(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (9999, '2099-01-01')")
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="newer eventflow") as info:
        await store.open()
    assert info.value.hint
    await store.close()


async def test_every_named_query_compiles_against_the_schema(tmp_path: Path) -> None:
    """Each statement in queries.sql is valid SQL for the migrated schema."""
    path = tmp_path / "state.db"
    async with SQLiteStore(path):
        pass
    with raw(path) as conn:
        for name, sql in queries().items():
            named = {p: None for p in re.findall(r"(?<!:):([a-z_]+)", sql)}
            params = named or (None,) * sql.count("?")
            conn.execute(f"EXPLAIN {sql}", params)
            assert sqlite3.complete_statement(sql), name


def test_parse_queries_reads_named_blocks() -> None:
    """The query file parser maps each `-- name:` block, without its comments, to its SQL."""
    text = "-- header\n\n-- name: one\n-- says one\nSELECT 1;\n\n-- name: two\nSELECT\n  2;\n"
    assert parse_queries(text) == {"one": "SELECT 1;", "two": "SELECT\n  2;"}


async def test_a_second_store_reads_committed_data_while_the_first_writes(tmp_path: Path) -> None:
    """With WAL, another connection reads the last commit while a write transaction is open."""
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as writer, SQLiteStore(path) as reader:
        async with writer.transaction() as tx:
            await tx.apply(Changes(events=[event("e1")]))
            counts = await asyncio.wait_for(reader.counts(), timeout=2)
            assert counts["events"] == 0
        assert (await reader.counts())["events"] == 1
        assert [e.id for e in await reader.get_events(["e1"])] == ["e1"]


READER = """
import asyncio, json, sys
from pathlib import Path
from eventflow.store.sqlite import SQLiteStore

async def main():
    async with SQLiteStore(Path(sys.argv[1])) as store:
        print(json.dumps(await store.counts()))

asyncio.run(main())
"""


async def test_another_process_reads_while_this_one_holds_a_write_transaction(
    tmp_path: Path,
) -> None:
    """A second process (like `eventflow status`) reads the last commit during a write."""
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        await store.add_inbox(inbox_item())
        async with store.transaction() as tx:
            await tx.apply(Changes(events=[event("e1")]))
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", READER, str(path), stdout=asyncio.subprocess.PIPE
            )
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0
    counts = json.loads(out)
    assert (counts["inbox"], counts["events"]) == (1, 0)


async def test_a_writer_waits_for_another_process_lock(tmp_path: Path) -> None:
    """A write waits (busy_timeout) while another connection holds the write lock, then succeeds."""
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        with raw(path) as other:
            other.execute("BEGIN IMMEDIATE")
            asyncio.get_running_loop().call_later(0.2, other.execute, "COMMIT")
            await store.delete_cursors("lake", ["a"])
            assert not other.in_transaction


async def test_a_transaction_waits_for_the_lock_off_the_event_loop(tmp_path: Path) -> None:
    """A transaction's statements run on the event loop, but its BEGIN waits for another
    process's write lock on the store's thread: the loop goes on meanwhile (here it is what
    releases the lock)."""
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store:
        with raw(path) as other:
            other.execute("BEGIN IMMEDIATE")
            asyncio.get_running_loop().call_later(0.2, other.execute, "COMMIT")
            async with store.transaction() as tx:
                await tx.apply(Changes(events=[event("e1")]))
            assert not other.in_transaction
        assert (await store.counts())["events"] == 1


async def test_a_lock_held_beyond_busy_timeout_raises_a_retriable_store_error(
    tmp_path: Path,
) -> None:
    """When the write lock is not released within busy_timeout, the write raises StoreError."""
    path = tmp_path / "state.db"
    store = SQLiteStore.from_dsn("sqlite:///state.db?busy_timeout=0.1", tmp_path)
    async with store:
        with raw(path) as other:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError, match="locked") as info:
                await store.delete_cursors("lake", ["a"])
            other.execute("ROLLBACK")
        assert info.value.retriable
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert await store.counts()


async def test_synchronous_normal_is_taken_from_the_dsn(tmp_path: Path) -> None:
    """`?synchronous=normal` in the DSN sets the connection's synchronous mode."""
    async with SQLiteStore.from_dsn("sqlite:///s.db?synchronous=normal", tmp_path) as store:
        assert (await store.diagnostics())["synchronous"] == "normal"


async def test_the_parent_directory_is_created(tmp_path: Path) -> None:
    """Opening a store in a directory that does not exist yet creates the directory."""
    async with SQLiteStore.from_dsn("sqlite:///.eventflow/deep/state.db", tmp_path) as store:
        assert (await store.counts())["events"] == 0
    assert (tmp_path / ".eventflow" / "deep" / "state.db").is_file()


async def test_a_file_that_is_not_a_database_raises_store_error(tmp_path: Path) -> None:
    """Opening a file that is not SQLite raises StoreError from the sqlite3 error, with a hint."""
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database, just some text" * 100)
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match="not a database") as info:
        await store.open()
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    assert info.value.hint
    await store.close()


async def test_only_one_worker_may_run_on_a_sqlite_file(tmp_path: Path) -> None:
    """A second store on the same file cannot take the worker lock while the first holds
    it, and can once the first is closed; readers need no lock."""
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as first, SQLiteStore(path) as second:
        await first.lock_worker()
        await first.lock_worker()  # idempotent
        with pytest.raises(StoreError, match="another eventflow process"):
            await second.lock_worker()
        assert await second.counts()  # reading needs no lock
        await first.close()
        await second.lock_worker()


async def test_non_durable_transaction_commits_and_restores_synchronous(tmp_path: Path) -> None:
    """A transaction(durable=False) commits like any other (a second connection sees it) and
    the store's synchronous setting is back to full afterwards, also after a rollback."""
    path = tmp_path / "state.db"
    async with SQLiteStore(path) as store, SQLiteStore(path) as reader:
        async with store.transaction(durable=False) as tx:
            await tx.apply(Changes(cursors={("s", "k"): 1}))
        assert await reader.load_cursors("s") == {"k": 1}
        assert (await store.diagnostics())["synchronous"] == "full"
        with pytest.raises(RuntimeError):
            async with store.transaction(durable=False):
                raise RuntimeError("boom")
        assert (await store.diagnostics())["synchronous"] == "full"
