"""What the directory sensor knows of each file, and which files are ready to emit.

A :class:`Tracker` lives on the event loop and does no I/O: the observer thread and the
scans feed it file states they measured, it decides (per the readiness mode) whether a
file is ready now, must stay unchanged a while longer (an asyncio timer), or is held
until its directory's marker arrives. Ready files wait in an ordered map until the
sensor's emitter re-checks them (a fresh stat) and emits them; :meth:`Tracker.settle`
makes that last decision, so a stale state from a scan never overrides a newer one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from eventflow.plugin import JSON

from .fs import FileState, Listing, join


@dataclass(slots=True)
class _Pending:
    """A file waiting to be stable: the state last seen and the timer re-checking it."""

    state: FileState
    timer: asyncio.TimerHandle


class Tracker:
    """The sensor's per-file state; every method runs on the loop and returns at once."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        stable_for: float,
        markers: frozenset[str],
        marker: str | None,
        trust_old_mtime: bool,
        on_ready: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._stable_s = stable_for
        self._stable_ns = round(stable_for * 1e9)
        self._markers = markers
        self._marker = marker
        self._trust_old_mtime = trust_old_mtime
        self._on_ready = on_ready
        self.emitted: dict[str, FileState] = {}
        """The last state emitted per file: committed (the cursor) or in flight."""
        self.pending: dict[str, _Pending] = {}
        self.ready: dict[str, FileState | None] = {}
        """Files to emit, in order, each with the state it must still have (None: any)."""
        self.marked: set[str] = set()
        """Directories holding their marker (marker mode)."""
        self.forget: set[str] = set()
        """Cursor keys of files that are gone, to delete from the checkpoint."""

    def load_cursor(self, cursor: Mapping[str, JSON]) -> None:
        for rel, value in cursor.items():
            if isinstance(value, Mapping):
                size, mtime_ns = value.get("size"), value.get("mtime_ns")
                if isinstance(size, int) and isinstance(mtime_ns, int):
                    self.emitted[rel] = (size, mtime_ns)

    def close(self) -> None:
        for pending in self.pending.values():
            pending.timer.cancel()
        self.pending.clear()

    # --- what was seen ---------------------------------------------------------------

    def change(self, rel: str, state: FileState | None, renamed: bool, scan: bool) -> int:
        """A file was seen with ``state`` (None: gone); returns 1 if it is now on its way."""
        if state is None:
            self.gone(rel)
            return 0
        if state == self.emitted.get(rel):
            self._cancel_pending(rel)
            return 0
        if self._marker is not None:
            if rel.rpartition("/")[0] in self.marked:
                self._make_ready(rel, None)
                return 1
            return 0
        if scan and (rel in self.pending or rel in self.ready):
            return 0  # already on its way; a scan's state may be older than the event's
        if renamed or self._stable_now(rel, state):
            self._cancel_pending(rel)
            self._make_ready(rel, state)
            return 1
        pending = self.pending.get(rel)
        if pending is not None:
            if pending.state == state:
                return 1
            pending.timer.cancel()
        timer = self._loop.call_later(self._stable_s, self._due, rel)
        self.pending[rel] = _Pending(state, timer)
        return 1

    def listings(self, listings: list[Listing], renamed: bool) -> None:
        for listing in listings:
            self.listing(listing, renamed=renamed, scan=False)

    def listing(self, listing: Listing, *, renamed: bool, scan: bool) -> int:
        """A directory's files were listed; returns how many are now on their way."""
        if self._marker is None:
            return sum(self.change(rel, st, renamed, scan) for rel, st in listing.files)
        marker_rel = join(listing.dir, self._marker)
        if listing.marker is None:
            if scan and listing.dir in self.marked:
                self._make_ready(marker_rel, None)  # deleted unseen? the re-check tells
            return 0
        self.marked.add(listing.dir)
        changed = 0
        for rel, st in listing.files:
            if st != self.emitted.get(rel):
                self._make_ready(rel, None)
                changed += 1
        if listing.marker != self.emitted.get(marker_rel):
            self._make_ready(marker_rel, None)  # last: after the files it vouches for
            changed += 1
        return changed

    def gone(self, rel: str) -> None:
        self._cancel_pending(rel)
        self.ready.pop(rel, None)
        if self.emitted.pop(rel, None) is not None:
            self.forget.add(rel)
            self._on_ready()
        if self._marker is not None and rel.rpartition("/")[2] == self._marker:
            self.marked.discard(rel.rpartition("/")[0])

    def dir_gone(self, rel_dir: str) -> None:
        prefix = rel_dir + "/"
        for rel in [r for r in self.emitted if r.startswith(prefix)]:
            self.gone(rel)
        for rel in [r for r in self.pending if r.startswith(prefix)]:
            self._cancel_pending(rel)
        self.marked = {d for d in self.marked if d != rel_dir and not d.startswith(prefix)}

    # --- emitting --------------------------------------------------------------------

    def take_ready(self) -> list[tuple[str, FileState | None]]:
        batch = list(self.ready.items())
        self.ready = {}
        return batch

    def settle(self, rel: str, expected: FileState | None, state: FileState | None) -> bool:
        """The re-check before emitting: True if ``rel`` is to be emitted with ``state`` now
        (and it is recorded as emitted)."""
        if state is None:
            self.gone(rel)
            return False
        if state == self.emitted.get(rel):
            return False
        if expected is not None and state != expected:
            self.change(rel, state, False, False)  # changed since: wait for it again
            return False
        self.emitted[rel] = state
        self.forget.discard(rel)
        self._cancel_pending(rel)
        return True

    # --- internals -------------------------------------------------------------------

    def _stable_now(self, rel: str, state: FileState) -> bool:
        """Stable already: a marker name (``markers``), ``stable_for`` is 0, or the mtime is
        that old (when trusted)."""
        if not self._stable_ns or rel.rpartition("/")[2] in self._markers:
            return True
        return self._trust_old_mtime and time.time_ns() - state[1] >= self._stable_ns

    def _due(self, rel: str) -> None:
        pending = self.pending.pop(rel, None)
        if pending is not None:
            self._make_ready(rel, pending.state)

    def _cancel_pending(self, rel: str) -> None:
        pending = self.pending.pop(rel, None)
        if pending is not None:
            pending.timer.cancel()

    def _make_ready(self, rel: str, expected: FileState | None) -> None:
        self.ready.pop(rel, None)  # the newest decision, last in order
        self.ready[rel] = expected
        self._on_ready()
