"""Replay: events per second fed from the event log back through the rules.

The log is built by the engine itself (the ``engine`` benchmark's feed: ten observations per
hour partition, one fire each) under a pipeline with one rule; the replay runs under the
pipeline after a rule change: a second rule on the same data, which fires once per hour,
while the first, already fired, fires nothing. Measured: a dry run and a committing replay
(durable SQLite commits, one per page of ``batch_size`` events), with the time per page.

``EVENTFLOW_BENCH_REPLAY_EVENTS`` sets the size of the log (default 200,000; the issue's
figure is 1,000,000, which takes a few minutes to build and replay on two cores).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import percentiles, rss_mib
from benchmarks.engine import PIPELINE, observations
from eventflow.config.loader import load_pipeline
from eventflow.engine import Engine
from eventflow.log import configure
from eventflow.replay import replay
from eventflow.store import open_store

CHANGE = """
  audit:
    when: {all: [inventory], by: [dt, hr]}
    run: {command: ["true"]}
"""


def size() -> int:
    return int(os.environ.get("EVENTFLOW_BENCH_REPLAY_EVENTS", "200000"))


async def _replay(count: int) -> dict[str, Any]:
    configure("warning", "console")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        (root / "build.yaml").write_text(
            PIPELINE.format(batch=1000, state="sqlite:///state.db?synchronous=off")
        )
        (root / "after.yaml").write_text(
            PIPELINE.format(batch=1000, state="sqlite:///state.db") + CHANGE
        )
        built = load_pipeline(root / "build.yaml")
        started = time.perf_counter()
        async with open_store(built.state_dsn, built.base_dir) as store:
            engine = Engine(built, store)
            feed = observations(count)
            for i in range(0, count, 1000):
                await engine.process(feed[i : i + 1000])
            del feed
        build_seconds = time.perf_counter() - started

        after = load_pipeline(root / "after.yaml")
        results: dict[str, Any] = {"events": count, "build_seconds": build_seconds}
        for label, dry in (("dry_run", True), ("commit", False)):
            async with open_store(after.state_dsn, after.base_dir) as store:
                pages = _Pages()
                report = await replay(after, store, since=None, dry_run=dry, progress=pages)
                elapsed = time.perf_counter() - pages.start
            results[label] = {
                "seconds": elapsed,
                "events_per_second": report.events / elapsed,
                "fires": len(report.fired),
                "page_ms": {k: v * 1000 for k, v in percentiles(pages.times).items() if k != "n"},
            }
        results["rss_mib"] = rss_mib()
    return results


class _Pages:
    """The replay's progress callback: the time each page took."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.times: list[float] = []

    def __call__(self, _events: int) -> None:
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now


def run() -> dict[str, Any]:
    return asyncio.run(_replay(size()))


def report(r: dict[str, Any]) -> str:
    lines = [
        f"replay of {r['events']:,} stored events (log built in {r['build_seconds']:.1f} s),"
        " pages of 1,000, after adding a rule:"
    ]
    for label in ("dry_run", "commit"):
        x = r[label]
        p = x["page_ms"]
        lines.append(
            f"  {label:8} {x['events_per_second']:>9,.0f} events/s  {x['seconds']:.1f} s"
            f"  fires {x['fires']:,}  page p50 {p['p50']:.1f} ms  p99 {p['p99']:.1f} ms"
        )
    lines.append(f"  rss {r['rss_mib']:.0f} MiB")
    return "\n".join(lines)
