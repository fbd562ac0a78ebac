"""File landing -> task process start, end to end through the real ``eventflow run``.

Files are renamed into place one by one (spaced so that each is measured alone); the task
is ``bash -c 'echo N $EPOCHREALTIME'``, so the timestamp is taken inside the started task
process without a further fork.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import eventflow_running, percentiles, wait_starts

PIPELINE = """
name: latency
sensors:
  landing: {type: directory, path: ./landing, ready: {stable_for: 1s}, poll_interval: 0s}
datasets:
  part: {sensor: landing, key: "{n}.csv"}
rules:
  start:
    when: {any: [part], by: [n]}
    run:
      command: [bash, -c, "echo $EVENTFLOW_VAR_N $EPOCHREALTIME >> starts.log"]
engine: {max_runs: 32, poll_interval: 1s}
"""


def run(files: int = 1000, spacing: float = 0.01) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "landing").mkdir()
        (root / "pipeline.yaml").write_text(PIPELINE)
        with eventflow_running(root, startup=2.0):
            landed: dict[str, float] = {}
            stage = root / "stage"
            stage.mkdir()
            for i in range(files):
                name = f"{i}.csv"
                tmpfile = stage / name
                tmpfile.write_text("x\n")
                landed[str(i)] = time.time()
                os.rename(tmpfile, root / "landing" / name)
                time.sleep(spacing)
            starts = wait_starts(root / "starts.log", files)
    delays = [starts[n] - landed[n] for n in starts]
    result: dict[str, Any] = {"files": files, "started": len(starts)}
    result.update({k: v for k, v in percentiles(delays).items()})
    return result


def report(r: dict[str, Any]) -> str:
    return (
        f"file landing -> task process start ({r['started']:,}/{r['files']:,} files renamed"
        f" into place): p50 {r['p50'] * 1000:.1f} ms, p90 {r['p90'] * 1000:.1f} ms,"
        f" p99 {r['p99'] * 1000:.1f} ms, max {r['max'] * 1000:.1f} ms"
    )
