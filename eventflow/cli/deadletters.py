"""``eventflow deadletters FILE [show ID | redrive ... | discard ...]``: the observations
that could not be processed, one in full, and what an operator does about them.

A redrive is recorded in the state store (audited: who, when) and carried out by the
running pipeline within its poll interval (:mod:`eventflow.redrive`): the production process
is never stopped for it. A discard takes effect at once and is kept for the audit.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import click
from rich.table import Table

from eventflow.cli import render
from eventflow.cli.common import FILE, JSON_OPT, err, load, out, print_json, with_store
from eventflow.cli.paged import _time as parse_time
from eventflow.cli.paged import paging_options, print_pages
from eventflow.cli.render import add_row
from eventflow.events import utcnow
from eventflow.types import Store
from eventflow.views import deadletters as views

T = TypeVar("T")

STATUS = click.option(
    "--status",
    type=click.Choice(views.STATUS_CHOICES),
    default="open",
    show_default=True,
    help="Only dead letters with this status (all: any).",
)


class _ListOrAct(click.Group):
    """``deadletters FILE [OPTIONS]`` lists (options after FILE, as every command takes
    them); ``deadletters FILE show|redrive|discard ...`` acts."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not any(a in self.commands for a in args[1:2]):
            ctx.allow_interspersed_args = True
        return super().parse_args(ctx, args)


@click.group(cls=_ListOrAct, invoke_without_command=True)
@FILE
@click.option("--sensor", help="Only dead letters of this sensor.")
@STATUS
@paging_options("dead letters", "Observed")
@JSON_OPT
@click.pass_context
def deadletters(
    ctx: click.Context,
    file: Path,
    sensor: str | None,
    status: str,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    all_: bool,
    as_json: bool,
) -> None:
    """List dead letters, newest first: observations that could not be processed, with
    their source position, the error and the start of the message.

    `show ID` prints one in full (its kept message and history); `redrive` evaluates kept
    messages again with the pipeline as it is now (after you fixed it) and feeds what they
    announce to the rules, once; `discard` sets them aside (kept for the audit)."""
    ctx.obj = file
    if ctx.invoked_subcommand is not None:
        return
    pipeline = load(file)
    query = functools.partial(
        views.deadletter_page, sensor=sensor, since=since, until=until, status=status
    )
    print_pages(
        pipeline,
        query,
        limit=limit,
        all_=all_,
        as_json=as_json,
        render=lambda letters: render.deadletters(letters, pipeline),
    )


@deadletters.command()
@click.argument("event_id")
@JSON_OPT
@click.pass_obj
def show(file: Path, event_id: str, as_json: bool) -> None:
    """One dead letter in full: position, error, sensor, time, kept message, history."""
    pipeline = load(file)
    found = with_store(pipeline, lambda s: views.deadletter_detail(s, event_id))
    if found is None:
        err.print(f"no dead letter {event_id!r}", markup=False)
        raise SystemExit(1)
    detail = found.to_detail()
    if as_json:
        print_json(detail)
        return
    for name in ("event_id", "sensor", "status", "time", "error"):
        out.print(f"{name}: {detail[name]}", markup=False)
    out.print(f"position: {json.dumps(detail['position'])}", markup=False)
    asked = detail["redrive_requested"]
    if asked:
        out.print(f"redrive requested by {asked['by']} at {asked['at']}", markup=False)
    if detail["message"] is None:
        out.print(f"excerpt (the whole message was not kept): {detail['excerpt']}", markup=False)
    else:
        out.print("message:", markup=False)
        out.print(json.dumps(detail["message"], indent=2, ensure_ascii=False), markup=False)
    out.print("history:" if detail["history"] else "history: none", markup=False)
    for h in detail["history"]:
        error = f": {h['error']}" if h.get("error") else ""
        out.print(f"  {h.get('at')} {h.get('action')} by {h.get('by')}{error}", markup=False)


def _selectors(verb: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """``ID...``, ``--sensor``, ``--since``/``--until``, ``--all`` and ``--dry-run``."""
    parts: list[Callable[[Callable[..., T]], Callable[..., T]]] = [
        click.argument("event_ids", nargs=-1, metavar="[ID]..."),
        click.option("--sensor", help=f"{verb} the open dead letters of this sensor."),
        click.option(
            "--since",
            callback=parse_time,
            help="Observed at or after: ISO 8601 or a duration before now (2h).",
        ),
        click.option("--until", callback=parse_time, help="Observed before: ISO 8601 or 2h."),
        click.option("--all", "all_", is_flag=True, help=f"{verb} every open one."),
        click.option("--dry-run", is_flag=True, help="Say what would happen; change nothing."),
        JSON_OPT,
        click.pass_obj,
    ]

    def decorate(command: Callable[..., T]) -> Callable[..., T]:
        for option in reversed(parts):
            command = option(command)
        return command

    return decorate


@deadletters.command()
@_selectors("Redrive")
def redrive(
    file: Path,
    event_ids: tuple[str, ...],
    sensor: str | None,
    since: datetime | None,
    until: datetime | None,
    all_: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Evaluate dead letters' kept messages again with the pipeline as it is now: the
    running pipeline admits what they announce (exactly once, with the dead letter's event
    id) and marks them redriven; one that still fails stays open with the new error."""
    _act(file, "redrive", event_ids, sensor, since, until, all_, dry_run, as_json)


@deadletters.command()
@_selectors("Discard")
def discard(
    file: Path,
    event_ids: tuple[str, ...],
    sensor: str | None,
    since: datetime | None,
    until: datetime | None,
    all_: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Set dead letters aside: kept for the audit, hidden from the default list."""
    _act(file, "discard", event_ids, sensor, since, until, all_, dry_run, as_json)


def _act(
    file: Path,
    action: views.Action,
    event_ids: tuple[str, ...],
    sensor: str | None,
    since: datetime | None,
    until: datetime | None,
    all_: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    from eventflow.cli.act import operator

    if event_ids and (sensor or since or until or all_):
        raise click.UsageError("give event ids, or --sensor/--since/--until/--all, not both")
    pipeline = load(file)
    by = operator()

    async def run(store: Store) -> list[views.ActionResult]:
        chosen = await views.select(
            store, ids=event_ids, sensor=sensor, since=since, until=until, all_=all_
        )
        return await views.act(pipeline, store, chosen, action, by, utcnow(), dry_run=dry_run)

    results = with_store(pipeline, run)
    if as_json:
        print_json([r.to_dict() for r in results])
    elif not results:
        out.print("no open dead letters selected", markup=False)
    else:
        title = f"{action} (dry run)" if dry_run else action
        table = Table("event id", "done" if not dry_run else "would", "detail", title=title)
        for r in results:
            add_row(table, r.event_id, "yes" if r.done else "-" if dry_run else "no", r.detail)
        out.print(table)
    if not dry_run and any(not r.done for r in results):
        raise SystemExit(1)
