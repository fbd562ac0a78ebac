"""Partial matches: partitions of a rule that are open, missed their deadline, or expired.

For each: what arrived, what is missing, when it expires, its deadline and quiet period.
``eventflow status``, ``/api/matches``, ``/api/status`` and the page list the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventflow.events import partition_key
from eventflow.pipeline import CompiledPipeline
from eventflow.rules.core import MatchState, RuleSpec
from eventflow.types import Store
from eventflow.views import NotFound, iso, paging
from eventflow.views.paging import Page

MATCH_STATUSES = ("open", "missed", "expired")
"""The statuses of a partial match, in the order they are listed."""


def match_timing(m: MatchState) -> dict[str, Any]:
    """A partition's deadline, quiet period, late inputs and whether it ran degraded."""
    deadline = None
    if m.deadline is not None and m.deadline_at is not None:
        deadline = {"at": m.deadline_at.isoformat(), "state": m.deadline}
    return {
        "deadline": deadline,
        "quiet_until": iso(m.quiet_until),
        "late_inputs": m.late,
        "partial_run": m.partial,
        "counts": {d: len(refs) for d, refs in m.inputs.items()},
    }


@dataclass(frozen=True, slots=True)
class PartialMatch:
    """One open, missed or expired partition of a rule."""

    match: MatchState
    spec: RuleSpec

    @property
    def rule(self) -> str:
        return self.match.rule

    @property
    def partition(self) -> Mapping[str, str]:
        return self.match.partition

    @property
    def status(self) -> str:
        return self.match.status

    @property
    def arrived(self) -> list[str]:
        return sorted(d for d in self.match.inputs if self.match.inputs[d])

    @property
    def missing(self) -> list[str]:
        return list(self.match.missing(self.spec))

    def to_dict(self) -> dict[str, Any]:
        m = self.match
        return match_timing(m) | {
            "rule": m.rule,
            "partition": dict(m.partition),
            "status": m.status,
            "generation": m.generation,
            "arrived": self.arrived,
            "missing": self.missing,
            "opened_at": iso(m.opened_at),
            "expires_at": iso(m.expires_at),
        }


def partial_match(pipeline: CompiledPipeline, match: MatchState) -> PartialMatch | None:
    """The view of ``match``; None when it is fired or of a rule the pipeline no longer has."""
    rule = pipeline.rules.get(match.rule)
    if rule is None or match.status not in MATCH_STATUSES:
        return None
    return PartialMatch(match, rule.spec)


async def match_page(
    pipeline: CompiledPipeline,
    store: Store,
    *,
    rule: str | None = None,
    status: str | None = None,
    partition: Mapping[str, str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[PartialMatch]:
    """A page of partial matches by rule and partition, of one rule, status or partition
    (all given must hold), last changed at or after ``since`` and before ``until``, after the
    page whose ``next`` is ``cursor``, with the total the filters select."""
    _check(pipeline, rule, status)
    key = partition_key(partition) if partition else None
    after = paging.decode_names(cursor) if cursor else None
    where: dict[str, Any] = {
        "rule": rule, "status": status, "partial": True, "key": key, "since": since,
        "until": until,
    }  # fmt: skip
    found = await store.list_matches(**where, after=after, limit=limit + 1)
    total = await store.count_matches(**where)
    shown = found[:limit]
    more = len(found) > limit and shown
    after_last = paging.encode_names(shown[-1].rule, shown[-1].key) if more else None
    # A match of a rule the pipeline no longer has is counted but not shown (no spec).
    items = [v for v in (partial_match(pipeline, m) for m in shown) if v is not None]
    return Page(items, after_last, total)


def _check(pipeline: CompiledPipeline, rule: str | None, status: str | None) -> None:
    if rule is not None and rule not in pipeline.rules:
        raise NotFound(f"no rule {rule!r}", hint=f"rules: {', '.join(pipeline.rules)}")
    if status is not None and status not in MATCH_STATUSES:
        raise ValueError(f"status must be one of {', '.join(MATCH_STATUSES)}, not {status!r}")


async def partial_matches(
    pipeline: CompiledPipeline,
    store: Store,
    *,
    rule: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[PartialMatch]:
    """The oldest ``limit`` matches of each status (or of ``status``), open first, then
    missed, then expired; of one ``rule`` or all. A pipeline may have a million open
    matches, so each status is bounded on its own."""
    _check(pipeline, rule, status)
    found = []
    for s in [status] if status else MATCH_STATUSES:
        for m in await store.list_matches(rule=rule, status=s, limit=limit):
            view = partial_match(pipeline, m)
            if view is not None:
                found.append(view)
    return found
