"""Run the benchmarks: ``python -m benchmarks [latency] [core] [engine] [memory]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks import core, engine, latency
from benchmarks.common import machine


def main(argv: list[str]) -> None:
    names = argv or ["latency", "core", "engine", "memory"]
    print(f"machine: {machine()}", flush=True)
    results = {}
    for name in names:
        if name == "latency":
            r = latency.run()
            print(latency.report(r), flush=True)
        elif name == "core":
            r = core.run()
            print(core.report(r), flush=True)
        elif name == "engine":
            r = engine.run_engine()
            print(engine.report_engine(r), flush=True)
        elif name == "memory":
            r = engine.run_memory()
            print(engine.report_memory(r), flush=True)
        else:
            raise SystemExit(f"unknown benchmark {name!r}; known: latency core engine memory")
        results[name] = r
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(
        json.dumps({"machine": machine(), **results}, indent=2, default=str)
    )


if __name__ == "__main__":
    main(sys.argv[1:])
