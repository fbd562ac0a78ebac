"""A live backfill of 1,000 partitions while ``eventflow run`` runs on SQLite, with live files
landing: each partition fires once, and the live latency (file landing -> task process
start) is measured idle and during the backfill.

The history (1,000 ``hist/{n}/_SUCCESS`` files) lands while the pipeline has no rule for it;
then the rule ``history`` is added and ``eventflow backfill`` (which submits to the running
process, the SQLite file being held) fires it at ``rate`` partitions a second, while files
land on the live rule one by one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import eventflow_running, percentiles, wait_starts
from eventflow.backfill_requests import COLUMNS, decode

V1 = """
name: backfill
sensors:
  landing: {type: directory, path: ./landing, ready: {stable_for: 1s}, poll_interval: 0s}
datasets:
  part: {sensor: landing, key: "live/{n}.csv"}
  hist: {sensor: landing, key: "hist/{n}/_SUCCESS"}
rules:
  start:
    when: {any: [part], by: [n]}
    run:
      command: [bash, -c, "echo $EVENTFLOW_VAR_N $EPOCHREALTIME >> starts.log"]
engine: {max_runs: 32, poll_interval: 1s, backfill_rate: RATE}
"""
HISTORY_RULE = """  history:
    when: {all: [hist], by: [n]}
    run:
      command: [bash, -c, "echo $EVENTFLOW_VAR_N >> history.log"]
"""


def _land(root: Path, rel: str) -> float:
    stage = root / "stage" / rel.replace("/", "_")
    stage.parent.mkdir(exist_ok=True)
    stage.write_text("x\n")
    target = root / "landing" / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    landed = time.time()
    os.rename(stage, target)
    return landed


def _live(root: Path, first: int, count: int, spacing: float) -> dict[str, float]:
    landed = {}
    for i in range(first, first + count):
        landed[str(i)] = _land(root, f"live/{i}.csv")
        time.sleep(spacing)
    return landed


def _cli(root: Path, command: str, *args: str) -> Any:
    """``eventflow COMMAND pipeline.yaml ARGS --json``, parsed."""
    done = subprocess.run(
        [sys.executable, "-m", "eventflow", command, "pipeline.yaml", *args, "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(done.stdout)


def _request(root: Path, backfill_id: str) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(root / ".eventflow" / "state.db", timeout=30)) as db:
        row = db.execute(f"SELECT {COLUMNS} FROM backfills WHERE id = ?", (backfill_id,)).fetchone()
    return decode(row).to_dict()


def run(partitions: int = 1000, live: int = 150, spacing: float = 0.1, rate: float = 50) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "landing").mkdir()
        (root / "pipeline.yaml").write_text(V1.replace("RATE", f"{rate:g}"))
        load_before = os.getloadavg()
        with eventflow_running(root, startup=2.0):
            for n in range(partitions):
                _land(root, f"hist/{n:04d}/_SUCCESS")
            time.sleep(5.0)  # the history is seen and logged (no rule fires for it)
        v2 = V1.replace("engine:", HISTORY_RULE + "engine:")
        (root / "pipeline.yaml").write_text(v2.replace("RATE", f"{rate:g}"))
        with eventflow_running(root, startup=6.0):  # past the start-up scan of the history
            idle = _live(root, 0, live, spacing)
            submitted = time.time()
            request = _cli(root, "backfill", "history", "--from", "0000", "--to", "9999")
            during = _live(root, live, live, spacing)
            while request["status"] in ("pending", "running"):
                time.sleep(0.5)  # read the row directly: a CLI process a poll would load the host
                request = _request(root, request["id"])
            fired_at = time.time()
            wait_starts(root / "starts.log", 2 * live)
            deadline = time.monotonic() + 300
            history = root / "history.log"
            while time.monotonic() < deadline:
                if history.exists() and len(history.read_text().split()) >= partitions:
                    break
                time.sleep(0.5)
            executed_at = time.time()
            runs = _cli(root, "runs", "--rule", "history", "--limit", "100000")
        starts = wait_starts(root / "starts.log", 2 * live, timeout=1)
        executed = history.read_text().split() if history.exists() else []
        load_after = os.getloadavg()
    keys = [r["partition"]["n"] for r in runs]

    def delays(landed: dict[str, float]) -> dict[str, float]:
        return percentiles([starts[n] - t for n, t in landed.items() if n in starts])

    return {
        "partitions": partitions,
        "rate": rate,
        "request": request,
        "runs": len(runs),
        "distinct_partitions": len(set(keys)),
        "executed": len(executed),
        "executed_distinct": len(set(executed)),
        "fire_seconds": fired_at - submitted,
        "execute_seconds": executed_at - submitted,
        "idle": delays(idle),
        "during": delays(during),
        "load": {"before": load_before, "after": load_after},
    }


def report(r: dict[str, Any]) -> str:
    idle, during = r["idle"], r["during"]
    return (
        f"live backfill of {r['partitions']:,} partitions at {r['rate']:g}/s on SQLite:"
        f" request {r['request']['status']}, fired {r['request']['fired']:,},"
        f" {r['runs']:,} runs for {r['distinct_partitions']:,} partitions,"
        f" tasks executed {r['executed']:,} ({r['executed_distinct']:,} distinct);"
        f" all fired in {r['fire_seconds']:.1f} s"
        f" ({r['partitions'] / r['fire_seconds']:.0f} partitions/s),"
        f" all executed in {r['execute_seconds']:.1f} s\n"
        f"  live file landing -> task start, idle ({idle['n']}): p50 {idle['p50'] * 1000:.1f} ms,"
        f" p90 {idle['p90'] * 1000:.1f} ms, p99 {idle['p99'] * 1000:.1f} ms\n"
        f"  during the backfill ({during['n']}): p50 {during['p50'] * 1000:.1f} ms,"
        f" p90 {during['p90'] * 1000:.1f} ms, p99 {during['p99'] * 1000:.1f} ms"
        f" (p50 {during['p50'] / idle['p50']:.2f}x, p99 {during['p99'] / idle['p99']:.2f}x idle)\n"
        f"  load average before {r['load']['before'][0]:.1f}, after {r['load']['after'][0]:.1f}"
    )
