"""The human output of the commands: tables and lines drawn from the view objects.

Pure renderers: each takes a view of :mod:`eventflow.views` (or an action's result) and
prints it; what is shown is decided by the view, how it reads here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from eventflow.cli import health
from eventflow.cli.common import out
from eventflow.durations import format_duration
from eventflow.events import format_partition
from eventflow.pipeline import CompiledPipeline
from eventflow.rules.core import MatchState, RuleSpec
from eventflow.rules.expr import leaves
from eventflow.views.deadletters import DeadLetterView
from eventflow.views.events import EventView
from eventflow.views.matches import PartialMatch
from eventflow.views.runs import RunDetail, RunView, downstream_text
from eventflow.views.status import Status
from eventflow.views.why import Why


def add_row(table: Table, *cells: str) -> None:
    """Add a row of plain text: values such as ``dt=[x]`` are not rich markup."""
    table.add_row(*(Text(cell) for cell in cells))


# --- rule options and partition timing -----------------------------------------------------


def needs(spec: RuleSpec) -> dict[str, int]:
    """Datasets of which the rule needs more than one partition (``count``), and how many."""
    if spec.condition is None:
        return {}
    return {n.dataset: n.count for n in leaves(spec.condition) if n.count > 1}


def with_counts(m: PartialMatch) -> list[str]:
    """A partial match's arrived datasets, ``hourly 20/24`` for counted ones."""
    need, inputs = needs(m.spec), m.match.inputs
    return [f"{d} {len(inputs.get(d, ()))}/{need[d]}" if d in need else d for d in m.arrived]


def describe_counts(spec: RuleSpec, m: MatchState | None) -> list[str]:
    """``hourly: 20 of 24 partitions`` for each counted dataset (``why``)."""
    inputs = m.inputs if m is not None else {}
    return [f"{d}: {len(inputs.get(d, ()))} of {n} partitions" for d, n in needs(spec).items()]


def describe_options(r: Mapping[str, Any]) -> str:
    """``; quiet 2s, expect by {dt} + 1d, batch 100 / 1h``: the options a rule sets."""
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


# --- status, why, runs, dead letters ------------------------------------------------------


def status(view: Status) -> None:
    out.print(f"[bold]{escape(view.pipeline)}[/]  state {escape(view.state)}")
    table = Table(
        "rule", "when", "open", "fired", "expired", "missed", title="Rules", title_justify="left"
    )
    for rule in view.rules:
        r = rule.to_dict()
        by = f" by {', '.join(r['when']['by'])}" if r["when"]["by"] else ""
        add_row(
            table,
            r["rule"],
            f"{r['condition_text']}{by}{describe_options(r)}",
            *(str(r[s]) for s in ("open", "fired", "expired", "missed")),
        )
    out.print(table)
    if view.partial_matches:
        matches(view.partial_matches)
    if view.held:
        table = Table(
            "run",
            "dataset",
            "partition",
            "status",
            "downstream",
            title="Held by checks",
            title_justify="left",
        )
        for h in view.held:
            g = h.gate
            add_row(
                table,
                g.run_id,
                g.dataset,
                format_partition(g.partition),
                h.reason,
                ", ".join(h.downstream) or "-",
            )
        out.print(table)
    for paused in view.pauses:
        out.print(paused_text(paused.to_dict()), markup=False)
    health.sensors(view.sensors)
    health.workers(view.workers)
    health.reliability(view.reliability)
    out.print(view.summary(), markup=False)


def opened_under(opened: str | None, current: str) -> str:
    """``opened under version X (the rule runs as Y now)`` for ``why``."""
    if opened is None:
        return f"opened before versions were recorded (the rule runs as version {current} now)"
    if opened == current:
        return f"opened under version {opened} (the version the rule runs now)"
    return f"opened under version {opened} (the rule runs as version {current} now)"


def matches(found: Sequence[PartialMatch]) -> None:
    """The partial matches' table: what arrived, what is missing, expiry and deadline."""
    table = Table(
        "rule",
        "partition",
        "status",
        "arrived",
        "missing",
        "expires at",
        "deadline",
        title="Partial matches",
        title_justify="left",
    )
    for m in found:
        p = m.to_dict()
        add_row(
            table,
            p["rule"],
            format_partition(p["partition"]),
            p["status"],
            ", ".join(with_counts(m)) or "-",
            ", ".join(p["missing"]) or "-",
            p["expires_at"] or p["quiet_until"] or "-",
            f"{p['deadline']['at']} ({p['deadline']['state']})" if p["deadline"] else "-",
        )
    out.print(table)


def why(view: Why) -> None:
    report, spec, match = view.to_dict(), view.spec, view.match
    cond = f"{report['condition_text']} by ({', '.join(spec.by)})"
    if spec.within:
        cond += f" within {format_duration(spec.within)}"
    cond += describe_options(report)
    out.print(f"rule [bold]{escape(view.rule)}[/]: {escape(cond)}")
    out.print(
        f"partition {format_partition(report['partition'])}: {report['status']}"
        + (f", generation {report['generation']}" if match else "")
        + (f", expires at {report['expires_at']}" if report["expires_at"] else "")
        + describe_timing(report)
    )
    if match is not None:
        out.print(f"  {opened_under(match.version, view.rule_version)}", markup=False)
    if view.paused is not None:
        out.print(f"  {paused_text(view.paused.to_dict())}", markup=False)
    for line in describe_counts(spec, match):
        out.print(f"  {escape(line)}")
    for d in view.inputs:
        if not d.arrived:
            held = view.blocked.get(d.dataset)
            why = f"{held.reason} (run {held.gate.run_id})" if held else "missing"
            out.print(f"  [red]✗ {escape(d.dataset)}[/]  {escape(why)}")
            continue
        for ref in d.events:
            pos = " ".join(f"{k}={v}" for k, v in ref.position.items())
            detail = (
                f"{format_partition(ref.partition)}  at {ref.time}  from {ref.sensor}"
                f" ({pos})  event {ref.event_id}"
            )
            out.print(f"  [green]✓ {escape(d.dataset)}[/]  {escape(detail)}", markup=True)
    for r in view.runs:
        out.print(
            f"  run {r.run_id} generation {r.generation}: {r.status}"
            f" (attempt {r.attempt}/{r.max_attempts})" + (f" {r.error}" if r.error else ""),
            markup=False,
        )


def runs(records: Sequence[RunView]) -> None:
    with_downstream = any(r.downstream for r in records)
    with_checks = any(r.checks is not None for r in records)
    with_version = any(r.pipeline_version for r in records)
    columns = ["run", "rule", "partition", "status", "attempt", "created", "error"]
    extra = (
        (["version"] if with_version else [])
        + (["checks"] if with_checks else [])
        + (["downstream"] if with_downstream else [])
    )
    table = Table(*columns, *extra)
    for r in records:
        cells = [
            r.run_id,
            r.rule,
            format_partition(r.partition),
            r.status,
            f"{r.attempt}/{r.max_attempts}",
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            (r.error or "")[:60],
        ]
        if with_version:  # the version of the rule that fired the run
            cells.append(r.pipeline_version or "-")
        if with_checks:
            cells.append(r.checks.text if r.checks is not None else "-")
        if with_downstream:
            cells.append(downstream_text(r))
        add_row(table, *cells)
    out.print(table)


def run_detail(view: RunDetail) -> None:
    for k, v in view.run.to_dict().items():
        if k != "inputs":
            out.print(f"{k:>12}: {v}", markup=False)
    for ref in view.run.inputs:
        out.print(
            f"       input: {ref.dataset} {format_partition(ref.partition)} event {ref.event_id}",
            markup=False,
        )
    logs = view.logs
    for stream, text in (("stdout", logs.stdout), ("stderr", logs.stderr)):
        out.print(f"--- {stream} (attempt {logs.attempt}) ---", markup=False)
        out.print(text.rstrip("\n") or "(empty)", markup=False)


def deadletters(letters: Sequence[DeadLetterView], pipeline: CompiledPipeline) -> None:
    if not letters:
        out.print(f"{pipeline.name}: no dead letters", markup=False)
        return
    table = Table("time", "sensor", "position", "error", "excerpt", title="Dead letters")
    for view in letters:
        d = view.letter
        add_row(
            table,
            d.time.strftime("%Y-%m-%d %H:%M:%S"),
            d.sensor,
            " ".join(f"{k}={v}" for k, v in d.position.items()),
            d.error[:80],
            d.excerpt[:40],
        )
    out.print(table)


def events(found: Sequence[EventView], pipeline: CompiledPipeline) -> None:
    if not found:
        out.print(f"{pipeline.name}: no events", markup=False)
        return
    table = Table("received", "sensor", "announced", "position", "id", title="Events")
    for view in found:
        e = view.event
        add_row(
            table,
            e.received_at.strftime("%Y-%m-%d %H:%M:%S"),
            e.sensor,
            ", ".join(f"{n} {format_partition(p)}" for n, p in e.datasets),
            " ".join(f"{k}={v}" for k, v in e.position.items()),
            e.id,
        )
    out.print(table)


def fired(runs: Sequence[Any], title: str, limit: int = 50) -> None:
    """The runs a replay fired (or would fire): rule, partition, generation, run id."""
    table = Table("rule", "partition", "generation", "run", title=title, title_justify="left")
    for run in runs[:limit]:
        add_row(table, run.rule, format_partition(run.partition), str(run.generation), run.run_id)
    out.print(table)
    if len(runs) > limit:
        out.print(f"... and {len(runs) - limit} more", markup=False)


def paused_text(pause: Mapping[str, Any]) -> str:
    """``rule R paused by B since T (reason): N runs held``: one pause in one line."""
    reason = f" ({pause['reason']})" if pause.get("reason") else ""
    text = f"paused by {pause['by']} since {str(pause['since'])[:19]}{reason}"
    if "name" in pause:
        text = f"{pause['kind']} {pause['name']} {text}"
    if pause.get("held") is not None:
        text += f": {pause['held']} runs held until `eventflow resume`"
    return text
