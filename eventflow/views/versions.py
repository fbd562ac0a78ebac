"""The versions that ran on a store, and the plan of the running version.

What ``eventflow versions`` and ``GET /api/versions`` list (each start: when, on which worker,
in which environment, at which git commit, and what changed from the start before it), what
the page's versions section shows (the version this process runs), and what ``GET
/api/plan`` answers: the plan of the running pipeline against the version the store ran
before it (:mod:`eventflow.plan`), with the live state as it is now.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from eventflow.pipeline import CompiledPipeline
from eventflow.plan import Plan, live_state, make_plan, plan_definition, rule_names
from eventflow.types import Store
from eventflow.version_records import StoreIdentity, VersionStart
from eventflow.views import paging
from eventflow.views.paging import BadCursor, Page

SCAN = 1_000
"""Starts :func:`previous_version` looks through for an earlier version (newest first)."""


@dataclass(frozen=True, slots=True)
class VersionView:
    """One start and what changed from the start before it (plan line ids)."""

    start: VersionStart
    changes: tuple[str, ...]
    current: bool
    """This is the version the pipeline (the file, or the running process) has."""

    def to_dict(self) -> dict[str, Any]:
        return {**self.start.to_dict(), "changes": list(self.changes), "current": self.current}


@dataclass(frozen=True, slots=True)
class Current:
    """The version a pipeline runs, where it runs, and the store's identity."""

    pipeline: str
    version: str
    environment: str
    identity: StoreIdentity | None
    start: VersionStart | None
    """The start of this version by the running process (None outside ``run``)."""

    def to_dict(self) -> dict[str, Any]:
        s = self.start
        return {
            "pipeline": self.pipeline,
            "version": self.version,
            "environment": self.environment,
            "store": self.identity.to_dict() if self.identity else None,
            "started_at": s.started_at.isoformat() if s else None,
            "worker": s.worker if s else None,
            "git_commit": s.git_commit if s else None,
            "git_dirty": s.git_dirty if s else None,
        }


def changed_since(before: VersionStart | None, start: VersionStart) -> list[str]:
    """The plan line ids between two starts' definitions (``first start`` for the first)."""
    if before is None:
        return ["first start"]
    if before.version == start.version:
        return []
    diff = make_plan(
        before, start.definition, start.version, environment=start.environment, state={}
    )
    return [line.id for line in diff.lines]


async def version_page(
    pipeline: CompiledPipeline, store: Store, *, limit: int = 50, cursor: str | None = None
) -> Page[VersionView]:
    """A page of starts, newest first, after the page whose ``next`` is ``cursor``, with the
    total the store holds."""
    before = _seq(cursor) if cursor else None
    found = await store.list_starts(limit + 2, before=before)  # +1: a next page; +1: its diff
    total = await store.count_starts()
    items = []
    for i, start in enumerate(found[:limit]):
        earlier = found[i + 1] if i + 1 < len(found) else None
        if earlier is None and start.seq is not None and start.seq > 1:
            older = await store.list_starts(1, before=start.seq)  # the page's last start
            earlier = older[0] if older else None
        running = start.version == pipeline.version.id
        items.append(VersionView(start, tuple(changed_since(earlier, start)), running))
    last = items[-1].start if len(found) > limit and items else None
    cursor_next = paging.encode(last.started_at, str(last.seq)) if last else None
    return Page(items, cursor_next, total)


def _seq(cursor: str) -> int:
    _, key = paging.decode(cursor)
    if not key.isdigit():
        raise BadCursor(cursor)
    return int(key)


def current(
    pipeline: CompiledPipeline, identity: StoreIdentity | None, start: VersionStart | None
) -> Current:
    return Current(pipeline.name, pipeline.version.id, pipeline.environment, identity, start)


async def previous_version(store: Store, version: str) -> VersionStart | None:
    """The newest start of another version than ``version``: what the store ran before it
    (None when only ``version`` ran)."""
    before: int | None = None
    scanned = 0
    while scanned < SCAN:
        found = await store.list_starts(100, before=before)
        for start in found:
            if start.version != version:
                return start
        if len(found) < 100:
            return None
        scanned += len(found)
        before = found[-1].seq
    return None


async def running_plan(
    pipeline: CompiledPipeline, store: Store, accept: Collection[str] = ()
) -> Plan:
    """The plan of the running pipeline against the version the store ran before it, with
    the live state as it is now (every rule listed as added when no other version ran)."""
    previous = await previous_version(store, pipeline.version.id)
    definition = plan_definition(pipeline)
    state = await live_state(store, rule_names(previous, definition))
    return make_plan(
        previous,
        definition,
        pipeline.version.id,
        environment=pipeline.environment,
        state=state,
        accept=accept,
    )
