"""What the S3 sensor knows of each object, and which objects are ready to emit.

A :class:`Tracker` lives on the event loop and does no I/O. Listings (a complete view of
everything under a prefix) and notifications (one object's current state) feed it; it
answers which objects to emit now, per the readiness mode:

- ``none``: every new or changed object;
- ``stable``: an object whose state two consecutive listings agree on;
- ``marker``: the objects of a prefix (``.../dt=D/``) once it holds the marker, the marker
  last; later objects of a marked prefix at once; a rewritten marker again;
- ``manifest``: the parts a manifest lists once all of them exist, then the manifest.

``seen`` is the durable record (the sensor cursor: key to ETag, size, LastModified): what
was emitted, committed or on its way. An object is emitted again only when its state
changes. Listings are numbered so that an object emitted while a listing was under way is
not taken for deleted because that listing missed it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from eventflow.plugin import JSON

from .client import ObjectState

Mode = Literal["none", "stable", "marker", "manifest"]
Item = tuple[str, ObjectState]


def dir_of(key: str) -> str:
    return key.rpartition("/")[0]


def join(dir_: str, name: str) -> str:
    return f"{dir_}/{name}" if dir_ else name


@dataclass(frozen=True, slots=True)
class Manifest:
    """The parts a manifest object (in one state) lists, as full keys; None: unreadable."""

    state: ObjectState
    parts: frozenset[str] | None


@dataclass(slots=True)
class Decision:
    emit: list[Item] = field(default_factory=list)
    """Objects to emit now, in order."""
    relist: str | None = None
    """A prefix to list (a marker was notified: its prefix's objects are wanted)."""


class Tracker:
    """The sensor's per-object state; every method runs on the loop and returns at once."""

    def __init__(self, mode: Mode, completes: str | None = None) -> None:
        self.mode = mode
        self.completes = completes
        """The marker or manifest object name."""
        self.seen: dict[str, ObjectState] = {}
        self._stamp: dict[str, int] = {}
        self._listing = 0
        self.pending: dict[str, ObjectState] = {}
        """``stable`` mode: the state the last listing saw of objects not yet emitted."""
        self.marked: dict[str, ObjectState] = {}
        """Prefixes (``dir``) known complete, with their marker's state."""
        self.manifests: dict[str, Manifest] = {}
        """``manifest`` mode: the parts of each prefix's manifest, by its directory."""

    def load_cursor(self, cursor: Mapping[str, JSON]) -> None:
        for key, value in cursor.items():
            state = ObjectState.from_json(value)
            if state is not None:
                self.seen[key] = state
                self._stamp[key] = 0

    def begin_listing(self) -> int:
        """Number a listing about to start; pass it to :meth:`listed`."""
        self._listing += 1
        return self._listing

    def emitted(self, key: str, state: ObjectState) -> None:
        self.seen[key] = state
        self._stamp[key] = self._listing
        self.pending.pop(key, None)

    def is_completer(self, key: str) -> bool:
        return self.completes is not None and key.rpartition("/")[2] == self.completes

    # --- listings --------------------------------------------------------------------

    def listed(
        self, prefix: str, objects: Iterable[Item], listing: int
    ) -> tuple[Decision, list[str]]:
        """A complete listing of ``prefix`` (numbered ``listing``): what to emit, and the
        keys that are gone (to forget)."""
        present = dict(objects)
        decision = Decision()
        if self.mode == "none":
            decision.emit = [(k, s) for k, s in present.items() if self.seen.get(k) != s]
        elif self.mode == "stable":
            decision.emit = self._stable(prefix, present)
        else:
            decision.emit = self._completed(prefix, present)
        gone = [
            k
            for k in self.seen
            if k.startswith(prefix) and k not in present and self._stamp.get(k, 0) < listing
        ]
        for key in gone:
            self.forget(key)
        return decision, gone

    def _stable(self, prefix: str, present: dict[str, ObjectState]) -> list[Item]:
        ready: list[Item] = []
        for key, state in present.items():
            if self.seen.get(key) == state:
                self.pending.pop(key, None)
            elif self.pending.get(key) == state:
                ready.append((key, state))
            else:
                self.pending[key] = state
        for key in [k for k in self.pending if k.startswith(prefix) and k not in present]:
            del self.pending[key]
        return ready

    def _completed(self, prefix: str, present: dict[str, ObjectState]) -> list[Item]:
        groups: dict[str, list[Item]] = {}
        for key, state in present.items():
            groups.setdefault(dir_of(key), []).append((key, state))
        for dir_ in [d for d in self.marked if (d + "/").startswith(prefix) and d not in groups]:
            del self.marked[dir_]
        assert self.completes is not None
        ready: list[Item] = []
        for dir_, items in groups.items():
            completer_key = join(dir_, self.completes)
            completer = present.get(completer_key)
            members = self._members(dir_, items, completer, present)
            if completer is None or members is None:
                self.marked.pop(dir_, None)
                continue
            self.marked[dir_] = completer
            ready.extend((k, s) for k, s in members if self.seen.get(k) != s)
            if self.seen.get(completer_key) != completer:
                ready.append((completer_key, completer))  # last: after what it vouches for
        return ready

    def _members(
        self,
        dir_: str,
        items: list[Item],
        completer: ObjectState | None,
        present: Mapping[str, ObjectState],
    ) -> list[Item] | None:
        """The objects a present marker or manifest completes; None: not complete yet."""
        if completer is None:
            return None
        if self.mode == "marker":
            return [(k, s) for k, s in items if not self.is_completer(k)]
        manifest = self.manifests.get(dir_)
        if manifest is None or manifest.state != completer or manifest.parts is None:
            return None
        if not manifest.parts <= present.keys():
            return None
        return [(k, present[k]) for k in sorted(manifest.parts)]

    def needs_manifest(self, objects: Iterable[Item]) -> list[Item]:
        """Manifest objects in ``objects`` whose parts are not known for their state."""
        if self.mode != "manifest":
            return []
        out = []
        for key, state in objects:
            if self.is_completer(key):
                known = self.manifests.get(dir_of(key))
                if known is None or known.state != state:
                    out.append((key, state))
        return out

    # --- notifications ---------------------------------------------------------------

    def notified(self, key: str, state: ObjectState) -> Decision:
        """A notification says ``key`` now has ``state``."""
        if self.seen.get(key) == state:
            return Decision()
        if self.mode in ("none", "stable"):  # a notified object is complete
            return Decision(emit=[(key, state)])
        if self.is_completer(key):
            return Decision(relist=dir_of(key) + "/")
        if self.mode == "marker" and dir_of(key) in self.marked:
            return Decision(emit=[(key, state)])  # late data in a complete prefix
        return Decision()  # held: the marker's (or manifest's) listing will find it

    def forget(self, key: str) -> None:
        self.seen.pop(key, None)
        self._stamp.pop(key, None)
        self.pending.pop(key, None)
        if self.is_completer(key):
            self.marked.pop(dir_of(key), None)
            self.manifests.pop(dir_of(key), None)

    def prune(self, prefix: str, window: list[str]) -> list[str]:
        """Forget every object under ``prefix`` outside the ``window`` prefixes; returns
        the forgotten keys (to delete from the cursor)."""

        def outside(key: str) -> bool:
            return key.startswith(prefix) and not any(key.startswith(w) for w in window)

        old = [k for k in self.seen if outside(k)]
        for key in old:
            self.forget(key)
        for key in [k for k in self.pending if outside(k)]:
            del self.pending[key]
        for dir_ in [d for d in self.marked if outside(d + "/")]:
            del self.marked[dir_]
        for dir_ in [d for d in self.manifests if outside(d + "/")]:
            del self.manifests[dir_]
        return old


def parse_manifest(body: bytes, dir_: str, bucket: str) -> frozenset[str]:
    """The full keys of the parts a manifest lists; raises ValueError if it lists none.

    Accepted: a JSON list of keys; ``{"entries": [{"url": "s3://bucket/key"}, ...]}``
    (Redshift's UNLOAD manifest); ``{"files"|"parts": [KEY or {"key"|"path"|"url": ...}]}``.
    A ``s3://`` URL names a full key (of this bucket); any other key is relative to the
    manifest's prefix.
    """
    import orjson

    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the manifest is not JSON: {exc}") from exc
    if isinstance(doc, dict):
        doc = doc.get("entries", doc.get("files", doc.get("parts")))
    if not isinstance(doc, list) or not doc:
        raise ValueError("the manifest lists no parts (a JSON list, or entries/files/parts)")
    keys = set()
    for entry in doc:
        if isinstance(entry, dict):
            entry = entry.get("url", entry.get("key", entry.get("path")))
        if not isinstance(entry, str) or not entry:
            raise ValueError(f"a manifest entry is not a key: {entry!r}")
        if entry.startswith("s3://"):
            entry_bucket, _, key = entry[5:].partition("/")
            if entry_bucket != bucket:
                raise ValueError(f"the manifest names a part in another bucket: {entry}")
            keys.add(key)
        else:
            keys.add(join(dir_, entry.lstrip("/")))
    return frozenset(keys)
