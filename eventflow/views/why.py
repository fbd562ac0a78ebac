"""``eventflow why RULE PARTITION``: which inputs arrived (with their source positions),
which are missing, what the partition's timing is and what ran."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eventflow.events import InputRef, partition_key
from eventflow.pauses import Pause
from eventflow.pipeline import CompiledPipeline
from eventflow.records import RunRecord
from eventflow.rules.core import MatchState, RuleSpec
from eventflow.types import Store
from eventflow.views import NotFound, iso
from eventflow.views.checks import Held, blocked_inputs
from eventflow.views.matches import match_timing
from eventflow.views.rules import condition, rule_options

NOTHING_ARRIVED = "nothing arrived"
"""The status of a partition of which no input has arrived (the store has no match)."""


@dataclass(frozen=True, slots=True)
class Input:
    """One dataset of the rule's condition and the events that announced it."""

    dataset: str
    events: tuple[InputRef, ...]

    @property
    def arrived(self) -> bool:
        return bool(self.events)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "arrived": self.arrived,
            "events": [e.to_dict() for e in self.events],
        }


@dataclass(frozen=True, slots=True)
class Why:
    rule: str
    spec: RuleSpec
    partition: Mapping[str, str]
    match: MatchState | None
    """None when nothing arrived for the partition."""
    inputs: tuple[Input, ...]
    runs: tuple[RunRecord, ...]
    """Every run of the partition, by generation."""
    blocked: Mapping[str, Held] = field(default_factory=dict)
    """Missing inputs held by the checks of the rule that produces them."""
    paused: Pause | None = None
    """The rule's pause: its fires are held (their runs wait) until it is resumed."""
    rule_version: str = ""
    """The version of the rule the pipeline runs now (the match says which it opened under)."""

    @property
    def status(self) -> str:
        return self.match.status if self.match else NOTHING_ARRIVED

    @property
    def missing(self) -> list[str]:
        m = self.match
        return list(m.missing(self.spec)) if m else list(self.spec.datasets)

    def to_dict(self) -> dict[str, Any]:
        m = self.match
        return {
            "rule": self.rule,
            "partition": dict(self.partition),
            "condition": condition(self.spec),
            **rule_options(self.spec),
            **(match_timing(m) if m else {}),
            "status": self.status,
            "generation": m.generation if m else 0,
            "opened_at": iso(m.opened_at) if m else None,
            "expires_at": iso(m.expires_at) if m else None,
            "inputs": [i.to_dict() for i in self.inputs],
            "missing": self.missing,
            "blocked": {d: h.to_dict() for d, h in self.blocked.items()},
            "runs": [r.to_dict() for r in self.runs],
            "paused": self.paused.to_dict() if self.paused else None,
            "rule_version": self.rule_version,
            "opened_version": m.version if m else None,
        }


def rule_spec(pipeline: CompiledPipeline, rule: str) -> RuleSpec:
    """The spec of ``rule``; NotFound naming the rules there are."""
    if rule not in pipeline.rules:
        raise NotFound(f"no rule {rule!r}; rules: {', '.join(pipeline.rules)}")
    return pipeline.rules[rule].spec


async def why(
    pipeline: CompiledPipeline, store: Store, rule: str, partition: Mapping[str, str]
) -> Why:
    """The partition ``partition`` (exactly the rule's ``by`` variables) of ``rule``."""
    spec = rule_spec(pipeline, rule)
    if set(partition) != set(spec.by):
        raise NotFound(
            f"rule {rule} joins on ({', '.join(spec.by)}), not ({', '.join(partition)})",
            hint="give each variable once: " + " ".join(f"{v}=..." for v in spec.by),
        )
    values = {v: partition[v] for v in spec.by}
    key = partition_key(values)
    match = await store.get_match(rule, key)
    found = await store.list_runs(rule=rule, key=key, limit=10_000)
    inputs = tuple(Input(d, tuple(match.inputs.get(d, ()) if match else ())) for d in spec.datasets)
    missing = [i.dataset for i in inputs if not i.arrived]
    blocked = await blocked_inputs(pipeline, store, missing, values)
    paused = next((p for p in await store.pauses() if p.kind == "rule" and p.name == rule), None)
    runs = tuple(sorted(found, key=lambda r: r.generation))
    version = pipeline.version.rule(rule)
    return Why(rule, spec, values, match, inputs, runs, blocked, paused, version)
