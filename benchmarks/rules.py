"""Rules for real pipelines: evaluation with 10,000 rules and 1,000,000 open partial matches
(pure core, events/s and memory), and 100,000 deadlines due at once through the engine and
a SQLite store (timers/s, from the due rows to committed `deadline.missed` events)."""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eventflow.config.loader import load_pipeline
from eventflow.engine import Engine
from eventflow.events import InputRef, partition_key
from eventflow.log import configure
from eventflow.records import Changes, Timer
from eventflow.rules import DEADLINE, DeadlineExpr, Group, MatchState, Need, RuleSpec, on_input
from eventflow.store import open_store

RULES = 10_000
OPEN = 1_000_000
EVALS = 200_000
DEADLINES = int(os.environ.get("BENCH_DEADLINES", "100000"))
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _specs() -> list[RuleSpec]:
    """A third each: joins with a window and a deadline, nested conditions with an hourly
    count, and joins with a quiet period."""
    deadline = DeadlineExpr.parse("{dt}T06:00Z + 1d")
    specs = []
    for i in range(RULES):
        a, b, c = f"a{i}", f"b{i}", f"c{i}"
        kind = i % 3
        if kind == 0:
            spec = RuleSpec(
                f"r{i}", "all", (a, b), ("dt",), within=timedelta(hours=2), deadline=deadline
            )
        elif kind == 1:
            cond = Group("all", (Need(a), Group("any", (Need(b), Need(c, 24)))))
            spec = RuleSpec(f"r{i}", "all", (a, b, c), ("dt",), condition=cond)
        else:
            spec = RuleSpec(f"r{i}", "all", (a, b), ("dt",), quiet=timedelta(minutes=5))
        specs.append(spec)
    return specs


def _ref(dataset: str, dt: str, n: int) -> InputRef:
    return InputRef(f"e{n}", dataset, {"dt": dt, "hr": "00"}, "s", {"offset": n}, "")


def run_core() -> dict[str, Any]:
    specs = _specs()
    gc.collect()
    before = _rss()
    states: dict[tuple[str, str], MatchState] = {}
    start = time.perf_counter()
    for i in range(OPEN):  # the first input of 1,000,000 (rule, day) partitions
        spec = specs[i % RULES]
        r = _ref(
            spec.datasets[0], f"2024-{1 + i // RULES // 28 % 12:02d}-{1 + i // RULES % 28:02d}", i
        )
        key = partition_key(spec.key_of(r.partition))
        states[(spec.name, key)] = on_input(spec, None, r, T0, key).state
    build = time.perf_counter() - start
    gc.collect()
    memory = _rss() - before
    inputs = []
    for j in range(EVALS):  # half complete an open match, half open a new partition
        i = j // 2 * 5 % OPEN
        spec = specs[i % RULES]
        if j % 2 == 0:
            dt = f"2024-{1 + i // RULES // 28 % 12:02d}-{1 + i // RULES % 28:02d}"
            inputs.append((spec, _ref(spec.datasets[1], dt, OPEN + j)))
        else:
            inputs.append((spec, _ref(spec.datasets[0], f"2025-{j % 97}", OPEN + j)))
    effects = 0
    start = time.perf_counter()
    for spec, r in inputs:
        key = partition_key(spec.key_of(r.partition))
        step = on_input(spec, states.get((spec.name, key)), r, T0, key)
        states[(spec.name, key)] = step.state
        effects += len(step.effects)
    elapsed = time.perf_counter() - start
    return {
        "rules": RULES,
        "open_matches": OPEN,
        "evaluations": EVALS,
        "evaluations_per_second": EVALS / elapsed,
        "first_inputs_per_second": OPEN / build,
        "bytes_per_open_match": memory / OPEN,
        "memory_mib": memory / 2**20,
        "effects": effects,
    }


def _rss() -> int:
    """Resident memory of this process in bytes (what the open matches cost the machine)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def report_core(r: dict[str, Any]) -> str:
    return (
        f"rules core, {r['rules']:,} rules, {r['open_matches']:,} open matches:"
        f" {r['evaluations_per_second']:,.0f} evaluations/s"
        f" (first inputs {r['first_inputs_per_second']:,.0f}/s);"
        f" {r['memory_mib']:,.0f} MiB resident for the open matches,"
        f" {r['bytes_per_open_match']:,.0f} B each"
    )


PIPELINE = """
name: bench
state: "sqlite:///state.db?synchronous=normal"
engine: {batch_size: 5000}
sensors:
  feed: {type: directory, path: ./in}
datasets:
  orders:    {sensor: feed, key: "orders/{dt}/_SUCCESS"}
  inventory: {sensor: feed, key: "inventory/{dt}/_SUCCESS"}
rules:
  report:
    when: {all: [orders, inventory], by: [dt]}
    expect_by: "{dt}T06:00Z + 1d"
    run: {command: ["true"]}
publish:
  - {type: file, path: out/events.jsonl}
"""


async def _timers() -> dict[str, Any]:
    configure("error", "console")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        (root / "p.yaml").write_text(PIPELINE)
        pipeline = load_pipeline(root / "p.yaml")
        spec = pipeline.rules["report"].spec
        async with open_store(pipeline.state_dsn, pipeline.base_dir) as store:
            # 100,000 days with their orders in and their deadlines pending, all in the past.
            for chunk in range(0, DEADLINES, 10_000):
                changes = Changes()
                for i in range(chunk, chunk + 10_000):
                    dt = (T0.date() + timedelta(days=i)).isoformat()
                    r = InputRef(f"e{i}", "orders", {"dt": dt}, "feed", {"n": i}, T0.isoformat())
                    step = on_input(spec, None, r, T0)
                    changes.matches[("report", step.state.key)] = step.state
                    assert step.state.deadline_at is not None
                    changes.timers_add.append(
                        Timer(DEADLINE, "report", step.state.key, 0, step.state.deadline_at)
                    )
                async with store.transaction() as tx:
                    await tx.apply(changes)
            later = T0 + timedelta(days=DEADLINES + 2)
            engine = Engine(pipeline, store, clock=lambda: later)
            batches: list[float] = []
            handled = 0
            start = time.perf_counter()
            while handled < DEADLINES:
                engine.wake()
                t = time.perf_counter()
                stats = await engine.process([])
                batches.append(time.perf_counter() - t)
                if not stats.timers:
                    break
                handled += stats.timers
            elapsed = time.perf_counter() - start
            counts = await store.counts()
        assert handled == DEADLINES, handled
        assert counts["timers"] == 0, counts
        return {
            "deadlines": handled,
            "seconds": elapsed,
            "timers_per_second": handled / elapsed,
            "batches": len(batches),
            "batch_p50_ms": sorted(batches)[len(batches) // 2] * 1000,
            "batch_max_ms": max(batches) * 1000,
            "outbox": counts["outbox"],
        }


def run_timers() -> dict[str, Any]:
    return asyncio.run(_timers())


def report_timers(r: dict[str, Any]) -> str:
    return (
        f"deadlines: {r['deadlines']:,} due at once handled in {r['seconds']:.1f}s,"
        f" {r['timers_per_second']:,.0f} timers/s ({r['batches']} batches of up to 5,000,"
        f" p50 {r['batch_p50_ms']:.0f} ms, max {r['batch_max_ms']:.0f} ms;"
        f" {r['outbox']:,} deadline.missed events in the outbox)"
    )
