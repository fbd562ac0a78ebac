"""The engine with durable SQLite commits: observations per second through evaluation and
commit (group commit per batch), and memory with many open partial matches."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import rss_mib
from eventflow.config.loader import load_pipeline
from eventflow.engine import Engine
from eventflow.events import InputRef, Observation, partition_key
from eventflow.log import configure
from eventflow.rules import MatchState, RuleSpec, on_input
from eventflow.store import open_store

PIPELINE = """
name: bench
state: "sqlite:///state.db{query}"
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


async def _engine(count: int, batch: int, synchronous: str) -> dict[str, Any]:
    configure("warning", "console")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        query = "" if synchronous == "full" else f"?synchronous={synchronous}"
        (root / "p.yaml").write_text(PIPELINE.format(batch=batch, query=query))
        pipeline = load_pipeline(root / "p.yaml")
        obs = observations(count)
        async with open_store(pipeline.state_dsn, pipeline.base_dir) as store:
            engine = Engine(pipeline, store)
            latencies: list[float] = []
            committed = asyncio.Event()
            done = 0

            def acked(sent: float) -> Callable[[], None]:
                def ack() -> None:
                    nonlocal done
                    done += 1
                    latencies.append(time.perf_counter() - sent)
                    if done == count:
                        committed.set()

                return ack

            runner = asyncio.create_task(engine.run())
            start = time.perf_counter()
            for o in obs:  # through the bounded queue, as a sensor would
                await engine.submit(dataclasses.replace(o, on_commit=acked(time.perf_counter())))
            await committed.wait()
            elapsed = time.perf_counter() - start
            engine.stop()
            await runner
            counts = await store.counts()
        size = (root / "state.db").stat().st_size
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


def report_engine(results: list[dict[str, Any]]) -> str:
    rows = ["engine, SQLite store, one commit per batch:"]
    for r in results:
        rows.append(
            f"  batch {r['batch']:>5}, synchronous={r['synchronous']:<6}:"
            f" {r['events_per_second']:>8,.0f} events/s; submit -> acknowledged p50"
            f" {r['ack_p50_ms']:.1f} ms, p99 {r['ack_p99_ms']:.1f} ms"
            f" ({r['observations']:,} observations, {r['runs']:,} runs)"
        )
    return "\n".join(rows)


def run_memory(count: int = 1_000_000) -> dict[str, Any]:
    """Bytes per open partial match held in memory (the in-memory form the engine and the
    memory store use), and the SQLite size of the same state."""
    spec = RuleSpec("hourly", "all", ("orders", "inventory"), ("dt", "hr"))
    now = datetime(2024, 1, 1, tzinfo=UTC)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    rss0 = rss_mib()
    states: dict[tuple[str, str], MatchState] = {}
    for i in range(count):
        ref = InputRef(
            f"{i:032x}",
            "orders",
            {"dt": f"d{i // 24}", "hr": f"{i % 24:02d}"},
            "feed",
            {"path": f"orders/{i}"},
            "2024-01-01T00:00:00+00:00",
        )
        step = on_input(spec, None, ref, now)
        states[("hourly", partition_key(spec.key_of(ref.partition)))] = step.state
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    rss = rss_mib() - rss0
    return {
        "open_matches": len(states),
        "bytes_per_match": used / count,
        "total_mib": used / 2**20,
        "rss_growth_mib": rss,
    }


def report_memory(r: dict[str, Any]) -> str:
    return (
        f"memory: {r['open_matches']:,} open partial matches in memory take"
        f" {r['total_mib']:,.0f} MiB ({r['bytes_per_match']:,.0f} bytes each; RSS grew"
        f" {r['rss_growth_mib']:,.0f} MiB)"
    )
