"""What a ``python`` task writes to ``sys.stdout`` and ``sys.stderr`` goes to its run's files.

The function runs in eventflow's own process, so there is one ``sys.stdout`` for every
task running at once. :func:`install` replaces both streams once by :class:`Router`\\ s
that look up the current run in a :class:`contextvars.ContextVar`: set by :func:`capture`
around one attempt, it follows the attempt's task (a coroutine function) or its thread (a
plain function runs with a copy of the context). Two attempts at once each write to their
own files; anything written outside an attempt (eventflow's log, another library) goes to
the original stream, as before. ``print()``, ``sys.stderr.write`` and a ``logging``
handler made with the default stream (``logging.StreamHandler()``, ``basicConfig``) are
captured; a handler or library that kept the original stream object before the task ran,
or writes to file descriptor 1 or 2 directly (a C extension, a child process), is not.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

from eventflow.tasks._logs import CappedFile
from eventflow.types import RunContext

_FILES: contextvars.ContextVar[tuple[CappedFile, CappedFile] | None] = contextvars.ContextVar(
    "eventflow_task_output", default=None
)
_LOCK = threading.Lock()


class Router:
    """A text stream that writes to the current attempt's file, else to ``original``."""

    def __init__(self, original: TextIO, index: int) -> None:
        self.original = original
        self.index = index

    def _file(self) -> CappedFile | None:
        files = _FILES.get()
        return None if files is None else files[self.index]

    def write(self, text: str) -> int:
        file = self._file()
        if file is None:
            return self.original.write(text)
        try:
            with _LOCK:  # a thread and the loop may write to one attempt's file at once
                file.write(text.encode("utf-8", "replace"))
        except ValueError:  # the attempt ended (a thread that outlived its timeout)
            return self.original.write(text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._file() is None:
            self.original.flush()

    def isatty(self) -> bool:
        return False if self._file() is not None else self.original.isatty()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, buffer, ...
        return getattr(self.original, name)


def install() -> None:
    """Route ``sys.stdout`` and ``sys.stderr`` through :class:`Router` (once per process)."""
    with _LOCK:
        if not isinstance(sys.stdout, Router):
            sys.stdout = Router(sys.stdout, 0)
        if not isinstance(sys.stderr, Router):
            sys.stderr = Router(sys.stderr, 1)


@contextlib.contextmanager
def capture(ctx: RunContext) -> Iterator[tuple[CappedFile, CappedFile]]:
    """Within: this context's writes to ``sys.stdout``/``sys.stderr`` go to the attempt's
    ``stdout_path``/``stderr_path`` (capped at ``log_max_bytes``); closed on exit."""
    install()
    files = (
        CappedFile(ctx.stdout_path, ctx.log_max_bytes),
        CappedFile(ctx.stderr_path, ctx.log_max_bytes),
    )
    token = _FILES.set(files)
    try:
        yield files
    finally:
        _FILES.reset(token)
        with _LOCK:
            for file in files:
                file.close()
