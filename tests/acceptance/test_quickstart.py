"""The quickstart in examples/ (what `make quickstart` runs) works end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_script_runs_the_join_end_to_end(tmp_path: Path) -> None:
    """run.sh validates, starts eventflow, lands files, and shows the join firing, the chained
    rule, the partial match and the completion events, then stops cleanly."""
    work = tmp_path / "quickstart"
    shutil.copytree(
        ROOT / "examples/quickstart",
        work,
        ignore=shutil.ignore_patterns(".eventflow", "landing", "out"),
    )
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "EVENTFLOW": str(bin_dir / "eventflow"), "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(work / "run.sh")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "inventory  missing" in out  # why, before the second input
    assert "report for 2024-01-01" in out  # the task's output
    for event in (
        "eventflow.run.succeeded        daily_report/dt=2024-01-01",
        "eventflow.dataset.available    report/dt=2024-01-01",
        "eventflow.run.succeeded        announce_report/dt=2024-01-01",
    ):
        assert event in out
    partial = out[out.index("Partial matches") :]
    assert "dt=2024-01-02" in partial  # status shows the partial match
    assert "inventory" in partial
