"""``eventflow checks FILE list | rerun RUN_ID | override RUN_ID``: the partitions held by
data-quality checks, and what an operator does about them (audited: who, when, why)."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import click
from rich.table import Table

from eventflow.cli.common import FILE, JSON_OPT, load, out, print_json, with_store
from eventflow.cli.render import add_row
from eventflow.events import format_partition, utcnow
from eventflow.quality import gates as gate_actions
from eventflow.records import GateStatus
from eventflow.views import checks as views


@click.group()
@FILE
@click.pass_context
def checks(ctx: click.Context, file: Path) -> None:
    """Data-quality checks of produced partitions: list them, re-run them, override them.

    A partition whose blocking check failed is not announced: the rules downstream wait
    (`eventflow why` says which check blocks). Fix the data, then `rerun` the checks; or
    `override` to announce the partition as it is."""
    ctx.obj = file


@checks.command("list")
@click.option("--rule", help="Only this rule's partitions.")
@click.option("--status", type=click.Choice(get_args(GateStatus)), help="Only this status.")
@click.option("--limit", default=50, show_default=True, help="Most partitions to list.")
@JSON_OPT
@click.pass_obj
def list_(
    file: Path, rule: str | None, status: GateStatus | None, limit: int, as_json: bool
) -> None:
    """Produced partitions and their check results, newest first."""
    pipeline = load(file)
    found = with_store(
        pipeline, lambda s: views.gates(pipeline, s, rule=rule, status=status, limit=limit)
    )
    if as_json:
        print_json([h.to_dict() for h in found])
        return
    table = Table("run", "rule", "dataset", "partition", "status", "checks", "audit")
    for h in found:
        g = h.gate
        results = ", ".join(
            f"{r.get('check')} {'ok' if r.get('passed') else 'FAILED'}" for r in g.results
        )
        audit = "; ".join(f"{a.get('action')} by {a.get('by')}" for a in g.actions)
        status_text = h.reason if g.status in views.HELD else g.status
        add_row(
            table,
            g.run_id,
            g.rule,
            g.dataset,
            format_partition(g.partition),
            status_text,
            results or "-",
            audit or "-",
        )
    out.print(table)


@checks.command()
@click.argument("run_id")
@click.option("--reason", default="", help="Why, for the audit trail.")
@click.pass_obj
def rerun(file: Path, run_id: str, reason: str) -> None:
    """Run the checks of RUN_ID's partition again (after fixing its data); the running
    pipeline picks it up within its poll interval."""
    _act(file, run_id, "rerun", reason)


@checks.command()
@click.argument("run_id")
@click.option("--reason", default="", help="Why, for the audit trail.")
@click.pass_obj
def override(file: Path, run_id: str, reason: str) -> None:
    """Announce RUN_ID's blocked partition without its checks passing."""
    _act(file, run_id, "override", reason)


def _act(file: Path, run_id: str, action: str, reason: str) -> None:
    from eventflow.cli.act import operator

    pipeline = load(file)
    by = operator()
    gate = with_store(pipeline, lambda s: gate_actions.act(s, run_id, action, by, utcnow(), reason))
    done = "will be checked again" if action == "rerun" else "is announced without its checks"
    out.print(
        f"{gate.dataset} {format_partition(gate.partition)} (run {run_id}) {done}", markup=False
    )
