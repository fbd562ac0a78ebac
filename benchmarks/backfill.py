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
from collections.abc import Callable
from datetime import datetime
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


def _wait(done: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the pipeline did not get there in time")
        time.sleep(0.2)


def _started(root: Path) -> set[str]:
    log = root / "starts.log"
    return {line.split()[0] for line in log.read_text().splitlines()} if log.exists() else set()


def _events(root: Path) -> int:
    """Events in the process's event log (0 while it has not made its state file)."""
    uri = f"file:{root / '.eventflow' / 'state.db'}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
            return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:  # not made yet
        return 0


def _request(root: Path, backfill_id: str) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(root / ".eventflow" / "state.db", timeout=30)) as db:
        row = db.execute(f"SELECT {COLUMNS} FROM backfills WHERE id = ?", (backfill_id,)).fetchone()
    return decode(row).to_dict()


def _stages(runs: list[dict[str, Any]], landed: dict[str, float], starts: dict[str, float]) -> Any:
    """Where each live run's latency went: landing -> run created (sensor and engine),
    created -> claimed (the dispatcher), claimed -> task start (the process)."""
    by_n = {r["partition"]["n"]: r for r in runs}
    parts: dict[str, list[float]] = {"engine": [], "claim": [], "spawn": []}
    for n, t in landed.items():
        r = by_n.get(n)
        if r is None or r["started_at"] is None or n not in starts:
            continue
        created = datetime.fromisoformat(r["created_at"]).timestamp()
        claimed = datetime.fromisoformat(r["started_at"]).timestamp()
        parts["engine"].append(created - t)
        parts["claim"].append(claimed - created)
        parts["spawn"].append(starts[n] - claimed)
    return {k: percentiles(v) for k, v in parts.items() if v}


def run(partitions: int = 1000, live: int = 150, spacing: float = 0.1, rate: float = 50) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "landing").mkdir()
        (root / "pipeline.yaml").write_text(V1.replace("RATE", f"{rate:g}"))
        load_before = os.getloadavg()
        with eventflow_running(root, startup=2.0):
            for n in range(partitions):
                _land(root, f"hist/{n:04d}/_SUCCESS")
            _wait(lambda: _events(root) >= partitions)  # seen and logged; no rule fires
        v2 = V1.replace("engine:", HISTORY_RULE + "engine:")
        (root / "pipeline.yaml").write_text(v2.replace("RATE", f"{rate:g}"))
        with eventflow_running(root, startup=1.0):
            # Idle is measured once the process is past its start-up (the directory scan of
            # the history): a file landed now has to start its task first. On a busy host a
            # fixed sleep was not always enough, and the idle figures then measured the
            # start-up, not the idle pipeline.
            _land(root, "live/ready.csv")
            _wait(lambda: "ready" in _started(root))
            idle = _live(root, 0, live, spacing)
            submitted = time.time()
            request = _cli(root, "backfill", "history", "--from", "0000", "--to", "9999")
            during = _live(root, live, live, spacing)
            while request["status"] in ("pending", "running"):
                time.sleep(0.5)  # read the row directly: a CLI process a poll would load the host
                request = _request(root, request["id"])
            fired_at = time.time()
            finished = datetime.fromisoformat(request["finished_at"]).timestamp()
            during = {n: t for n, t in during.items() if t < finished}  # while it went on
            wait_starts(root / "starts.log", 2 * live + 1)
            deadline = time.monotonic() + 300
            history = root / "history.log"
            while time.monotonic() < deadline:
                if history.exists() and len(history.read_text().split()) >= partitions:
                    break
                time.sleep(0.5)
            executed_at = time.time()
            runs = _cli(root, "runs", "--rule", "history", "--limit", "100000")
            live_runs = _cli(root, "runs", "--rule", "start", "--limit", "100000")
        starts = wait_starts(root / "starts.log", 2 * live + 1, timeout=1)
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
        "idle_stages": _stages(live_runs, idle, starts),
        "during_stages": _stages(live_runs, during, starts),
        "during_raw": sorted((t, starts[n] - t) for n, t in during.items() if n in starts),
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
        + "".join(
            f"  stages {phase}: "
            + ", ".join(
                f"{k} p50 {v['p50'] * 1000:.1f} / p90 {v['p90'] * 1000:.1f} ms"
                for k, v in r[f"{phase}_stages"].items()
            )
            + "\n"
            for phase in ("idle", "during")
        )
        + f"  load average before {r['load']['before'][0]:.1f}, after {r['load']['after'][0]:.1f}"
    )
