"""SQL checks: a query on a DuckDB or PostgreSQL connection, its first value the result.

``{var}`` in the query becomes a bound parameter (``?`` for DuckDB, ``%s`` for psycopg), so
a partition value from a message can never change the query. A DuckDB query runs in a
worker thread and is interrupted at its timeout; a PostgreSQL query runs with
``statement_timeout`` set to it. The DSN is never logged or shown: errors name the
connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from eventflow import extras
from eventflow.errors import TaskError
from eventflow.events import JSON
from eventflow.patterns import render
from eventflow.quality.config import ConnectionConfig


def bind(sql: str, variables: Mapping[str, str], placeholder: str) -> tuple[str, list[str]]:
    """``sql`` with each ``{var}`` replaced by ``placeholder``, and the values in order."""
    values: list[str] = []

    def collect(text: str) -> str:
        values.append(text)
        return placeholder

    return render(sql, variables, collect), values


def json_value(value: Any) -> JSON:
    """A database value as JSON: times as ISO text, decimals as numbers."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


async def query(
    name: str,
    conn: ConnectionConfig,
    sql: str,
    variables: Mapping[str, str],
    base_dir: Path,
    timeout: float | None,
) -> JSON:
    """The first column of the first row of ``sql`` on connection ``name`` (None: no row).
    Raises TaskError (the check's attempt fails) for a refused query or a timeout."""
    if conn.type == "duckdb":
        return await _duckdb(name, conn, sql, variables, base_dir, timeout)
    return await _postgres(name, conn, sql, variables, timeout)


async def _duckdb(
    name: str,
    conn: ConnectionConfig,
    sql: str,
    variables: Mapping[str, str],
    base_dir: Path,
    timeout: float | None,
) -> JSON:
    extras.require("duckdb", f"the SQL checks on connection `{name}`")
    import duckdb

    text, params = bind(sql, variables, "?")
    database = conn.dsn if conn.dsn == ":memory:" else str(base_dir / conn.dsn)
    db = duckdb.connect(database)
    # Relative paths in the query (read_csv('data/x.csv')) are the pipeline directory's.
    db.execute("SET file_search_path = '" + str(base_dir).replace("'", "''") + "'")

    def run() -> JSON:
        row = db.execute(text, params).fetchone()
        return None if row is None else json_value(row[0])

    try:
        job = asyncio.get_running_loop().run_in_executor(None, run)
        try:
            return await asyncio.wait_for(asyncio.shield(job), timeout)
        except (TimeoutError, asyncio.CancelledError):
            db.interrupt()
            await asyncio.gather(job, return_exceptions=True)
            raise
    except TimeoutError as exc:
        raise TaskError(f"the query on `{name}` took longer than {timeout:g}s") from exc
    except duckdb.Error as exc:
        raise TaskError(f"the query on `{name}` failed: {exc}") from exc
    finally:
        db.close()


async def _postgres(
    name: str,
    conn: ConnectionConfig,
    sql: str,
    variables: Mapping[str, str],
    timeout: float | None,
) -> JSON:
    extras.require("postgres", f"the SQL checks on connection `{name}`")
    import psycopg

    text, params = bind(sql.replace("%", "%%"), variables, "%s")
    options = ""
    if timeout is not None:
        options = f"-c statement_timeout={max(1, int(timeout * 1000))}"
    try:
        async with await psycopg.AsyncConnection.connect(
            conn.dsn, autocommit=True, connect_timeout=10, options=options
        ) as db:
            cursor = await db.execute(text, params)
            row = await cursor.fetchone()
            return None if row is None else json_value(row[0])
    except psycopg.errors.QueryCanceled as exc:
        raise TaskError(f"the query on `{name}` took longer than {timeout:g}s") from exc
    except psycopg.OperationalError as exc:
        # libpq's connection errors may quote the host and user, never the password.
        raise TaskError(f"cannot connect to `{name}`: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise TaskError(f"the query on `{name}` failed: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
