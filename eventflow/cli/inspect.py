"""The commands that read: ``status``, ``why``, ``matches``, ``runs``, ``events``,
``graph``.

Each parses its options, asks :mod:`eventflow.views` for the view and prints it: ``--json``
as the view's ``to_dict()``, otherwise through :mod:`eventflow.cli.render`.
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path

import click

from eventflow.cli import render
from eventflow.cli.common import (
    FILE,
    JSON_OPT,
    err,
    exact_partition,
    load,
    no_rule,
    parse_pairs,
    print_json,
    with_store,
)
from eventflow.cli.paged import paging_options, print_pages
from eventflow.pipeline import CompiledPipeline
from eventflow.records import RUN_STATUSES, RunStatus
from eventflow.types import Store
from eventflow.views import NotFound
from eventflow.views import events as event_views
from eventflow.views import matches as match_views
from eventflow.views import runs as run_views
from eventflow.views import status as status_views
from eventflow.views import why as why_views
from eventflow.views.matches import MATCH_STATUSES


@click.command()
@FILE
@click.option(
    "--limit",
    default=50,
    show_default=True,
    help="Most open, most missed and most expired partial matches to list (each).",
)
@JSON_OPT
def status(file: Path, limit: int, as_json: bool) -> None:
    """Rules, open partial matches with what is missing, missed and expired matches, run
    counts."""
    pipeline = load(file)
    view = with_store(pipeline, lambda s: status_views.status(pipeline, s, limit=limit))
    if as_json:
        print_json(view.to_dict())
    else:
        render.status(view)


@click.command()
@FILE
@click.argument("rule")
@click.argument("partition", nargs=-1, metavar="KEY=VALUE...")
@JSON_OPT
def why(file: Path, rule: str, partition: tuple[str, ...], as_json: bool) -> None:
    """Say which inputs of RULE arrived for a partition (with source positions) and which
    are missing, and what ran."""
    pipeline = load(file)
    no_rule(pipeline, rule)
    spec = pipeline.rules[rule].spec
    values = exact_partition(partition, spec.by, f"rule {rule} joins on")
    view = with_store(pipeline, lambda s: why_views.why(pipeline, s, rule, values))
    if as_json:
        print_json(view.to_dict())
    else:
        render.why(view)


@click.command()
@FILE
@click.option("--dataset", help="Only events announcing this dataset.")
@click.option("--sensor", help="Only events of this sensor.")
@click.option(
    "--partition",
    "partition",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only events announcing a partition with this value (repeat for more variables).",
)
@paging_options("events", "Received")
@JSON_OPT
def events(
    file: Path,
    dataset: str | None,
    sensor: str | None,
    partition: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    limit: int,
    all_: bool,
    as_json: bool,
) -> None:
    """List the event log, newest first: what the sensors announced (and what was emitted
    or produced), with its source position and the partitions it announced."""
    pipeline = load(file)
    query = functools.partial(
        event_views.event_page,
        dataset=dataset,
        sensor=sensor,
        partition=parse_pairs(partition),
        since=since,
        until=until,
    )
    print_pages(
        pipeline,
        query,
        limit=limit,
        all_=all_,
        as_json=as_json,
        render=lambda found: render.events(found, pipeline),
    )


@click.command()
@FILE
@click.argument("run_id", required=False)
@click.option("--rule", help="Only runs of this rule.")
@click.option("--status", "status_", type=click.Choice(RUN_STATUSES))
@click.option(
    "--partition",
    "partition",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only runs of this partition (repeat for each variable of the rule's `by`).",
)
@paging_options("runs", "Created")
@click.option("--attempt", type=int, help="With RUN_ID: whose logs to show (default: last).")
@JSON_OPT
def runs(
    file: Path,
    run_id: str | None,
    rule: str | None,
    status_: RunStatus | None,
    partition: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    limit: int,
    all_: bool,
    attempt: int | None,
    as_json: bool,
) -> None:
    """List runs, newest first; with RUN_ID, show one run with its captured output."""
    pipeline = load(file)
    if run_id:
        _run_detail(pipeline, run_id, attempt, as_json)
        return
    query = functools.partial(
        run_views.run_page,
        rule=rule,
        status=status_,
        partition=parse_pairs(partition),
        since=since,
        until=until,
    )
    print_pages(pipeline, query, limit=limit, all_=all_, as_json=as_json, render=render.runs)


def _run_detail(
    pipeline: CompiledPipeline, run_id: str, attempt: int | None, as_json: bool
) -> None:
    async def one(store: Store) -> run_views.RunDetail | None:
        try:
            return await run_views.run_detail(pipeline, store, run_id, attempt)
        except NotFound:
            return None

    detail = with_store(pipeline, one)
    if detail is None:
        err.print(f"no run {run_id!r}", markup=False)
        raise SystemExit(1)
    if as_json:
        print_json(detail.to_dict())
    else:
        render.run_detail(detail)


@click.command()
@FILE
@click.option("--rule", help="Only partial matches of this rule.")
@click.option("--status", "status_", type=click.Choice(MATCH_STATUSES))
@click.option(
    "--partition",
    "partition",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only this partition (repeat for each variable of the rule's `by`).",
)
@paging_options("partial matches", "Last changed")
@JSON_OPT
def matches(
    file: Path,
    rule: str | None,
    status_: str | None,
    partition: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    limit: int,
    all_: bool,
    as_json: bool,
) -> None:
    """List open, missed and expired partial matches by rule and partition: what arrived,
    what is missing, when they expire."""
    pipeline = load(file)
    if rule is not None:
        no_rule(pipeline, rule)
    query = functools.partial(
        match_views.match_page,
        pipeline,
        rule=rule,
        status=status_,
        partition=parse_pairs(partition),
        since=since,
        until=until,
    )
    print_pages(pipeline, query, limit=limit, all_=all_, as_json=as_json, render=render.matches)


@click.command()
@FILE
@click.option(
    "--format", "fmt", default="mermaid", show_default=True, type=click.Choice(["mermaid", "dot"])
)
@click.option("--state", is_flag=True, help="Show each rule's last run and open partial matches.")
def graph(file: Path, fmt: str, state: bool) -> None:
    """Print the lineage graph: sensors -> datasets -> rules -> produced datasets."""
    from eventflow import graph as lineage

    pipeline = load(file)
    states = with_store(pipeline, lambda s: lineage.rule_states(pipeline, s)) if state else None
    click.echo(lineage.build(pipeline, states).render(fmt), nl=False)  # type: ignore[arg-type]
