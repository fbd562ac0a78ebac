"""The engine with durable SQLite commits: observations per second through evaluation and
commit (group commit per batch), and memory with many open partial matches."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import as_eventflow_run
from eventflow.config.loader import load_pipeline
from eventflow.engine import Engine
from eventflow.events import InputRef, Observation
from eventflow.log import configure
from eventflow.records import Changes
from eventflow.rules import MatchState, RuleSpec, on_input
from eventflow.store import open_store

PIPELINE = """
name: bench
state: "{state}"
engine: {{batch_size: {batch}}}
sensors:
  feed: {{type: directory, path: ./in}}
datasets:
  orders:    {{sensor: feed, key: "orders/{{dt}}/{{hr}}/{{n}}"}}
  inventory: {{sensor: feed, key: "inventory/{{dt}}/{{hr}}"}}
rules:
  hourly:
    when: {{all: [orders, inventory], by: [dt, hr], within: 2h}}
    run: {{command: ["true"]}}
"""


def observations(count: int) -> list[Observation]:
    """Ten observations per hour partition: nine order parts, then the inventory marker that
    completes the join (one fire per hour), over ever newer hours."""
    out = []
    when = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(count):
        hour = i // 10
        dt, hr = f"d{hour // 24:05d}", f"{hour % 24:02d}"
        key = f"inventory/{dt}/{hr}" if i % 10 == 9 else f"orders/{dt}/{hr}/{i % 10}"
        out.append(
            Observation(
                sensor="feed",
                position={"path": key, "size": i, "mtime_ns": i},
                key=key,
                time=when,
                cursor=(key, {"size": i, "mtime_ns": i}),
            )
        )
    return out


async def _engine(
    count: int, batch: int, synchronous: str, dsn: str | None = None
) -> dict[str, Any]:
    """``dsn``: another state store than a SQLite file in a temporary directory."""
    configure("warning", "console")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        query = "" if synchronous == "full" else f"?synchronous={synchronous}"
        state = dsn or f"sqlite:///state.db{query}"
        (root / "p.yaml").write_text(PIPELINE.format(batch=batch, state=state))
        pipeline = load_pipeline(root / "p.yaml")
        obs = observations(count)
        async with open_store(pipeline.state_dsn, pipeline.base_dir) as store:
            engine = Engine(pipeline, store)
            latencies: list[float] = []
            sent = [0.0] * count
            committed = asyncio.Event()

            def acked(i: int) -> Callable[[], None]:
                def ack() -> None:
                    latencies.append(time.perf_counter() - sent[i])
                    if len(latencies) == count:
                        committed.set()

                return ack

            # Built before the clock starts: the benchmark measures the engine, not this.
            feed = [dataclasses.replace(o, on_commit=acked(i)) for i, o in enumerate(obs)]
            with as_eventflow_run():
                runner = asyncio.create_task(engine.run())
                start = time.perf_counter()
                for i, o in enumerate(feed):  # through the bounded queue, as a sensor would
                    sent[i] = time.perf_counter()
                    await engine.submit(o)
                await committed.wait()
                elapsed = time.perf_counter() - start
                engine.stop()
                await runner
            counts = await store.counts()
        size = (root / "state.db").stat().st_size if dsn is None else 0
    latencies.sort()
    return {
        "observations": count,
        "batch": batch,
        "synchronous": synchronous,
        "seconds": elapsed,
        "events_per_second": count / elapsed,
        "ack_p50_ms": latencies[len(latencies) // 2] * 1000,
        "ack_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "runs": counts["runs_pending"],
        "db_mib": size / 2**20,
    }


def run_engine(count: int = 100_000) -> list[dict[str, Any]]:
    return [
        asyncio.run(_engine(count, batch, sync))
        for batch, sync in ((1000, "full"), (1000, "normal"), (100, "full"))
    ]


def run_engine_postgres(count: int = 100_000) -> list[dict[str, Any]]:
    """The same on a PostgreSQL store: a private PostgreSQL 15 server with durable commits
    (fsync on), or the server of ``EVENTFLOW_BENCH_POSTGRES_DSN``; a fresh database per run."""
    from tests.services.postgres import PostgresProcess, PostgresServer

    admin = os.environ.get("EVENTFLOW_BENCH_POSTGRES_DSN")
    process = None
    try:
        if admin is None:
            process = PostgresProcess(durable=True)
            process.start()
            admin = process.dsn()
        server = PostgresServer(admin)
        results = []
        for batch in (1000, 100):
            dsn = server.create_database()
            results.append(asyncio.run(_engine(count, batch, "on", dsn)))
            server.drop_database(dsn)
        return results
    finally:
        if process is not None:
            process.remove()


def report_engine(results: list[dict[str, Any]], store: str = "SQLite") -> str:
    rows = [f"engine, {store} store, one commit per batch:"]
    for r in results:
        rows.append(
            f"  batch {r['batch']:>5}, synchronous={r['synchronous']:<6}:"
            f" {r['events_per_second']:>8,.0f} events/s; submit -> acknowledged p50"
            f" {r['ack_p50_ms']:.1f} ms, p99 {r['ack_p99_ms']:.1f} ms"
            f" ({r['observations']:,} observations, {r['runs']:,} runs)"
        )
    return "\n".join(rows)


def report_engine_postgres(results: list[dict[str, Any]]) -> str:
    return report_engine(results, "PostgreSQL")


def run_memory(count: int = 1_000_000) -> dict[str, Any]:
    """Memory with ``count`` open partial matches: the RSS of a process running the engine on
    a SQLite store that holds them (the engine keeps none in memory), the file's size, how
    long ``eventflow status`` takes on it, and the bytes per match if all were in memory."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        (root / "p.yaml").write_text(PIPELINE.format(batch=1000, query="?synchronous=normal"))
        start = time.perf_counter()
        asyncio.run(_fill(root, count))
        fill = time.perf_counter() - start
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE, str(root / "p.yaml")],
            capture_output=True,
            text=True,
            check=True,
        )
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "eventflow", "status", str(root / "p.yaml"), "--json"],
            capture_output=True,
            check=True,
        )
        status = time.perf_counter() - start
        size = (root / "state.db").stat().st_size
    result: dict[str, Any] = {
        "open_matches": count,
        "db_mib": size / 2**20,
        "fill_seconds": fill,
        "status_seconds": status,
    }
    result.update(json.loads(probe.stdout))
    result["in_memory_bytes_per_match"] = _bytes_per_match(100_000)
    return result


def _match(i: int, now: datetime) -> MatchState:
    spec = RuleSpec("hourly", "all", ("orders", "inventory"), ("dt", "hr"))
    ref = InputRef(
        f"{i:032x}",
        "orders",
        {"dt": f"d{i // 24:06d}", "hr": f"{i % 24:02d}"},
        "feed",
        {"path": f"orders/{i}", "size": 1, "mtime_ns": i},
        "2024-01-01T00:00:00+00:00",
    )
    return on_input(spec, None, ref, now).state


async def _fill(root: Path, count: int) -> None:
    pipeline = load_pipeline(root / "p.yaml")
    now = datetime(2024, 1, 1, tzinfo=UTC)
    async with open_store(pipeline.state_dsn, pipeline.base_dir) as store:
        for lo in range(0, count, 20_000):
            states = [_match(i, now) for i in range(lo, min(count, lo + 20_000))]
            async with store.transaction() as tx:
                await tx.apply(Changes(matches={(m.rule, m.key): m for m in states}))


_PROBE = """
import asyncio, json, sys, time
from datetime import UTC, datetime
from eventflow.config.loader import load_pipeline
from eventflow.engine import Engine
from eventflow.events import Observation
from eventflow.log import configure
from eventflow.store import open_store
from eventflow.types import Changes
from benchmarks.common import rss_mib

async def main():
    configure("warning", "console")
    pipeline = load_pipeline(sys.argv[1])
    async with open_store(pipeline.state_dsn, pipeline.base_dir) as store:
        engine = Engine(pipeline, store)
        before = rss_mib()
        # Complete 10,000 of the open matches, in batches as the engine would.
        obs = [Observation(sensor="feed", key=f"inventory/d{i // 24:06d}/{i % 24:02d}",
                           position={"n": i}, time=datetime(2024, 1, 1, tzinfo=UTC))
               for i in range(0, 1_000_000, 100)]
        start = time.perf_counter()
        for lo in range(0, len(obs), 1000):
            await engine.process(obs[lo:lo + 1000])
        seconds = time.perf_counter() - start
        print(json.dumps({"rss_mib": rss_mib(), "rss_before_mib": before,
                          "completed": len(obs), "complete_seconds": seconds}))

asyncio.run(main())
"""


def _bytes_per_match(count: int) -> float:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    states = [_match(i, now) for i in range(count)]
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del states
    return used / count


def report_memory(r: dict[str, Any]) -> str:
    return (
        f"memory: {r['open_matches']:,} open partial matches in SQLite ({r['db_mib']:,.0f} MiB"
        f" file): eventflow's RSS {r['rss_mib']:,.0f} MiB while completing"
        f" {r['completed']:,} of them ({r['completed'] / r['complete_seconds']:,.0f}/s);"
        f" `eventflow status` {r['status_seconds']:.2f} s; held in memory instead, a match"
        f" takes {r['in_memory_bytes_per_match']:,.0f} bytes"
    )
