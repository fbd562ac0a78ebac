"""Filesystem helpers of the directory sensor: which paths count, listings, scans and stats.

Everything here is blocking and runs on a thread (the watchdog dispatcher or the sensor's own
executors), never on the event loop. Paths handed to the sensor are relative to the root,
with ``/`` separators, and a file's state is ``(size, mtime_ns)``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from eventflow.plugin import glob_match

FileState = tuple[int, int]
"""``(size, mtime_ns)``: what the cursor records and what a change is measured by."""


@dataclass(frozen=True, slots=True)
class PathFilter:
    """Which files under the root the sensor observes.

    ``ignore`` globs are matched against the name of every path segment (so a hidden
    directory hides its whole subtree); ``include`` and ``exclude`` against the whole
    relative path. The marker file of marker mode is observed whatever ``include`` and
    ``ignore`` say about its name (``exclude`` still applies), since it is the signal.
    """

    include: tuple[str, ...]
    exclude: tuple[str, ...]
    ignore: tuple[str, ...]
    recursive: bool
    marker: str | None = None

    def ignored(self, name: str) -> bool:
        return glob_match(name, self.ignore)

    def dir_wanted(self, rel_dir: str) -> bool:
        """Whether files in the directory ``rel_dir`` ("" is the root) may be observed."""
        if not rel_dir:
            return True
        if not self.recursive:
            return False
        return not any(self.ignored(part) for part in rel_dir.split("/"))

    def name_wanted(self, rel: str, name: str) -> bool:
        """``file_wanted`` for a file whose directory is already known to be wanted."""
        if name == self.marker:
            return not (self.exclude and glob_match(rel, self.exclude))
        if self.ignored(name):
            return False
        if not glob_match(rel, self.include):
            return False
        return not (self.exclude and glob_match(rel, self.exclude))

    def file_wanted(self, rel: str) -> bool:
        rel_dir, _, name = rel.rpartition("/")
        return self.dir_wanted(rel_dir) and self.name_wanted(rel, name)

    def is_marker(self, rel: str) -> bool:
        return self.marker is not None and rel.rpartition("/")[2] == self.marker


@dataclass(slots=True)
class Listing:
    """The observed files of one directory, and its marker's state in marker mode."""

    dir: str
    files: list[tuple[str, FileState]] = field(default_factory=list)
    marker: FileState | None = None


def join(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def state_of(st: os.stat_result) -> FileState:
    return (st.st_size, st.st_mtime_ns)


def stat_state(path: str) -> FileState | None:
    """The state of the regular file at ``path``, or None if there is none (any more)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return state_of(st) if stat.S_ISREG(st.st_mode) else None


def stat_many(paths: Iterable[str]) -> list[FileState | None]:
    return [stat_state(p) for p in paths]


def missing(root: str, rels: Iterable[str]) -> list[str]:
    """The relative paths of ``rels`` that are no longer regular files."""
    return [rel for rel in rels if stat_state(os.path.join(root, rel)) is None]


def root_problem(root: str) -> tuple[str, str] | None:
    """What keeps the sensor from watching ``root`` (message, hint), or None."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return "does not exist", "create it, or fix the sensor's `path`"
    except PermissionError as exc:
        return f"cannot be read ({exc.strerror})", "check permissions on it and its parents"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})", "check that the filesystem is mounted"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory", "point the sensor's `path` at a directory"
    try:
        with os.scandir(root):
            pass
    except OSError as exc:
        return (
            f"cannot be read ({exc.strerror})",
            "check permissions: eventflow needs read and execute access to it",
        )
    return None


def list_dir(root: str, rel_dir: str, flt: PathFilter) -> Listing:
    """One directory's observed files (with states) and marker; raises OSError if unreadable."""
    listing = Listing(rel_dir)
    with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as entries:
        for entry in entries:
            _add_entry(listing, entry, flt, None)
    return listing


def scan_step(
    root: str, stack: list[str], flt: PathFilter, budget: int
) -> tuple[list[Listing], list[str]]:
    """List directories popped from ``stack`` (pushing subdirectories) until about ``budget``
    files were seen; returns the listings and the subdirectories that could not be read.

    The root itself failing raises (the caller reports it); a subdirectory that vanished
    is skipped, one that cannot be read is reported back. Symlinked directories are not
    followed (as the observer does not follow them).
    """
    listings: list[Listing] = []
    unreadable: list[str] = []
    seen = 0
    while stack and seen < budget:
        rel_dir = stack.pop()
        listing = Listing(rel_dir)
        try:
            with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as entries:
                for entry in entries:
                    _add_entry(listing, entry, flt, stack)
        except (FileNotFoundError, NotADirectoryError):
            if not rel_dir:
                raise
            continue
        except OSError:
            if not rel_dir:
                raise
            unreadable.append(rel_dir)
            continue
        listings.append(listing)
        seen += len(listing.files) + 1
    return listings, unreadable


def walk(root: str, rel_dir: str, flt: PathFilter) -> list[Listing]:
    """Every listing of the subtree at ``rel_dir`` (a directory moved into place)."""
    if not flt.dir_wanted(rel_dir):
        return []
    stack = [rel_dir]
    out: list[Listing] = []
    while stack:
        listings, _ = scan_step(root, stack, flt, 1 << 30)
        out.extend(listings)
    return out


def _add_entry(
    listing: Listing, entry: os.DirEntry[str], flt: PathFilter, subdirs: list[str] | None
) -> None:
    name = entry.name
    rel = join(listing.dir, name)
    try:
        if entry.is_dir(follow_symlinks=False):
            if subdirs is not None and flt.recursive and not flt.ignored(name):
                subdirs.append(rel)
            return
        if not flt.name_wanted(rel, name) or not entry.is_file():
            return
        state = state_of(entry.stat())
    except OSError:  # vanished while listing
        return
    if name == flt.marker:
        listing.marker = state
    else:
        listing.files.append((rel, state))
