"""Shared helpers: percentiles, a machine description, pipelines in temporary directories."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from eventflow.runtime import tune_gc


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50": pct(0.50),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}){mem},"
        f" Python {platform.python_version()}"
    )


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def wait_starts(log: Path, count: int, timeout: float = 60) -> dict[str, float]:
    """Read ``N TIMESTAMP`` lines that started tasks append to ``log`` until ``count`` tasks
    have started or ``timeout`` has passed; returns what started, by ``N``."""
    deadline = time.monotonic() + timeout
    starts: dict[str, float] = {}
    while time.monotonic() < deadline and len(starts) < count:
        if log.exists():
            for line in log.read_text().splitlines():
                n, ts = line.split()
                starts[n] = float(ts)
        time.sleep(0.2)
    return starts


@contextlib.contextmanager
def eventflow_running(root: Path, startup: float) -> Iterator[None]:
    """``eventflow run pipeline.yaml`` in ``root`` (warnings only, output discarded) for
    ``startup`` seconds before the block, stopped with SIGTERM (a graceful drain) after it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "eventflow", "run", "pipeline.yaml", "--log-level", "warning"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(startup)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@contextlib.contextmanager
def as_eventflow_run() -> Iterator[None]:
    """Tune the garbage collector as ``eventflow run`` does once started (for benchmarks that
    drive the engine in this process), and put it back afterwards. Call it once the
    benchmark's own data is built: that data is frozen with the rest, as it would not exist
    in a real run (a sensor makes each observation when it reads it)."""
    threshold = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
