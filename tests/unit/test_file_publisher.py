"""The file publisher: CloudEvents JSON lines, one fsync per batch, clear errors."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventflow import registry
from eventflow.errors import ClosedError, PublishError
from eventflow.events import Event
from eventflow.types import PluginEnv, Publisher
from eventflow_sensors.directory.sensor import FilePublisher, FilePublisherConfig


def event(n: int) -> Event:
    return Event(
        id=f"id-{n}",
        source="eventflow/test",
        type="eventflow.run.succeeded",
        subject=f"report/dt=2024-01-0{n}",
        time=datetime(2024, 1, 1, tzinfo=UTC),
        data={"n": n, "text": "line\nbreak"},
    )


def publisher(tmp_path: Path, path: str = "out/events.jsonl") -> FilePublisher:
    config = FilePublisherConfig.model_validate({"type": "file", "path": path})
    return FilePublisher("file", config, PluginEnv("test", tmp_path))


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_registered_as_the_file_publisher() -> None:
    """The `file` entry point resolves to FilePublisher, which satisfies the Publisher protocol."""
    assert registry.publishers.get("file") is FilePublisher
    assert FilePublisher.config_model is FilePublisherConfig


async def test_appends_one_cloudevents_json_line_per_event(tmp_path: Path) -> None:
    """Each event becomes one JSON line equal to its CloudEvents JSON, directories created."""
    pub = publisher(tmp_path)
    assert isinstance(pub, Publisher)
    async with pub:
        await pub.publish([event(1), event(2)])
        await pub.publish([event(3)])
    out = tmp_path / "out" / "events.jsonl"
    assert [e["id"] for e in lines(out)] == ["id-1", "id-2", "id-3"]
    assert out.read_text().splitlines()[0] == event(1).to_json()
    assert lines(out)[0]["specversion"] == "1.0"
    assert lines(out)[0]["data"] == {"n": 1, "text": "line\nbreak"}


async def test_appends_to_an_existing_file_across_opens(tmp_path: Path) -> None:
    """Reopening the publisher appends after what is already in the file."""
    for n in (1, 2):
        async with publisher(tmp_path) as pub:
            await pub.publish([event(n)])
    assert [e["id"] for e in lines(tmp_path / "out" / "events.jsonl")] == ["id-1", "id-2"]


async def test_relative_and_absolute_paths(tmp_path: Path) -> None:
    """A relative path is resolved against the pipeline's directory; an absolute one is kept."""
    assert publisher(tmp_path, "a/b.jsonl").path == tmp_path / "a" / "b.jsonl"
    elsewhere = tmp_path / "elsewhere.jsonl"
    assert publisher(Path("/nonexistent"), str(elsewhere)).path == elsewhere


async def test_fsyncs_once_per_publish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every publish call flushes to disk with exactly one fsync of the file, before returning."""
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    async with publisher(tmp_path) as pub:
        monkeypatch.setattr(os, "fsync", fsync)
        await pub.publish([event(1), event(2), event(3)])
        assert len(synced) == 1
        await pub.publish([event(4)])
        assert len(synced) == 2
        await pub.publish([])
        assert len(synced) == 2


async def test_close_is_idempotent_and_publish_after_close_fails(tmp_path: Path) -> None:
    """close() twice is fine; publishing or opening after close raises ClosedError."""
    pub = publisher(tmp_path)
    await pub.open()
    await pub.close()
    await pub.close()
    with pytest.raises(ClosedError, match="closed"):
        await pub.publish([event(1)])
    with pytest.raises(ClosedError):
        await pub.open()


async def test_publish_before_open_fails(tmp_path: Path) -> None:
    """Publishing before open() raises a PublishError that says so."""
    with pytest.raises(PublishError, match="not open"):
        await publisher(tmp_path).publish([event(1)])


async def test_unwritable_path_raises_publish_error(tmp_path: Path) -> None:
    """An OSError (here: the parent is a file) becomes a PublishError naming the path."""
    (tmp_path / "out").write_text("not a directory")
    pub = publisher(tmp_path)
    with pytest.raises(PublishError, match=r"events\.jsonl") as raised:
        await pub.open()
    assert isinstance(raised.value.__cause__, OSError)
    assert raised.value.retriable


async def test_failed_write_leaves_no_torn_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch failing half-way is cut back off the file and raised as a PublishError."""
    async with publisher(tmp_path) as pub:
        await pub.publish([event(1)])
        real_write = os.write

        def short_then_fail(fd: int, data: bytes | memoryview) -> int:
            monkeypatch.setattr(os, "write", failing)
            return real_write(fd, bytes(data[:10]))

        def failing(fd: int, data: bytes | memoryview) -> int:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "write", short_then_fail)
        with pytest.raises(PublishError, match="No space left"):
            await pub.publish([event(2), event(3)])
        monkeypatch.setattr(os, "write", real_write)
        await pub.publish([event(2)])
    assert [e["id"] for e in lines(tmp_path / "out" / "events.jsonl")] == ["id-1", "id-2"]


async def test_file_moved_away_is_recreated(tmp_path: Path) -> None:
    """After the file is rotated away, the next publish writes a new file at the path."""
    async with publisher(tmp_path) as pub:
        await pub.publish([event(1)])
        out = tmp_path / "out" / "events.jsonl"
        out.rename(tmp_path / "out" / "events.jsonl.1")
        await pub.publish([event(2)])
    assert [e["id"] for e in lines(out)] == ["id-2"]
    assert [e["id"] for e in lines(tmp_path / "out" / "events.jsonl.1")] == ["id-1"]
