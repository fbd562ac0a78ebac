"""Captured task output: files capped at a size, with a note where they were cut.

A task's stdout and stderr are kept in files next to the run (``attempt-N.stdout``). Each
file holds at most ``log_max_bytes`` of output; whatever comes after is read and dropped (a
child writing to a full pipe would block) and one line at the end says where it was cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

TRUNCATION_NOTE = "\n[eventflow: output truncated after {n} bytes]\n"
_CHUNK = 65_536


def truncation_note(max_bytes: int) -> bytes:
    """The line appended to a file cut at ``max_bytes``."""
    return TRUNCATION_NOTE.format(n=max_bytes).encode()


class CappedFile:
    """Writes the first ``max_bytes`` it is given to a file and counts the rest.

    Writes go straight to the file (no buffer), so the log can be followed while the task
    runs. ``close`` appends the truncation note if anything was dropped; it is idempotent.
    """

    __slots__ = ("_file", "dropped", "failed", "max_bytes", "path", "written")

    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.written = 0
        self.dropped = 0
        self.failed: OSError | None = None
        """Why the file stopped taking output (a full disk): the rest is dropped, the task
        runs on, and the file ends with a note saying so when there is room for it."""
        self._file = path.open("wb", buffering=0)

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def write(self, data: bytes) -> None:
        room = self.max_bytes - self.written
        if room > 0 and self.failed is None:
            kept = data[:room]
            try:
                self._file.write(kept)
            except OSError as exc:  # the output is lost, not the attempt
                self.failed = exc
                kept = b""
            self.written += len(kept)
            self.dropped += len(data) - len(kept)
        else:
            self.dropped += len(data)

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            if self.failed is not None:
                note = f"\n[eventflow: output lost after {self.written} bytes: {self.failed}]\n"
                with contextlib.suppress(OSError):
                    self._file.write(note.encode())
            elif self.dropped:
                self._file.write(truncation_note(self.max_bytes))
        finally:
            with contextlib.suppress(OSError):
                self._file.close()


def write_capped(path: Path, data: str | bytes, max_bytes: int) -> None:
    """Write ``data`` to ``path``, cut at ``max_bytes`` like captured output."""
    out = CappedFile(path, max_bytes)
    try:
        out.write(data.encode("utf-8", "replace") if isinstance(data, str) else data)
    finally:
        out.close()


class PipeCapture:
    """One output pipe of a child process, copied into a :class:`CappedFile` by the loop.

    Create it before spawning, pass :attr:`write_fd` as the child's stdout or stderr, then
    call :meth:`start`, which creates the file: after the spawn, because creating a file can
    cost more than starting the child (0.6 ms on the benchmark machine's disk, twice per
    run) and the child's output waits in the pipe meanwhile. The pipe is read to its end
    whatever the cap, so the child never blocks on a full pipe; :attr:`done` resolves at end
    of file. :meth:`close` stops reading (a process that escaped the attempt may hold the
    pipe open) and is idempotent.
    """

    __slots__ = ("_loop", "_read_fd", "done", "file", "max_bytes", "path", "write_fd")

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.file: CappedFile | None = None
        # os.pipe() makes both ends close-on-exec: other children spawned meanwhile do not
        # inherit them; the child we pass write_fd to gets it dup'ed onto fd 1 or 2.
        self._read_fd, self.write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.done: asyncio.Future[None] | None = None

    def open(self) -> CappedFile:
        """The output file, created by the first call."""
        if self.file is None:
            self.file = CappedFile(self.path, self.max_bytes)
        return self.file

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Create the file, close the parent's copy of the write end and start reading on
        ``loop``."""
        self.open()
        self.close_write_end()
        self._loop = loop
        self.done = loop.create_future()
        loop.add_reader(self._read_fd, self._on_readable)

    def close_write_end(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def _on_readable(self) -> None:
        for _ in range(4):  # drain a few chunks per wake-up, then let others run
            try:
                data = os.read(self._read_fd, _CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            self.open().write(data)

    def close(self) -> None:
        self.close_write_end()
        if self._read_fd >= 0:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._read_fd)
            with contextlib.suppress(OSError):
                os.close(self._read_fd)
            self._read_fd = -1
        if self.file is not None:
            self.file.close()
        if self.done is not None and not self.done.done():
            self.done.set_result(None)
