"""The file publisher: completion events appended to a file as CloudEvents JSON lines."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from eventflow.plugin import ClosedError, Event, PluginEnv, PublisherConfig, PublishError, Resource


class FilePublisherConfig(PublisherConfig):
    """`publish: [{type: file, path: FILE}]`: append events to a local file."""

    path: str = Field(
        description="File the events are appended to, one CloudEvents 1.0 JSON object per"
        " line; relative to the pipeline file. Missing directories are created."
    )


class FilePublisher(Resource):
    """Appends each event's CloudEvents JSON as one line and fsyncs once per ``publish``.

    ``publish`` returns only after the lines are on disk (the outbox deletes the events
    then), so a crash repeats a batch at worst: consumers deduplicate by the CloudEvents
    ``id``. A batch that fails half-way is cut back off the file before the error is
    raised, so the file never holds a torn line. If the file is moved away (log rotation),
    the next ``publish`` creates a new one at ``path``.
    """

    config_model: ClassVar[type[BaseModel]] = FilePublisherConfig

    def __init__(self, name: str, config: Any, env: PluginEnv) -> None:
        if not isinstance(config, FilePublisherConfig):
            config = FilePublisherConfig.model_validate(config)
        self.name = name
        self.config = config
        self.path = (env.base_dir / Path(config.path).expanduser()).absolute()
        self._fd: int | None = None
        self._closed = False
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self._closed:
            raise ClosedError(f"file publisher {self.name!r} is closed")
        async with self._lock:
            if self._fd is None:
                self._fd = await asyncio.to_thread(self._open)

    async def publish(self, events: Sequence[Event]) -> None:
        data = "".join(event.to_json() + "\n" for event in events).encode()
        async with self._lock:
            if self._closed:
                raise ClosedError(f"file publisher {self.name!r} is closed; it cannot publish")
            if self._fd is None:
                raise PublishError(
                    f"file publisher {self.name!r} is not open", hint="call open() first"
                )
            if data:
                await asyncio.to_thread(self._append, self._fd, data)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)

    # --- blocking parts, on a thread ---------------------------------------------------

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            if created:  # make the new directory entry durable too
                _fsync_dir(self.path.parent)
        except OSError as exc:
            raise self._error("cannot open", exc) from exc
        return fd

    def _append(self, fd: int, data: bytes) -> None:
        try:
            fd = self._fd = self._reopen_if_moved(fd)
            start = os.fstat(fd).st_size
        except OSError as exc:
            raise self._error("cannot write to", exc) from exc
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):  # no torn line: the outbox sends it all again
                os.ftruncate(fd, start)
            raise self._error("cannot write to", exc) from exc

    def _reopen_if_moved(self, fd: int) -> int:
        """``fd``, or a new descriptor if the file at ``path`` is no longer ``fd``'s file."""
        try:
            if os.path.samestat(os.stat(self.path), os.fstat(fd)):
                return fd
        except FileNotFoundError:
            pass
        new = self._open()
        os.close(fd)
        return new

    def _error(self, what: str, exc: OSError) -> PublishError:
        return PublishError(
            f"file publisher {self.name!r} {what} {self.path}: {exc.strerror or exc}",
            hint="check that the directory exists or can be created, is writable and has"
            " free space",
        )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
