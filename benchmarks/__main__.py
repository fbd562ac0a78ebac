"""Run the benchmarks: ``python -m benchmarks [NAME ...]`` (every one by default)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import backfill, core, engine, kafka, latency, mqtt, replay, rules, s3
from benchmarks.common import machine

BENCHMARKS: dict[str, tuple[Callable[[], Any], Callable[[Any], str]]] = {
    "latency": (latency.run, latency.report),
    "core": (core.run, core.report),
    "engine": (engine.run_engine, engine.report_engine),
    "memory": (engine.run_memory, engine.report_memory),
    "rules": (rules.run_core, rules.report_core),
    "deadlines": (rules.run_timers, rules.report_timers),
    "engine-postgres": (engine.run_engine_postgres, engine.report_engine_postgres),
    "kafka": (kafka.run, kafka.report),
    "mqtt": (mqtt.run, mqtt.report),
    "replay": (replay.run, replay.report),
    "s3": (s3.run, s3.report),
    "backfill": (backfill.run, backfill.report),
}


def main(argv: list[str]) -> None:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]!r}; known: {' '.join(BENCHMARKS)}")
    print(f"machine: {machine()}", flush=True)
    results = {}
    for name in names:
        run, report = BENCHMARKS[name]
        results[name] = run()
        print(report(results[name]), flush=True)
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(
        json.dumps({"machine": machine(), **results}, indent=2, default=str)
    )


if __name__ == "__main__":
    main(sys.argv[1:])
