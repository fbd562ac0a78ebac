"""The directory sensor against real files in a temporary directory and the real observer."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent, WatchDescriptor

from eventflow.errors import SensorError
from eventflow.events import Observation
from eventflow.testing import RecordingContext, running
from eventflow.types import PluginEnv, Sensor
from eventflow_sensors.directory.sensor import DirectorySensor, DirectorySensorConfig

# watchdog warns (RuntimeWarning, on its inotify thread) when a directory created with its
# parents gets its watch added twice; harmless, but `filterwarnings = error` would kill that
# thread.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")

STABLE = 0.2
_names = itertools.count()


def make(tmp_path: Path, **config: Any) -> DirectorySensor:
    config = {"type": "directory", "path": "landing", **config}
    config.setdefault("ready", {"stable_for": f"{STABLE}s"})
    (tmp_path / "landing").mkdir(exist_ok=True)
    return DirectorySensor("landing", config, PluginEnv("test", tmp_path))


def rename_in(tmp_path: Path, rel: str, data: str = "data\n") -> Path:
    """Write ``data`` outside the tree and rename it to ``landing/rel``."""
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    tmp = staging / f"f{next(_names)}"
    tmp.write_text(data)
    dest = tmp_path / "landing" / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.rename(tmp, dest)
    return dest


def write(tmp_path: Path, rel: str, data: str = "data\n") -> Path:
    path = tmp_path / "landing" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    return path


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``check()`` holds (for state that has no event to wait on)."""
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


def keys(observations: list[Observation]) -> list[str]:
    return sorted(o.key or "" for o in observations)


async def test_sensor_satisfies_the_plugin_protocol(tmp_path: Path) -> None:
    """The sensor is a Sensor with its config model, and the defaults are the documented ones."""
    sensor = make(tmp_path)
    assert isinstance(sensor, Sensor)
    config = DirectorySensorConfig.model_validate({"type": "directory", "path": "x"})
    assert config.ready.wait.total_seconds() == 1
    assert config.ready.markers == ("_SUCCESS",)
    assert config.include == ("**",)
    assert config.recursive
    assert not config.polling
    assert config.interval.total_seconds() == 30


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"ready": {"stable_for": "1s", "marker": "_SUCCESS"}}, "does not go with"),
        ({"ready": {"marker": "_SUCCESS", "markers": ["_DONE"]}}, "does not go with"),
        ({"ready": {"marker": "a/_SUCCESS"}}, "file name, not a path"),
        ({"ready": {"markers": ["dt=1/_DONE"]}}, "file name, not a path"),
        ({"polling": True, "poll_interval": "0s"}, "above 0s"),
        ({"ready": {"stable_for": "soon"}}, "not a duration"),
        ({"recursve": False}, "Extra inputs"),
    ],
)
def test_config_errors_say_what_to_write(config: dict[str, Any], error: str) -> None:
    """Invalid sensor configs are rejected with a message that shows the valid form."""
    with pytest.raises(ValueError, match=error):
        DirectorySensorConfig.model_validate({"type": "directory", "path": "x", **config})


async def test_new_file_fires_once_with_its_position(tmp_path: Path) -> None:
    """A new file is emitted once, with path/size/mtime as position, cursor and attributes."""
    sensor = make(tmp_path)
    ctx = RecordingContext("landing")
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        path = write(tmp_path, "orders/a.csv", "1,2,3\n")
        obs = await ctx.get()
        assert await ctx.settle() == []
    st = path.stat()
    assert obs.key == "orders/a.csv"
    assert obs.position == {"path": "orders/a.csv", "size": 6, "mtime_ns": st.st_mtime_ns}
    assert obs.cursor == ("orders/a.csv", {"size": 6, "mtime_ns": st.st_mtime_ns})
    assert obs.time == datetime.fromtimestamp(st.st_mtime_ns // 1000 / 1e6, UTC)
    assert obs.payload is None
    assert obs.attributes["abs_path"] == str(path)
    assert obs.attributes["size"] == 6
    assert obs.attributes["mtime"] == obs.time.isoformat()
    assert ctx.healthy


async def test_rename_into_place_is_immediate(tmp_path: Path) -> None:
    """A file renamed into place, from outside or from a temporary name, is ready at once."""
    sensor = make(tmp_path, ready={"stable_for": "10s"})
    ctx = RecordingContext()
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        started = time.monotonic()
        rename_in(tmp_path, "outside.csv")
        assert (await ctx.get(timeout=2)).key == "outside.csv"
        tmp = write(tmp_path, "inside.csv.tmp")
        os.rename(tmp, tmp.with_name("inside.csv"))
        assert (await ctx.get(timeout=2)).key == "inside.csv"
        assert time.monotonic() - started < 2
        write(tmp_path, "in_place.csv")
        assert await ctx.settle(quiet=0.5) == []  # written in place: waits the 10s


async def test_directory_moved_into_place_is_immediate(tmp_path: Path) -> None:
    """Every file of a directory renamed into the tree is ready at once, however deep."""
    staged = tmp_path / "staging" / "dt=2024-01-01"
    (staged / "hr=00").mkdir(parents=True)
    (staged / "a.csv").write_text("a\n")
    (staged / "hr=00" / "b.csv").write_text("b\n")
    ctx = RecordingContext()
    async with running(make(tmp_path, ready={"stable_for": "10s"}), ctx):
        await ctx.wait_healthy()
        os.rename(staged, tmp_path / "landing" / "dt=2024-01-01")
        found = await ctx.take(2, timeout=2)
        assert keys(found) == ["dt=2024-01-01/a.csv", "dt=2024-01-01/hr=00/b.csv"]
        assert await ctx.settle() == []


async def test_root_given_through_a_symlink_is_watched(tmp_path: Path) -> None:
    """A root path that is a symlink to a directory is watched (the link is resolved)."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    sensor = DirectorySensor(
        "landing",
        {"type": "directory", "path": "link", "ready": {"stable_for": "10s"}},
        PluginEnv("test", tmp_path),
    )
    ctx = RecordingContext()
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        (tmp_path / "staging.csv").write_text("x\n")
        os.rename(tmp_path / "staging.csv", tmp_path / "link" / "a.csv")
        assert (await ctx.get(timeout=2)).key == "a.csv"


async def test_half_written_file_is_emitted_once_when_stable(tmp_path: Path) -> None:
    """A file written in two parts is emitted once, stable_for after the last write, whole."""
    sensor = make(tmp_path, ready={"stable_for": "0.4s"})
    ctx = RecordingContext()
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        path = tmp_path / "landing" / "big.csv"
        with path.open("w") as f:
            f.write("first half\n")
            f.flush()
            await asyncio.sleep(0.25)
            assert ctx.take_nowait() == []
            f.write("second half\n")
        last_write = time.monotonic()
        obs = await ctx.get(timeout=3)
        assert time.monotonic() - last_write >= 0.35
        assert await ctx.settle() == []
    assert obs.position["size"] == len("first half\nsecond half\n")


async def test_marker_written_in_place_is_ready_when_it_appears(tmp_path: Path) -> None:
    """A file named in `markers` (default `_SUCCESS`) written in place skips `stable_for`."""
    sensor = make(tmp_path, ready={"stable_for": "10s", "markers": ["_SUCCESS", "_DONE"]})
    ctx = RecordingContext()
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        for rel in ("dt=1/_SUCCESS", "dt=2/_DONE"):
            written = time.monotonic()
            write(tmp_path, rel, "")
            assert (await ctx.get(timeout=2)).key == rel
            assert time.monotonic() - written < 1
        write(tmp_path, "dt=1/part-0.csv")  # not a marker: waits its 10s
        assert await ctx.settle(0.5) == []


async def test_rewritten_marker_is_emitted_again_at_once(tmp_path: Path) -> None:
    """Flink rewrites `_SUCCESS` in place when a partition is updated: each rewrite is
    emitted once, without a stability wait, with its new mtime."""
    sensor = make(tmp_path, ready={"stable_for": "10s"})
    ctx = RecordingContext()
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        marker = write(tmp_path, "dt=1/_SUCCESS", "")
        first = await ctx.get(timeout=2)
        await asyncio.sleep(0.05)  # past the filesystem's timestamp granularity
        marker.write_text("")
        second = await ctx.get(timeout=2)
        assert await ctx.settle(0.3) == []
    assert first.key == second.key == "dt=1/_SUCCESS"
    assert second.position["mtime_ns"] > first.position["mtime_ns"]


async def test_empty_markers_list_makes_markers_wait(tmp_path: Path) -> None:
    """`markers: []` asks for the stability wait on `_SUCCESS` like any other file."""
    sensor = make(tmp_path, ready={"stable_for": "0.4s", "markers": []})
    ctx = RecordingContext()
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        written = time.monotonic()
        write(tmp_path, "dt=1/_SUCCESS", "")
        assert (await ctx.get(timeout=3)).key == "dt=1/_SUCCESS"
        assert time.monotonic() - written >= 0.35


async def test_temporary_names_and_hidden_directories_are_ignored(tmp_path: Path) -> None:
    """Default ignore globs hide temp files, editor files, hidden dirs and Flink in-progress."""
    sensor = make(tmp_path)
    ctx = RecordingContext()
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        for rel in [
            "a.tmp",
            ".hidden.csv",
            "x.part",
            "y.csv~",
            ".y.csv.swp",
            "dt=1/.part-0-0.inprogress.5f2c",
            ".staging/inner.csv",
        ]:
            write(tmp_path, rel)
        flink = write(tmp_path, "dt=1/.part-0-1.inprogress.77aa")
        os.rename(flink, flink.with_name("part-0-1"))
        write(tmp_path, "good.csv")
        assert keys(await ctx.settle(quiet=0.5)) == ["dt=1/part-0-1", "good.csv"]


async def test_include_and_exclude(tmp_path: Path) -> None:
    """Only files matching an include glob and no exclude glob are observed, at any depth."""
    sensor = make(tmp_path, include=["*.csv", "manifests/**"], exclude=["skip/**", "*bad*"])
    ctx = RecordingContext()
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        for rel in [
            "a.csv",
            "a.json",
            "deep/er/b.csv",
            "skip/c.csv",
            "bad.csv",
            "manifests/m.json",
        ]:
            rename_in(tmp_path, rel)
        assert keys(await ctx.settle()) == ["a.csv", "deep/er/b.csv", "manifests/m.json"]


@pytest.mark.parametrize("recursive", [True, False])
async def test_recursion_on_and_off(tmp_path: Path, recursive: bool) -> None:
    """With recursive off only the root's own files are observed, at start and while running."""
    write(tmp_path, "sub/old.csv")
    write(tmp_path, "old.csv")
    (tmp_path / "landing" / "sub2" / "deeper").mkdir(parents=True)
    sensor = make(tmp_path, recursive=recursive, ready={"stable_for": "0s"})
    ctx = RecordingContext()
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        rename_in(tmp_path, "top.csv")
        rename_in(tmp_path, "sub2/deeper/new.csv")
        found = keys(await ctx.settle())
    if recursive:
        assert found == ["old.csv", "sub/old.csv", "sub2/deeper/new.csv", "top.csv"]
    else:
        assert found == ["old.csv", "top.csv"]


async def test_marker_holds_files_until_the_marker_arrives(tmp_path: Path) -> None:
    """In marker mode a directory's files are emitted only with its marker, the marker last."""
    (tmp_path / "landing" / "dt=1").mkdir(parents=True)
    sensor = make(tmp_path, ready={"marker": "_SUCCESS"})
    ctx = RecordingContext()
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        rename_in(tmp_path, "dt=1/part-0.csv")
        write(tmp_path, "dt=1/part-1.csv")
        assert await ctx.settle(quiet=0.4) == []
        write(tmp_path, "dt=1/_SUCCESS", "")
        batch = await ctx.take(3)
        assert keys(batch) == ["dt=1/_SUCCESS", "dt=1/part-0.csv", "dt=1/part-1.csv"]
        assert batch[-1].key == "dt=1/_SUCCESS"
        assert await ctx.settle() == []


async def test_marker_late_file_and_rewritten_marker(tmp_path: Path) -> None:
    """A file landing in a marked directory is emitted at once; a rewritten marker again."""
    write(tmp_path, "dt=1/part-0.csv")
    marker = write(tmp_path, "dt=1/_SUCCESS", "")
    sensor = make(tmp_path, ready={"marker": "_SUCCESS"})
    ctx = RecordingContext()
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        assert keys(await ctx.take(2)) == ["dt=1/_SUCCESS", "dt=1/part-0.csv"]
        rename_in(tmp_path, "dt=1/part-1.csv")
        assert (await ctx.get(timeout=1)).key == "dt=1/part-1.csv"
        first = ctx.emitted[0]
        await asyncio.sleep(0.05)  # a new mtime, past the filesystem's clock granularity
        marker.write_text("")  # rewritten in place, as Flink's success-file policy does
        again = await ctx.get(timeout=2)
        assert again.key == "dt=1/_SUCCESS"
        assert again.position != first.position
        assert await ctx.settle() == []


async def test_marker_removed_holds_new_files_again(tmp_path: Path) -> None:
    """After its marker is deleted a directory holds new files until a new marker arrives."""
    write(tmp_path, "dt=1/part-0.csv")
    marker = write(tmp_path, "dt=1/_SUCCESS", "")
    sensor = make(tmp_path, ready={"marker": "_SUCCESS"})
    ctx = RecordingContext()
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        await ctx.take(2)
        marker.unlink()
        await asyncio.sleep(0.1)
        rename_in(tmp_path, "dt=1/part-1.csv")
        assert await ctx.settle(quiet=0.4) == []
        rename_in(tmp_path, "dt=1/_SUCCESS", "")
        assert keys(await ctx.take(2)) == ["dt=1/_SUCCESS", "dt=1/part-1.csv"]


async def test_reconciliation_at_start(tmp_path: Path) -> None:
    """At start new and changed files are emitted, unchanged ones not, deleted ones forgotten."""
    same = write(tmp_path, "same.csv")
    changed = write(tmp_path, "changed.csv", "longer now\n")
    write(tmp_path, "new.csv")
    st = same.stat()
    ctx = RecordingContext(
        cursor={
            "same.csv": {"size": st.st_size, "mtime_ns": st.st_mtime_ns},
            "changed.csv": {"size": 1, "mtime_ns": changed.stat().st_mtime_ns - 10**9},
            "deleted.csv": {"size": 5, "mtime_ns": 1},
        }
    )
    async with running(make(tmp_path), ctx):
        found = await ctx.settle(commit=True)
    assert keys(found) == ["changed.csv", "new.csv"]
    assert ctx.forgotten == ["deleted.csv"]
    assert set(ctx.cursor) == {"same.csv", "changed.csv", "new.csv"}


async def test_restart_with_committed_cursor_emits_nothing_again(tmp_path: Path) -> None:
    """A second run over the committed cursor emits only what changed while it was stopped."""
    write(tmp_path, "a.csv")
    write(tmp_path, "b/c.csv")
    ctx = RecordingContext()
    async with running(make(tmp_path), ctx):
        assert len(await ctx.settle(commit=True)) == 2
    async with running(make(tmp_path), ctx):
        await ctx.wait_healthy()
        assert await ctx.settle(quiet=0.4) == []
    write(tmp_path, "b/c.csv", "rewritten while stopped\n")
    async with running(make(tmp_path), ctx):
        assert keys(await ctx.settle(commit=True)) == ["b/c.csv"]


async def test_changed_and_deleted_files_while_running(tmp_path: Path) -> None:
    """A rewritten file is emitted again; a deleted one is forgotten from the cursor."""
    ctx = RecordingContext()
    async with running(make(tmp_path), ctx):
        await ctx.wait_healthy()
        path = rename_in(tmp_path, "a.csv", "v1\n")
        await ctx.get(commit=True)
        rename_in(tmp_path, "a.csv", "version 2\n")
        obs = await ctx.get(commit=True)
        assert obs.position["size"] == len("version 2\n")
        path.unlink()
        await eventually(lambda: "a.csv" not in ctx.cursor)
    assert ctx.forgotten == ["a.csv"]


async def test_polling_observer(tmp_path: Path) -> None:
    """With polling on, existing and new files are emitted once, moves within the tree too."""
    write(tmp_path, "before.csv")
    sensor = make(tmp_path, polling=True, poll_interval="0.1s")
    ctx = RecordingContext()
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        assert (await ctx.get(timeout=2)).key == "before.csv"
        rename_in(tmp_path, "new.csv")
        tmp = write(tmp_path, "moved.csv.tmp")
        os.rename(tmp, tmp.with_name("moved.csv"))
        assert keys(await ctx.settle(quiet=0.6)) == ["moved.csv", "new.csv"]


@pytest.mark.parametrize(
    ("setup", "problem", "hint"),
    [
        (lambda root: None, "does not exist", "create it"),
        (lambda root: root.write_text("a file"), "is not a directory", "directory"),
    ],
)
async def test_unusable_root_raises_sensor_error(
    tmp_path: Path, setup: Any, problem: str, hint: str
) -> None:
    """A root that is missing or not a directory fails with the sensor, path and a hint."""
    root = tmp_path / "nowhere"
    setup(root)
    sensor = DirectorySensor(
        "landing", {"type": "directory", "path": "nowhere"}, PluginEnv("test", tmp_path)
    )
    ctx = RecordingContext()
    with pytest.raises(SensorError) as raised:
        await sensor.run(ctx)
    message = str(raised.value)
    assert "'landing'" in message
    assert str(root) in message
    assert problem in message
    assert raised.value.hint is not None
    assert hint in raised.value.hint
    assert ctx.health[-1][0] is False


async def test_root_deleted_while_running_raises(tmp_path: Path) -> None:
    """Deleting the watched directory makes the sensor fail (the supervisor restarts it)."""
    ctx = RecordingContext()
    task = asyncio.create_task(make(tmp_path).run(ctx))
    await ctx.wait_healthy()
    shutil.rmtree(tmp_path / "landing")
    with pytest.raises(SensorError, match="does not exist"):
        await asyncio.wait_for(task, 5)
    assert ctx.healthy is False


async def test_cancellation_leaves_no_thread_behind(tmp_path: Path) -> None:
    """Cancelling the sensor stops and joins the observer and its worker threads."""
    before = set(threading.enumerate())
    write(tmp_path, "a.csv")
    ctx = RecordingContext()
    async with running(make(tmp_path), ctx):
        await ctx.wait_healthy()
        await ctx.get()
        assert set(threading.enumerate()) - before  # the observer runs
    assert set(threading.enumerate()) - before == set()


async def test_overflow_triggers_a_full_rescan(tmp_path: Path) -> None:
    """An inotify queue overflow (events lost) makes the sensor rescan the whole tree."""
    with structlog.testing.capture_logs() as logs:
        ctx = RecordingContext()
        sensor = make(tmp_path)
        async with running(sensor, ctx):
            await ctx.wait_healthy()
            rename_in(tmp_path, "a.csv")
            await ctx.get()
            # What watchdog's reader does when the kernel reports IN_Q_OVERFLOW.
            inotify = sensor._observer._inotify_fd  # type: ignore[union-attr]
            overflow = InotifyEvent(WatchDescriptor(-1), InotifyConstants.IN_Q_OVERFLOW, 0, b"")
            await asyncio.to_thread(inotify.handle_event, overflow)
            await eventually(
                lambda: any(
                    e["event"] == "directory_scan_finished" and e["reason"] == "overflow"
                    for e in logs
                )
            )
            rename_in(tmp_path, "b.csv")  # still watching after the watches were rebuilt
            assert (await ctx.get()).key == "b.csv"
            assert await ctx.settle() == []
    events = [e["event"] for e in logs]
    assert "directory_overflow_rescan" in events


async def test_dead_observer_is_restarted_and_the_tree_rescanned(tmp_path: Path) -> None:
    """If the observer stops, it is restarted and a rescan finds what landed meanwhile."""
    with structlog.testing.capture_logs() as logs:
        ctx = RecordingContext()
        sensor = make(tmp_path)
        async with running(sensor, ctx):
            await ctx.wait_healthy()
            assert sensor._observer is not None
            await asyncio.to_thread(sensor._observer.stop)
            rename_in(tmp_path, "while_down.csv")
            assert (await ctx.get(timeout=5)).key == "while_down.csv"
            rename_in(tmp_path, "after.csv")
            assert (await ctx.get(timeout=2)).key == "after.csv"
            assert await ctx.settle() == []
    events = [e["event"] for e in logs]
    assert "directory_observer_restarted" in events
    assert ctx.healthy


async def test_backpressure_blocks_emission_until_the_engine_takes(tmp_path: Path) -> None:
    """With a full queue the sensor waits; every file still arrives once as the queue drains."""
    for i in range(30):
        write(tmp_path, f"f{i:02}.csv")
    ctx = RecordingContext(maxsize=5)
    async with running(make(tmp_path, ready={"stable_for": "0s"}), ctx):
        await ctx.wait_healthy()
        await asyncio.sleep(0.3)
        assert ctx.queue.full()
        assert len(ctx.emitted) == 5
        found = await ctx.settle()
    assert len(found) == 30
    assert len(set(keys(found))) == 30


async def test_two_thousand_renamed_files_are_each_emitted_once(tmp_path: Path) -> None:
    """2,000 files renamed into place in a burst are all emitted, each exactly once."""
    staging = tmp_path / "staging"
    staging.mkdir()
    for i in range(2000):
        (staging / f"f{i:04}.csv").write_text(f"{i}\n")
    ctx = RecordingContext()
    async with running(make(tmp_path), ctx):
        await ctx.wait_healthy()
        root = tmp_path / "landing"

        def burst() -> None:
            for i in range(2000):
                os.rename(staging / f"f{i:04}.csv", root / f"f{i:04}.csv")

        await asyncio.to_thread(burst)
        found = await ctx.settle(quiet=0.6, timeout=20)
    counts = Counter(o.key for o in found)
    assert len(counts) == 2000
    assert set(counts.values()) == {1}
