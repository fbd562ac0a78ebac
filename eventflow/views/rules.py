"""Each rule of a pipeline: its join condition, its options and its matches by status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventflow.durations import format_duration
from eventflow.events import JSON
from eventflow.pipeline import CompiledPipeline
from eventflow.rules.core import RuleSpec
from eventflow.rules.expr import Group, Need, describe
from eventflow.types import Store

MATCH_COUNTS = ("open", "fired", "expired", "missed")
"""The statuses a rule's matches are counted by (``missed``: open, its deadline passed)."""


def rule_options(spec: RuleSpec) -> dict[str, JSON]:
    """The rule's condition as text and its timing options (None where unset)."""
    condition = spec.condition or Group(spec.mode, tuple(Need(d) for d in spec.datasets))
    batch = None
    if spec.batch is not None:
        wait = spec.batch.max_wait
        batch = {
            "max_events": spec.batch.max_events,
            "max_wait": format_duration(wait) if wait is not None else None,
        }
    return {
        "condition_text": describe(condition),
        "quiet": format_duration(spec.quiet) if spec.quiet is not None else None,
        "late": spec.late_policy("fired"),
        "expect_by": spec.deadline.text if spec.deadline is not None else None,
        "on_deadline": spec.on_deadline if spec.deadline is not None else None,
        "batch": batch,
    }


def condition(spec: RuleSpec) -> dict[str, JSON]:
    """``{"mode", "datasets", "by", "within"}``: the rule's ``when`` (within in seconds)."""
    return {
        "mode": spec.mode,
        "datasets": list(spec.datasets),
        "by": list(spec.by),
        "within": spec.within.total_seconds() if spec.within else None,
    }


@dataclass(frozen=True, slots=True)
class RuleView:
    """One rule: what it joins, what it produces, how many matches it has of each status."""

    rule: str
    spec: RuleSpec
    produces: str | None
    counts: Mapping[str, int]
    """Matches by status, every one of :data:`MATCH_COUNTS` present."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "when": condition(self.spec),
            "produces": self.produces,
            **{s: self.counts[s] for s in MATCH_COUNTS},
            **rule_options(self.spec),
        }


def rule_views(
    pipeline: CompiledPipeline, per_rule: Mapping[str, Mapping[str, int]]
) -> list[RuleView]:
    """The rules in declaration order, with ``per_rule`` (:meth:`Store.match_counts`)."""
    return [
        RuleView(
            name,
            rule.spec,
            rule.produces,
            {s: per_rule.get(name, {}).get(s, 0) for s in MATCH_COUNTS},
        )
        for name, rule in pipeline.rules.items()
    ]


async def rules(pipeline: CompiledPipeline, store: Store) -> list[RuleView]:
    """Every rule of ``pipeline`` with its matches by status, read from ``store``."""
    return rule_views(pipeline, await store.match_counts())
