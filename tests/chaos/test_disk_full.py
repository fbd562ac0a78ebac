"""A disk that fills up under a running ``eventflow run``: a small file system (tmpfs, or a
loop-mounted image) holds the SQLite state and/or the runs directory; it is filled while
files keep landing, then space is freed. The process waits instead of exiting or failing
runs, says why in its log, and resumes: every input fires exactly once, no run fails."""

from __future__ import annotations

import collections
import contextlib
import errno
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.harness import Project, lines, wait_until
from tests.services._process import unavailable

SMALL_FS_BYTES = 8 * 1024 * 1024
PIPELINE = """
name: diskfull
state: sqlite:///{state}
sensors:
  landing: {{type: directory, path: ./landing, ready: {{stable_for: 100ms}}, poll_interval: 1s}}
datasets:
  part: {{sensor: landing, key: "{{n}}.csv"}}
rules:
  each:
    when: {{any: [part], by: [n]}}
    run:
      command: [sh, -c, "echo $EVENTFLOW_VAR_N $EVENTFLOW_ATTEMPT >> {executed}; echo done"]
      retries: 1
engine: {{poll_interval: 100ms, max_runs: 4, runs_dir: {runs}}}
"""


def _mount(target: Path, scratch: Path) -> list[str] | None:
    """Mount a small file system on ``target``: tmpfs, else an ext4 image on a loop device.
    Returns the command that unmounts it, or None when neither can be mounted here."""
    tmpfs = ["mount", "-t", "tmpfs", "-o", f"size={SMALL_FS_BYTES}", "tmpfs", str(target)]
    if subprocess.run(tmpfs, capture_output=True).returncode == 0:
        return ["umount", str(target)]
    image = scratch / "small.img"
    with image.open("wb") as f:
        f.truncate(SMALL_FS_BYTES)
    made = subprocess.run(["mkfs.ext4", "-q", str(image)], capture_output=True)
    if made.returncode == 0 and (
        subprocess.run(["mount", "-o", "loop", str(image), str(target)]).returncode == 0
    ):
        return ["umount", "-d", str(target)]
    return None


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A directory on a file system of a few MiB of its own (unmounted after the test)."""
    if shutil.which("mount") is None:
        unavailable("no mount command: no small file system can be made here")
    target = tmp_path / "small"
    target.mkdir()
    unmount = _mount(target, tmp_path)
    if unmount is None:
        unavailable("neither tmpfs nor a loop device can be mounted here")
    try:
        yield target
    finally:
        for project in Project.live:
            project.kill()
        Project.live.clear()
        subprocess.run(unmount, check=True)


def fill(fs: Path) -> Path:
    """Write a file on ``fs`` until the file system has no space left; returns it."""
    filler = fs / f"filler-{uuid.uuid4().hex[:6]}"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
        for size in (4096, 512, 1):  # the last partial blocks
            with contextlib.suppress(OSError):
                while True:
                    f.write(chunk[:size])
    probe = fs / "probe"
    with pytest.raises(OSError, match="No space left") as full, probe.open("wb", 0) as out:
        out.write(chunk)
    assert full.value.errno == errno.ENOSPC
    probe.unlink(missing_ok=True)
    return filler


def events(p: Project, name: str) -> list[dict[str, Any]]:
    return [e for e in p.log_events() if e.get("event") == name]


def executed(path: Path) -> collections.Counter[str]:
    return collections.Counter(line.split()[0] for line in lines(path))


@pytest.mark.parametrize("where", ["state_and_runs", "runs_dir"])
def test_a_full_disk_pauses_eventflow_until_space_returns(
    tmp_path: Path, small_fs: Path, where: str
) -> None:
    """Fill the small file system under a running worker while files keep landing: it waits
    (``disk_full``, the metric's log twin) without exiting or failing a run; once space is
    freed every file fires exactly once and every run succeeds."""
    state = small_fs / "state.db" if where == "state_and_runs" else tmp_path / "state.db"
    runs_log = tmp_path / "executed.log"
    p = Project(
        tmp_path,
        PIPELINE.format(state=state, executed=runs_log, runs=small_fs / "runs"),
    )
    p.start()
    for n in range(5):
        p.land(f"{n}.csv")
    wait_until(lambda: len(executed(runs_log)) == 5, timeout=60)

    filler = fill(small_fs)
    for n in range(5, 25):
        p.land(f"{n}.csv")
    waited = wait_until(lambda: events(p, "disk_full"), timeout=60)
    assert p.proc is not None
    assert p.proc.poll() is None, "eventflow exited on a full disk"
    assert len(executed(runs_log)) < 25, "everything ran although the disk was full"
    for n in range(25, 30):  # files keep landing while it waits
        p.land(f"{n}.csv")

    filler.unlink()
    wait_until(lambda: len(executed(runs_log)) == 30, timeout=90)
    wait_until(lambda: events(p, "disk_space_returned"), timeout=30)
    assert p.proc.poll() is None, "eventflow exited"
    assert p.stop() == 0

    counts = executed(runs_log)
    assert set(counts) == {str(n) for n in range(30)}
    assert max(counts.values()) == 1, f"ran twice: {counts}"
    runs = p.runs()
    assert len(runs) == 30
    assert {r["status"] for r in runs} == {"succeeded"}
    assert all(r["attempt"] == 1 for r in runs), "a full disk used up an attempt"
    operations = {e["operation"] for e in waited + events(p, "disk_full")}
    # With the state on the small file system, whichever write comes first meets the full
    # disk: the engine's commit, a claim or a run's result.
    expected = {"commit", "claim", "result"} if where == "state_and_runs" else {"prepare"}
    assert operations & expected, operations
    assert all(e.get("error") for e in waited)
