"""The watchdog side of the directory sensor: an observer and the handler on its thread.

The handler runs on watchdog's dispatcher thread. It filters each event, stats the file
(or lists the directory of a marker, or walks a directory moved into place) right there,
off the event loop, and hands the result to a :class:`Sink`, whose methods must be safe to
call from that thread (the sensor's sink forwards with ``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any, Protocol

from watchdog.events import (
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
    FileSystemMovedEvent,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from .fs import FileState, Listing, PathFilter, list_dir, stat_state, walk

InotifyObserver: Any
try:
    from watchdog.observers.inotify import InotifyObserver
except Exception:  # not Linux, or no usable libc: the platform's default observer
    InotifyObserver = None

EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]
"""What the observer reports (reads of a file, opens and closes without writing, are not
asked for, so the tasks reading the data cause no events)."""


class Sink(Protocol):
    """Where the handler sends what it saw; every method is called on the observer thread."""

    def changed(self, rel: str, state: FileState | None, renamed: bool) -> None:
        """A file changed (``state`` None: it is gone); ``renamed``: it was moved into place."""

    def listed(self, listings: list[Listing], renamed: bool) -> None:
        """Directories to look at as a whole (a marker arrived, a directory moved in)."""

    def dir_gone(self, rel_dir: str) -> None: ...

    def root_gone(self) -> None: ...

    def overflow(self) -> None:
        """Events were lost (the kernel queue overflowed): everything must be rescanned."""

    def failed(self, exc: BaseException) -> None:
        """The handler failed on an event; a rescan repairs what it missed."""


class Handler(FileSystemEventHandler):
    """Turns watchdog events into :class:`Sink` calls."""

    def __init__(self, root: str, flt: PathFilter, sink: Sink) -> None:
        super().__init__()
        self._root = root
        self._prefix = root.rstrip(os.sep) + os.sep
        self._flt = flt
        self._sink = sink

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._dispatch(event)
        except Exception as exc:  # never kill the observer thread
            self._sink.failed(exc)

    def _rel(self, path: bytes | str) -> str | None:
        p = os.fsdecode(path)
        if p == self._root:
            return ""
        if not p.startswith(self._prefix):
            return None
        rel = p[len(self._prefix) :]
        return rel.replace(os.sep, "/") if os.sep != "/" else rel

    def _dispatch(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileSystemMovedEvent):
            src = self._rel(event.src_path) if event.src_path else None
            dest = self._rel(event.dest_path) if event.dest_path else None
            if event.is_directory:
                if src is not None:
                    self._gone_dir(src)
                if dest and self._flt.recursive:
                    self._sink.listed(walk(self._root, dest, self._flt), True)
            else:
                if src and self._flt.file_wanted(src):
                    self._sink.changed(src, None, False)
                if dest:
                    self._file(dest, renamed=True)
            return
        rel = self._rel(event.src_path)
        if rel is None:
            return
        if isinstance(event, DirDeletedEvent | FileDeletedEvent):
            if event.is_directory or not rel:
                self._gone_dir(rel)
            elif self._flt.file_wanted(rel):
                self._sink.changed(rel, None, False)
            return
        if rel and not event.is_directory:
            self._file(rel, renamed=False)

    def _gone_dir(self, rel: str) -> None:
        if rel:
            self._sink.dir_gone(rel)
        else:
            self._sink.root_gone()

    def _file(self, rel: str, *, renamed: bool) -> None:
        if not self._flt.file_wanted(rel):
            return
        if self._flt.is_marker(rel):
            rel_dir = rel.rpartition("/")[0]
            try:
                listing = list_dir(self._root, rel_dir, self._flt)
            except OSError:
                return  # the directory went away; its deletion event follows
            self._sink.listed([listing], renamed)
            return
        self._sink.changed(rel, stat_state(os.path.join(self._prefix, rel)), renamed)


def start_observer(
    root: str,
    handler: Handler,
    *,
    recursive: bool,
    polling: bool,
    poll_interval: float,
    on_overflow: Callable[[], None],
) -> tuple[BaseObserver, bool]:
    """Start an observer on ``root``; returns it and whether queue overflows are reported.

    Blocking (it adds a watch per directory, or takes a first snapshot when polling).
    On Linux it is inotify with full move events, so a file renamed in from outside the
    tree is told apart from one created in place. Raises OSError if the root cannot be
    watched, after stopping whatever was started.
    """
    observer: BaseObserver
    if polling:
        observer = PollingObserver(timeout=poll_interval)
    elif InotifyObserver is not None:
        observer = InotifyObserver(generate_full_events=True)
    else:  # pragma: no cover - other platforms
        observer = Observer()
    try:
        observer.schedule(handler, root, recursive=recursive, event_filter=EVENT_TYPES)
        observer.start()
    except BaseException:
        stop_observer(observer)
        raise
    return observer, _hook_overflow(observer, on_overflow)


def stop_observer(observer: BaseObserver, timeout: float = 10.0) -> None:
    """Stop the observer and join its threads (emitters included)."""
    observer.stop()
    if observer.is_alive():
        observer.join(timeout)


def observer_alive(observer: BaseObserver) -> bool:
    """False once the observer, one of its emitters or its inotify reader thread has stopped
    (the root went away, or a thread died of an exception)."""
    reader = getattr(observer, "_inotify_fd", None)
    if isinstance(reader, threading.Thread) and not reader.is_alive():
        return False
    return observer.is_alive() and all(e.is_alive() for e in list(observer.emitters))


def _hook_overflow(observer: BaseObserver, callback: Callable[[], None]) -> bool:
    """Be told of inotify queue overflows.

    watchdog handles an overflow inside the emitter's watch group (``on_queue_overflow``:
    it drops half-paired moves and re-adds recursive watches) and only logs that events were
    lost. The sensor must rescan then, so the group's handler is wrapped, per instance.
    Returns False when the emitter has no such group (polling, other platforms, another
    watchdog version); the periodic rescan is then the safety net.
    """
    hooked = False
    for emitter in list(observer.emitters):
        group = getattr(emitter, "_inotify", None)
        original = getattr(group, "on_queue_overflow", None)
        if group is None or not callable(original):
            continue

        def on_queue_overflow(original: Callable[[], None] = original) -> None:
            try:
                original()
            finally:
                callback()

        with contextlib.suppress(AttributeError, TypeError):
            group.on_queue_overflow = on_queue_overflow
            hooked = True
    return hooked
