"""How ``status`` and ``why`` show a rule's options and a partition's timing (deadline,
quiet period, late inputs, degraded runs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventflow.durations import format_duration
from eventflow.rules.core import MatchState, RuleSpec
from eventflow.rules.expr import Group, Need, describe, leaves


def rule_options(spec: RuleSpec) -> dict[str, Any]:
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


def match_timing(m: MatchState) -> dict[str, Any]:
    """A partition's deadline, quiet period, late inputs and whether it ran degraded."""
    deadline = None
    if m.deadline is not None and m.deadline_at is not None:
        deadline = {"at": m.deadline_at.isoformat(), "state": m.deadline}
    return {
        "deadline": deadline,
        "quiet_until": m.quiet_until.isoformat() if m.quiet_until else None,
        "late_inputs": m.late,
        "partial_run": m.partial,
        "counts": {d: len(refs) for d, refs in m.inputs.items()},
    }


def needs(spec: RuleSpec) -> dict[str, int]:
    """Datasets of which the rule needs more than one partition (``count``), and how many."""
    if spec.condition is None:
        return {}
    return {n.dataset: n.count for n in leaves(spec.condition) if n.count > 1}


def with_counts(spec: RuleSpec, row: Mapping[str, Any]) -> list[str]:
    """A partial match's arrived datasets, ``hourly 20/24`` for counted ones."""
    need, counts = needs(spec), row.get("counts", {})
    return [f"{d} {counts.get(d, 0)}/{need[d]}" if d in need else d for d in row["arrived"]]


def describe_counts(spec: RuleSpec, m: MatchState | None) -> list[str]:
    """``hourly: 20 of 24 partitions`` for each counted dataset (``why``)."""
    inputs = m.inputs if m is not None else {}
    return [f"{d}: {len(inputs.get(d, ()))} of {n} partitions" for d, n in needs(spec).items()]


def describe_options(r: Mapping[str, Any]) -> str:
    """`` quiet 2s, expect by {dt} + 1d, batch 100 / 1h``: the options a rule sets."""
    parts = []
    if r.get("quiet"):
        parts.append(f"quiet {r['quiet']}")
    if r.get("expect_by"):
        partial = " (run partial)" if r.get("on_deadline") == "run_partial" else ""
        parts.append(f"expect by {r['expect_by']}{partial}")
    if r.get("batch"):
        b = r["batch"]
        parts.append(f"batch of {b['max_events'] or '∞'} or {b['max_wait'] or 'no wait'}")
    if r.get("late") and r["late"] != "rerun":
        parts.append(f"late: {r['late']}")
    return "; " + ", ".join(parts) if parts else ""


def describe_timing(report: Mapping[str, Any]) -> str:
    """``, deadline 2024-01-02T06:00:00+00:00 missed, quiet until ...`` for ``why``."""
    text = ""
    deadline = report.get("deadline")
    if deadline:
        text += f", deadline {deadline['at']} {deadline['state']}"
    if report.get("quiet_until"):
        text += f", quiet until {report['quiet_until']}"
    if report.get("partial_run"):
        text += ", fired a degraded run at its deadline"
    if report.get("late_inputs"):
        text += f", {report['late_inputs']} late input(s) not run"
    return text
