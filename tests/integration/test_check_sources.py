"""What each kind of check runs, for real: commands with retries and timeouts (the task
runner's process groups), DuckDB on a file written to disk, PostgreSQL on the test server
(partition values bound, never spliced), files that must exist, values from payloads."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from eventflow.config.loader import compile_mapping
from eventflow.events import JSON, InputRef, utcnow
from eventflow.payloads import InputEvent
from eventflow.quality import sql
from eventflow.quality.checker import check_runners
from eventflow.quality.sources import Target, run_check
from eventflow.records import RunRecord
from eventflow.types import PluginEnv

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pipeline(tmp_path: Path, checks: list[dict[str, Any]], **top: Any) -> Any:
    raw = {
        "name": "q",
        "sensors": {"landing": {"type": "directory", "path": "./landing"}},
        "datasets": {"raw": {"sensor": "landing", "key": "raw/{dt}.csv"}},
        "rules": {
            "load": {
                "when": {"any": ["raw"], "by": ["dt"]},
                "run": {"command": ["true"]},
                "produces": "loaded",
                "checks": checks,
            }
        },
        **top,
    }
    (tmp_path / "landing").mkdir(exist_ok=True)
    return compile_mapping(raw, tmp_path / "pipeline.yaml")


def target(tmp_path: Path, dt: str = "2026-01-01", payload: JSON = None) -> Target:
    ref = InputRef("e1", "raw", {"dt": dt}, "landing", {"path": f"raw/{dt}.csv"}, T0.isoformat())
    run = RunRecord(
        run_id="run-1",
        rule="load",
        key=f"dt={dt}",
        partition={"dt": dt},
        generation=1,
        status="succeeded",
        attempt=1,
        max_attempts=1,
        inputs=(ref,),
        created_at=T0,
        updated_at=T0,
    )
    return Target(
        run=run,
        evaluation=1,
        events=(InputEvent(ref, payload=payload),),
        base_dir=tmp_path,
        folder=tmp_path / ".eventflow" / "runs" / "run-1" / "checks",
        pipeline="q",
        log_max_bytes=100_000,
    )


async def check(
    tmp_path: Path, spec: dict[str, Any], previous: JSON = None, **kw: Any
) -> dict[str, JSON]:
    compiled = pipeline(tmp_path, [spec], **kw.pop("top", {}))
    suite = compiled.rules["load"].checks
    runners = check_runners(compiled, PluginEnv("q", tmp_path))
    return await run_check(
        suite.checks[0],
        suite,
        kw.pop("target", None) or target(tmp_path),
        runners.get(f"load/{spec['name']}"),
        previous,
        utcnow,
        random.Random(1),
    )


async def test_a_command_check_that_times_out_is_retried_then_fails(tmp_path: Path) -> None:
    """A check over its timeout is stopped, retried `retries` times, and fails naming it."""
    started = time.monotonic()
    result = await check(
        tmp_path,
        {
            "name": "slow",
            "command": ["sleep", "30"],
            "timeout": "300ms",
            "retries": 1,
            "backoff": {"initial": "10ms", "jitter": False},
        },
    )
    assert result["passed"] is False
    assert result["attempts"] == 2
    assert "timed out" in str(result["detail"])
    assert time.monotonic() - started < 10


async def test_a_command_check_passes_on_its_retry_with_its_printed_value(tmp_path: Path) -> None:
    """A check that fails once passes on the retry; the number it prints last is its value."""
    script = (
        'n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) > count; [ "$n" -ge 1 ] && echo 42'
    )
    result = await check(
        tmp_path,
        {
            "name": "flaky",
            "command": ["sh", "-c", script],
            "retries": 2,
            "backoff": {"initial": "10ms", "jitter": False},
            "expect": {"min": 40},
        },
    )
    assert result["passed"] is True
    assert result["attempts"] == 2
    assert result["value"] == 42


async def test_a_duckdb_check_counts_the_rows_of_a_file_on_disk(tmp_path: Path) -> None:
    """A DuckDB query reads the CSV the task wrote; the partition value is a bound parameter."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "2026-01-01.csv").write_text("id,dt\n1,2026-01-01\n2,2026-01-01\n3,2026-01-02\n")
    spec = {
        "name": "rows",
        "sql": "select count(*) from read_csv('data/2026-01-01.csv') where dt = {dt}",
        "connection": "duck",
        "expect": {"min": 2, "max": 2},
    }
    top = {"connections": {"duck": {"type": "duckdb"}}}
    result = await check(tmp_path, spec, top=top)
    assert result["passed"] is True
    assert result["value"] == 2
    spec["expect"] = {"min": 3}
    result = await check(tmp_path, spec, top=top)
    assert result["passed"] is False
    assert "below the minimum 3" in str(result["detail"])


async def test_a_postgres_check_binds_partition_values(tmp_path: Path, postgres_dsn: str) -> None:
    """A PostgreSQL query counts rows of the partition; a partition value that looks like
    SQL is a parameter, so it matches nothing instead of changing the query."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("create table loaded (dt text, id int)")
        conn.execute("insert into loaded values ('2026-01-01', 1), ('2026-01-01', 2)")
    spec = {
        "name": "rows",
        "sql": "select count(*) from loaded where dt = {dt} and dt like '2026%'",
        "connection": "pg",
        "expect": {"min": 1},
    }
    top = {"connections": {"pg": {"type": "postgresql", "dsn": postgres_dsn}}}
    result = await check(tmp_path, spec, top=top)
    assert result["passed"] is True
    assert result["value"] == 2
    evil = target(tmp_path, dt="x' or '1'='1")
    result = await check(tmp_path, spec, top=top, target=evil)
    assert result["passed"] is False
    assert result["value"] == 0
    assert postgres_dsn not in str(result)


async def test_a_query_over_its_timeout_fails_the_check(tmp_path: Path, postgres_dsn: str) -> None:
    """A PostgreSQL query longer than the check's timeout is stopped at the timeout (and
    by the server's `statement_timeout`), not waited for."""
    spec = {
        "name": "slow",
        "sql": "select 1 from pg_sleep(5)",
        "connection": "pg",
        "timeout": "300ms",
    }
    top = {"connections": {"pg": {"type": "postgresql", "dsn": postgres_dsn}}}
    started = time.monotonic()
    result = await check(tmp_path, spec, top=top)
    assert result["passed"] is False
    assert "timed out after 300ms" in str(result["detail"])
    assert time.monotonic() - started < 3


async def test_exists_fails_on_an_empty_file_and_passes_on_data(tmp_path: Path) -> None:
    """`exists` needs every pattern to match a file that is not empty."""
    spec = {"name": "file", "exists": ["data/{dt}/*.parquet"]}
    result = await check(tmp_path, spec)
    assert result["passed"] is False
    assert "nothing matches" in str(result["detail"])
    folder = tmp_path / "data" / "2026-01-01"
    folder.mkdir(parents=True)
    (folder / "part-0.parquet").write_bytes(b"")
    result = await check(tmp_path, spec)
    assert result["passed"] is False
    assert "is empty" in str(result["detail"])
    (folder / "part-0.parquet").write_bytes(b"PAR1")
    result = await check(tmp_path, spec)
    assert result["passed"] is True
    assert result["value"] == 4


async def test_exists_matches_a_partition_value_as_itself(tmp_path: Path) -> None:
    """A value from an event is no wildcard (`*` finds only a folder named `*`) and cannot
    name a parent folder."""
    spec = {"name": "file", "exists": ["data/{dt}/part.csv"]}
    (tmp_path / "data" / "2026-01-01").mkdir(parents=True)
    (tmp_path / "data" / "2026-01-01" / "part.csv").write_text("a\n")
    wild = await check(tmp_path, spec, target=target(tmp_path, dt="*"))
    assert wild["passed"] is False
    assert "nothing matches" in str(wild["detail"])
    (tmp_path / "data" / "*").mkdir()
    (tmp_path / "data" / "*" / "part.csv").write_text("b\n")
    assert (await check(tmp_path, spec, target=target(tmp_path, dt="*")))["value"] == 2
    up = await check(tmp_path, spec, target=target(tmp_path, dt="../../etc"))
    assert up["passed"] is False
    assert "names a parent folder" in str(up["detail"])


async def test_value_checks_payloads_change_and_freshness(tmp_path: Path) -> None:
    """A value from the inputs' payloads is checked against the previous partition's value
    (within N%) and a timestamp against its maximum age."""
    rows = {"name": "rows", "value": "inputs[0].payload.rows", "expect": {"change": 10}}
    t = target(tmp_path, payload={"rows": 105, "at": utcnow().isoformat()})
    assert (await check(tmp_path, rows, previous=100, target=t))["passed"] is True
    failed = await check(tmp_path, rows, previous=50, target=t)
    assert failed["passed"] is False
    assert "previous partition's 50" in str(failed["detail"])
    assert (await check(tmp_path, rows, previous=None, target=t))["passed"] is True
    fresh = {"name": "fresh", "value": "inputs[0].payload.at", "expect": {"max_age": "1h"}}
    assert (await check(tmp_path, fresh, target=t))["passed"] is True
    old = target(tmp_path, payload={"at": "2020-01-01T00:00:00Z"})
    stale = await check(tmp_path, fresh, target=old)
    assert stale["passed"] is False
    assert "old" in str(stale["detail"])


async def test_a_missing_duckdb_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the duckdb library a DuckDB check fails saying which extra to install."""
    monkeypatch.setattr(sql.extras, "missing", lambda extra: ["duckdb"])
    spec = {"name": "rows", "sql": "select 1", "connection": "duck"}
    result = await check(tmp_path, spec, top={"connections": {"duck": {"type": "duckdb"}}})
    assert result["passed"] is False
    assert "pip install 'eventflow-orchestrator[duckdb]'" in str(result["detail"])
