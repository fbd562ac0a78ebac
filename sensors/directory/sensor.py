"""Local directories: the directory sensor, and the file publisher.

The sensor turns files that are *ready* under a root directory into observations whose
key is the path relative to the root (``orders/dt=2024-01-01/_SUCCESS``) and whose source
position is ``(path, size, mtime_ns)``. Its cursor records, per file, the state it last
emitted, so a file is emitted again only when it changes (a rewritten ``_SUCCESS`` is a
partition update), and files that landed or changed while eventflow was stopped are
emitted once at start-up; cursor entries of files that are gone are forgotten.

Readiness (``ready``):

- ``{stable_for: D, markers: [NAME, ...]}`` (default ``1s`` and ``[_SUCCESS]``): a file
  named in ``markers`` is ready as soon as it appears (commit markers are written empty:
  waiting would only add ``D`` to every partition commit); any other file is ready once its
  size and mtime have not changed for ``D``. A file *renamed into place* (from a temporary
  name inside the tree, or from outside it) is ready at once, since a rename is atomic:
  writers that want the lowest latency write ``.name.tmp`` (or outside the tree) and
  rename. A file written in
  place is only ready ``D`` after its last write. With the native observer, a file whose
  mtime is already ``D`` old when it is seen (found by a scan, copied with its times kept)
  is ready at once too. With ``polling: true`` only renames *within* the tree are seen as
  renames (one from outside looks like a new file and waits ``D``).
- ``{marker: NAME}``: files of a directory are held until that directory holds ``NAME``
  (Flink's and Spark's ``_SUCCESS``); then every observed file of the directory is
  emitted, the marker last. A file arriving in a directory that already has its marker
  is emitted at once (late data), and a rewritten marker is emitted again. Write markers
  empty, or rename them (and late files) into place.

The observer (watchdog, on its own threads) is started before the start-up scan, so
nothing falls between them; the cursor and the in-process map of emitted states dedupe.
An overflow of the inotify queue (events lost), an observer that died or a handler error
cause a full rescan; a periodic rescan (``poll_interval``) is the safety net.

Latency: a file renamed into place is emitted about a millisecond later. One exception:
watchdog holds a file moved *out* of the tree for 0.5 s (waiting to pair the move) and
every event behind it waits too; delete processed files, or move them into an ignored
directory inside the tree (``.archive/``), rather than moving them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from eventflow.plugin import (
    Observation,
    PluginEnv,
    SensorContext,
    SensorError,
    escape_text,
    sensor_gauges,
)

from .config import DEFAULT_IGNORE, DirectorySensorConfig, Readiness
from .fs import (
    FileState,
    Listing,
    PathFilter,
    join,
    missing,
    root_problem,
    scan_step,
    stat_many,
    walk,
)
from .publish import FilePublisher, FilePublisherConfig
from .state import Tracker
from .watch import Handler, observer_alive, start_observer, stop_observer

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger
    from watchdog.observers.api import BaseObserver

__all__ = [
    "DEFAULT_IGNORE",
    "DirectorySensor",
    "DirectorySensorConfig",
    "FilePublisher",
    "FilePublisherConfig",
    "Readiness",
]

SCAN_BUDGET = 2000
"""Files listed per scan step on the scan thread."""
STAT_CHUNK = 512
"""Files re-checked per hop to the stat thread before they are emitted."""
HIGH_WATER = 10_000
LOW_WATER = 5_000
"""Scans pause while more than HIGH_WATER files wait for the engine, until LOW_WATER."""
HEALTH_INTERVAL = 2.0
"""Seconds between checks that the root is still there and the observer still runs."""


class _ThreadSink:
    """The observer thread's way into the loop: every call is ``call_soon_threadsafe``."""

    def __init__(self, sensor: DirectorySensor, tracker: Tracker) -> None:
        self._sensor = sensor
        self._tracker = tracker
        self._loop = asyncio.get_running_loop()
        self.closed = False

    def _call(self, fn: Any, *args: Any) -> None:
        if self.closed:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self._loop.call_soon_threadsafe(fn, *args)

    def changed(self, rel: str, state: FileState | None, renamed: bool) -> None:
        self._call(self._tracker.change, rel, state, renamed, False)

    def listed(self, listings: list[Listing], renamed: bool) -> None:
        if listings:
            self._call(self._tracker.listings, listings, renamed)

    def dir_gone(self, rel_dir: str) -> None:
        self._call(self._tracker.dir_gone, rel_dir)

    def root_gone(self) -> None:
        self._call(self._sensor._wake.set)

    def overflow(self) -> None:
        self._call(self._sensor._request_rescan, "overflow")

    def failed(self, exc: BaseException) -> None:
        self._call(self._sensor._request_rescan, "handler_error", repr(exc))


class DirectorySensor:
    """Watches a directory tree and emits files once they are ready (see the module doc)."""

    config_model: ClassVar[type[BaseModel]] = DirectorySensorConfig

    def __init__(self, name: str, config: Any, env: PluginEnv) -> None:
        if not isinstance(config, DirectorySensorConfig):
            config = DirectorySensorConfig.model_validate(config)
        self.name = name
        self.config = config
        # Resolved: inotify does not follow a symlinked root (watchdog adds IN_DONT_FOLLOW).
        self.root = os.path.realpath(env.base_dir / os.path.expanduser(config.path))
        self._marker = config.ready.marker
        self._stable_for = config.ready.wait.total_seconds()
        self._filter = PathFilter(
            include=config.include,
            exclude=config.exclude,
            ignore=config.ignore,
            recursive=config.recursive,
            marker=self._marker,
        )
        self._observer: BaseObserver | None = None

    # --- listing (eventflow backfill) -------------------------------------------------

    async def list_observations(self, prefix: str = "") -> list[Observation]:
        """Every observed file now under the root whose key starts with ``prefix``, as
        :meth:`run` would emit it (same position, so the same event id). In marker mode
        only the files of directories that hold their marker, the marker last."""
        start = prefix.rpartition("/")[0]  # the deepest directory the prefix names fully
        try:
            listings = await asyncio.to_thread(walk, self.root, start, self._filter)
        except OSError as exc:
            raise SensorError(
                f"directory sensor {self.name!r}: cannot list {self.root}: {exc.strerror or exc}",
                hint="check that the path exists and is readable",
            ) from exc
        found: list[Observation] = []
        for listing in listings:
            files = listing.files
            if self._marker is not None:
                if listing.marker is None:
                    continue
                files = [*files, (join(listing.dir, self._marker), listing.marker)]
            found += [self._observation(rel, st) for rel, st in files if rel.startswith(prefix)]
        return found

    # --- running ---------------------------------------------------------------------

    async def run(self, ctx: SensorContext) -> None:
        """Watch until cancelled; raises SensorError when the root cannot be watched."""
        self._ctx = ctx
        self._log: FilteringBoundLogger = ctx.log.bind(sensor=self.name, path=self.root)
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._ready_wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._inflight = 0
        self._rescan: str | None = None
        self._tracker = Tracker(
            self._loop,
            stable_for=self._stable_for,
            markers=frozenset(self.config.ready.markers),
            marker=self._marker,
            trust_old_mtime=not self.config.polling,
            on_ready=self._ready_wake.set,
        )
        self._sink = _ThreadSink(self, self._tracker)
        self._scan_pool = ThreadPoolExecutor(1, thread_name_prefix=f"eventflow-dir-{self.name}")
        self._stat_pool = ThreadPoolExecutor(1, thread_name_prefix=f"eventflow-dir-{self.name}")
        try:
            await self._check_root()
            self._tracker.load_cursor(await ctx.load_cursor())
            await self._start_observer()
            ctx.set_health(True)
            ready = f"marker {self._marker}" if self._marker else f"stable_for {self._stable_for}s"
            if not self._marker and self.config.ready.markers:
                ready += f", at once: {', '.join(self.config.ready.markers)}"
            self._log.info(
                "directory_watch_started",
                observer="polling" if self.config.polling else "native",
                recursive=self.config.recursive,
                ready=ready,
            )
            await self._run_tasks()
        finally:
            self._shutdown()

    async def _run_tasks(self) -> None:
        tasks = {
            asyncio.create_task(self._emit_loop(), name=f"directory:{self.name}:emit"),
            asyncio.create_task(self._supervise(), name=f"directory:{self.name}:scan"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _shutdown(self) -> None:
        """Stop and join every thread this run started (blocking, but short)."""
        self._sink.closed = True
        self._scan_pool.shutdown(wait=True, cancel_futures=True)  # a starting observer too
        if self._observer is not None:
            stop_observer(self._observer)
            self._observer = None
        self._stat_pool.shutdown(wait=True, cancel_futures=True)
        self._tracker.close()
        self._log.info("directory_watch_stopped")

    async def _supervise(self) -> None:
        """The start-up scan, then rescans when asked (overflow), periodically, and health."""
        await self._scan("startup")
        gauges = sensor_gauges(self.name)
        gauges.polled()
        interval = self.config.interval.total_seconds()
        periodic = interval > 0 and not self.config.polling  # polling is a full scan anyway
        next_scan = time.monotonic() + interval if periodic else float("inf")
        while True:
            timeout = max(0.0, min(HEALTH_INTERVAL, next_scan - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            await self._check_root()
            if self._observer is None or not observer_alive(self._observer):
                self._log.warning("directory_observer_restarted")
                await self._restart_observer()
                self._rescan = self._rescan or "observer_restarted"
            reason, self._rescan = self._rescan, None
            if reason is None and time.monotonic() >= next_scan:
                reason = "periodic"
            if reason is not None:
                await self._scan(reason)
                if periodic:
                    next_scan = time.monotonic() + interval
            gauges.polled()  # the root was checked (and the tree scanned, when due)
            gauges.lag(len(self._tracker.pending))  # files seen, not ready yet

    def _request_rescan(self, reason: str, detail: str = "") -> None:
        if reason == "overflow":
            self._log.warning("directory_overflow_rescan")
        else:
            self._log.error("directory_handler_failed", error=detail)
        self._rescan = reason
        self._wake.set()

    # --- root and observer -----------------------------------------------------------

    async def _in_scan_pool(self, fn: Any, *args: Any) -> Any:
        return await self._loop.run_in_executor(self._scan_pool, fn, *args)

    async def _check_root(self) -> None:
        problem = await self._in_scan_pool(root_problem, self.root)
        if problem is not None:
            raise self._root_error(*problem)

    def _root_error(self, what: str, hint: str) -> SensorError:
        message = f"directory sensor {self.name!r}: {self.root} {what}"
        self._ctx.set_health(False, message)
        self._log.error("directory_root_unavailable", problem=what)
        return SensorError(message, hint=hint)

    async def _start_observer(self) -> None:
        try:
            await self._in_scan_pool(self._start_observer_blocking)
        except OSError as exc:
            await self._check_root()  # the root went away: say that
            hint = "check permissions and free resources"
            if exc.errno == errno.ENOSPC:  # out of inotify watches
                hint = "raise the sysctl fs.inotify.max_user_watches, or set `polling: true`"
            elif exc.errno == errno.EMFILE:  # out of inotify instances
                hint = "raise the sysctl fs.inotify.max_user_instances, or set `polling: true`"
            raise self._root_error(f"cannot be watched ({exc.strerror or exc})", hint) from exc

    def _start_observer_blocking(self) -> None:
        """On the scan thread; sets ``_observer`` there so a cancelled start is still stopped."""
        observer, hooked = start_observer(
            self.root,
            Handler(self.root, self._filter, self._sink),
            recursive=self.config.recursive,
            polling=self.config.polling,
            poll_interval=self.config.interval.total_seconds(),
            on_overflow=self._sink.overflow,
        )
        self._observer = observer
        if not hooked and not self.config.polling:
            self._log.warning("directory_overflow_unobserved")

    async def _restart_observer(self) -> None:
        if self._observer is not None:
            await self._in_scan_pool(stop_observer, self._observer)
            self._observer = None
        await self._start_observer()

    # --- scans -----------------------------------------------------------------------

    async def _scan(self, reason: str) -> None:
        """List the whole tree; emit what is ready and new or changed, forget what is gone."""
        quiet = reason == "periodic"
        (self._log.debug if quiet else self._log.info)("directory_scan_started", reason=reason)
        started = time.monotonic()
        stack = [""]
        present: set[str] = set()
        unreadable: list[str] = []
        changed = 0
        while stack:
            while self._backlog() > HIGH_WATER:
                self._drained.clear()
                await self._drained.wait()
            try:
                listings, skipped = await self._in_scan_pool(
                    scan_step, self.root, stack, self._filter, SCAN_BUDGET
                )
            except OSError as exc:
                await self._check_root()
                raise self._root_error(
                    f"cannot be read ({exc.strerror or exc})", "check permissions"
                ) from exc
            unreadable.extend(skipped)
            for listing in listings:
                present.update(rel for rel, _ in listing.files)
                if listing.marker is not None and self._marker is not None:
                    present.add(join(listing.dir, self._marker))
                changed += self._tracker.listing(listing, renamed=False, scan=True)
        candidates = [rel for rel in self._tracker.emitted if rel not in present]
        gone = await self._in_scan_pool(missing, self.root, candidates) if candidates else []
        for rel in gone:
            self._tracker.gone(rel)
        if unreadable:
            self._log.warning(
                "directory_unreadable", count=len(unreadable), examples=sorted(unreadable)[:5]
            )
        (self._log.debug if quiet and not changed and not gone else self._log.info)(
            "directory_scan_finished",
            reason=reason,
            files=len(present),
            changed=changed,
            forgotten=len(gone),
            unreadable=len(unreadable),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )

    # --- emission --------------------------------------------------------------------

    def _backlog(self) -> int:
        return len(self._tracker.ready) + self._inflight

    async def _emit_loop(self) -> None:
        """Re-check ready files off the loop, then emit them in order (blocks when full)."""
        tracker = self._tracker
        while True:
            if not tracker.ready:
                if tracker.forget:
                    keys, tracker.forget = sorted(tracker.forget), set()
                    keys = [k for k in keys if _decodable(k)]  # never in the cursor
                    if keys:
                        await self._ctx.forget(keys)
                    continue
                self._ready_wake.clear()
                await self._ready_wake.wait()
                continue
            batch = tracker.take_ready()
            self._inflight = len(batch)
            for start in range(0, len(batch), STAT_CHUNK):
                chunk = batch[start : start + STAT_CHUNK]
                states = await self._loop.run_in_executor(
                    self._stat_pool, stat_many, [os.path.join(self.root, r) for r, _ in chunk]
                )
                for (rel, expected), state in zip(chunk, states, strict=True):
                    self._inflight -= 1
                    if tracker.settle(rel, expected, state) and state is not None:
                        await self._ctx.emit(self._observation(rel, state))
                    if self._backlog() <= LOW_WATER:
                        self._drained.set()

    def _observation(self, rel: str, state: FileState) -> Observation:
        size, mtime_ns = state
        seconds, nanos = divmod(mtime_ns, 1_000_000_000)
        mtime = datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=nanos // 1000)
        if not _decodable(rel):
            return self._undecodable(rel, size, mtime_ns, mtime)
        return Observation(
            sensor=self.name,
            position={"path": rel, "size": size, "mtime_ns": mtime_ns},
            key=rel,
            time=mtime,
            payload=None,
            attributes={
                "path": rel,
                "size": size,
                "mtime": mtime.isoformat(),
                "abs_path": os.path.join(self.root, rel),
            },
            cursor=(rel, {"size": size, "mtime_ns": mtime_ns}),
        )

    def _undecodable(self, rel: str, size: int, mtime_ns: int, mtime: datetime) -> Observation:
        """A file whose name is not UTF-8: a dead letter, its path shown with escapes
        (``bad-\\xff.csv``). It has no cursor entry (a cursor key must be text); a restart
        observes it again with the same position, so the same event id, which the store
        already holds: it is dead-lettered once."""
        shown = escape_text(rel)
        return Observation(
            sensor=self.name,
            position={"path": shown, "size": size, "mtime_ns": mtime_ns},
            key=shown,
            time=mtime,
            error=(
                f"file name is not valid UTF-8: {shown} (rename the file; its name is shown"
                " with each undecodable byte as \\xNN)"
            ),
        )


def _decodable(rel: str) -> bool:
    """Whether a path (from ``os.fsdecode``) is valid Unicode: no surrogate escapes."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
