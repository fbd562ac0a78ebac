"""``backfill``, ``backfills`` and ``cancel-backfill``.

``eventflow backfill`` with ``eventflow run`` going (a SQLite file whose worker lock is
held, any PostgreSQL store, or ``--submit``) records a request that the running pipeline
carries out at its rate (:mod:`eventflow.backfill_worker`); ``--wait`` follows it with a
progress bar. With no pipeline running it plans, writes and executes the runs itself, as
it always did (:func:`eventflow.backfill.backfill`). ``--dry-run`` only shows the plan.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from eventflow import backfill as bf
from eventflow.backfill_requests import BACKFILL_STATUSES, BackfillRequest
from eventflow.cli import render
from eventflow.cli.act import user
from eventflow.cli.common import FILE, JSON_OPT, err, load, no_rule, out, print_json, with_store
from eventflow.errors import WorkerBusy
from eventflow.events import format_partition, utcnow
from eventflow.log import configure
from eventflow.pipeline import CompiledPipeline
from eventflow.store import scheme_of
from eventflow.types import Store
from eventflow.views import backfills as views

WAIT_POLL = 0.5
"""Seconds between two looks at a request followed with ``--wait``."""


@click.command()
@FILE
@click.argument("rule")
@click.option("--from", "lo", required=True, metavar="KEY", help="First partition: 2024-05-01.")
@click.option("--to", "hi", required=True, metavar="KEY", help="Last partition (inclusive).")
@click.option("--dry-run", is_flag=True, help="Show what would run; change nothing.")
@click.option("--force", is_flag=True, help="Run partitions that already succeeded again.")
@click.option(
    "--concurrency",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Runs at once when no pipeline is running (a running one uses its own limits).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Partitions fired per second by a running pipeline [engine.backfill_rate].",
)
@click.option("--submit", is_flag=True, help="Submit to the running pipeline (never run here).")
@click.option("--wait", is_flag=True, help="Follow a submitted backfill until it is done.")
@click.option(
    "--no-list", is_flag=True, help="Enumerate from the event log only, not by listing sensors."
)
@JSON_OPT
def backfill(
    file: Path,
    rule: str,
    lo: str,
    hi: str,
    dry_run: bool,
    force: bool,
    concurrency: int,
    rate: float | None,
    submit: bool,
    wait: bool,
    no_list: bool,
    as_json: bool,
) -> None:
    """Run RULE for every partition from --from to --to whose inputs are there.

    Partitions come from what the sensors can list (directories, S3) and from the event
    log. A KEY gives the rule's partition values in order, separated by '/' (2024-05-01/07
    or dt=2024-05-01/hr=07); a shorter KEY bounds by its first values. Partitions that
    already succeeded are skipped unless --force. While `eventflow run` runs (or with
    --submit, and always on PostgreSQL) the backfill is submitted to it and done at --rate
    partitions a second while live events go on; otherwise it runs here.
    """
    configure("warning")  # progress and the table are the output; problems go to stderr
    pipeline = load(file)
    no_rule(pipeline, rule)
    by = pipeline.rules[rule].spec.by
    try:
        bounds = bf.parse_bound(lo, by, "--from"), bf.parse_bound(hi, by, "--to")
    except bf.BackfillError as exc:
        raise click.BadParameter(str(exc)) from None
    listing = not no_list
    shared = scheme_of(pipeline.state_dsn) in ("postgresql", "postgres")

    async def work(store: Store) -> bf.Plan | BackfillRequest:
        the_plan = await bf.plan(pipeline, store, rule, *bounds, force=force, list_sources=listing)
        todo = len(the_plan.of("run", "resume"))
        if dry_run or not todo:
            return the_plan
        if not (submit or shared) and await _no_pipeline_running(store):
            await _run_here(pipeline, store, the_plan, concurrency, as_json)
            return the_plan
        request = await views.submit(
            pipeline, store, rule, lo, hi, f"cli:{user()}", utcnow(), force=force,
            list_sources=listing, rate=rate, preview_size=len(the_plan.of("run")),
        )  # fmt: skip
        if wait:
            request = await _follow(store, request, as_json)
        return request

    result = with_store(pipeline, work)
    if isinstance(result, BackfillRequest):
        _submitted(result, wait, as_json)
        if result.status == "failed":
            raise SystemExit(1)
        return
    _plan_table(result, rule, dry_run, as_json)
    if any(i.status == "failed" for i in result.items):
        raise SystemExit(1)


async def _no_pipeline_running(store: Store) -> bool:
    """Take the worker lock, or False when ``eventflow run`` holds it (a SQLite file)."""
    try:
        await store.lock_worker()
    except WorkerBusy:
        return False
    return True


async def _run_here(
    pipeline: CompiledPipeline, store: Store, the_plan: bf.Plan, concurrency: int, quiet: bool
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
    todo = len(the_plan.of("run", "resume"))
    with Progress(*columns, TimeElapsedColumn(), console=err, disable=quiet) as bar:
        task = bar.add_task(f"backfill {the_plan.rule}", total=todo)
        await bf.backfill(
            pipeline, store, the_plan, concurrency, on_done=lambda _: bar.advance(task)
        )


async def _follow(store: Store, request: BackfillRequest, quiet: bool) -> BackfillRequest:
    """Show the request's progress until the running pipeline has fired all of it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=err, disable=quiet) as bar:
        task = bar.add_task(f"backfill {request.id}", total=request.preview)
        while request.active:
            await asyncio.sleep(WAIT_POLL)
            request = await views.backfill(store, request.id)
            total = request.planned if request.planned is not None else request.preview
            bar.update(task, total=total, completed=request.fired + _skipped_since(request))
    return request


def _skipped_since(request: BackfillRequest) -> int:
    """Planned partitions not fired because they fired live meanwhile (for the bar)."""
    if request.planned is None or request.status != "done":
        return 0
    return request.planned - request.fired


def _submitted(request: BackfillRequest, waited: bool, as_json: bool) -> None:
    if as_json:
        print_json(request.to_dict())
        return
    if not waited:
        rate = f"{request.rate:g}/s" if request.rate else "the pipeline's rate"
        out.print(
            f"backfill {request.id} submitted: {request.preview} partitions of {request.rule}"
            f" to fire at {rate} by the running pipeline;"
            " `eventflow backfills FILE` shows its progress",
            markup=False,
        )
        return
    out.print(
        f"backfill {request.id} {request.status}: {views.progress_text(request)}"
        + (f" ({request.message})" if request.message else ""),
        markup=False,
    )


def _plan_table(result: bf.Plan, rule: str, dry_run: bool, as_json: bool) -> None:
    rows: list[dict[str, Any]] = [
        {
            "partition": i.partition,
            "action": i.action,
            "reason": i.reason,
            "run_id": i.run_id,
            "generation": i.generation or None,
            "status": i.status,
        }
        for i in result.items
    ]
    failed = sum(i.status == "failed" for i in result.items)
    if as_json:
        print_json(
            {"rule": rule, "dry_run": dry_run, "partitions": rows, "why_empty": result.why_empty}
        )
        return
    from rich.table import Table

    title = f"Backfill of {rule}" + (" (dry run)" if dry_run else "")
    table = Table("partition", "action", "reason", "run", "status", title=title)
    for i in result.items:
        cells = (i.action, i.reason, i.run_id or "-", i.status or "-")
        render.add_row(table, format_partition(i.partition), *cells)
    out.print(table)
    if result.why_empty:
        out.print(f"no partition: {result.why_empty}", markup=False)
        return
    counts = {a: len(result.of(a)) for a in ("run", "resume", "skip", "incomplete")}
    out.print(
        f"{counts['run']} to run, {counts['resume']} resumed, {counts['skip']} skipped"
        f" (succeeded before), {counts['incomplete']} incomplete"
        + ("" if dry_run else f"; {failed} failed"),
        markup=False,
    )


@click.command()
@FILE
@click.option("--status", type=click.Choice([*BACKFILL_STATUSES, "active"]), help="Only these.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@JSON_OPT
def backfills(file: Path, status: str | None, limit: int, as_json: bool) -> None:
    """List backfill requests, newest first, with who asked and their progress."""
    pipeline = load(file)
    found = with_store(pipeline, lambda s: views.backfills(s, status=status, limit=limit))
    if as_json:
        print_json({"backfills": [r.to_dict() for r in found]})
        return
    from rich.table import Table

    table = Table(
        "id", "rule", "range", "status", "progress", "rate", "requested", title="Backfills"
    )
    for r in found:
        render.add_row(
            table,
            r.id,
            r.rule,
            f"{r.lo} .. {r.hi}",
            r.status + (" (cancel asked)" if r.cancel_requested and r.active else ""),
            views.progress_text(r) + (f"; {r.message}" if r.message else ""),
            f"{r.rate:g}/s" if r.rate else "default",
            f"{r.requested_by} {r.requested_at.isoformat(timespec='seconds')}",
        )
    out.print(table)


@click.command("cancel-backfill")
@FILE
@click.argument("backfill_id")
def cancel_backfill(file: Path, backfill_id: str) -> None:
    """Stop a pending or running backfill: nothing more fires (what fired stays)."""
    pipeline = load(file)
    by = f"cli:{user()}"
    request = with_store(pipeline, lambda s: views.cancel(s, backfill_id, by, utcnow()))
    out.print(
        f"backfill {request.id} ({views.progress_text(request)}) will be cancelled by the"
        " running pipeline",
        markup=False,
    )
