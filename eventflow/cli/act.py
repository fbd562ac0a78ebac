"""The commands that change state: ``emit``, ``retry``, ``cancel``, ``replay`` (``backfill``
is :mod:`eventflow.cli.backfills`)."""

from __future__ import annotations

import getpass
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import click

from eventflow.actions import EmitError, emit_item
from eventflow.cli import render
from eventflow.cli.common import (
    FILE,
    JSON_OPT,
    err,
    exact_partition,
    load,
    out,
    print_json,
    with_store,
)
from eventflow.events import format_partition, utcnow
from eventflow.log import configure


@click.command()
@FILE
@click.argument("dataset")
@click.argument("partition", nargs=-1, metavar="KEY=VALUE...")
@click.option("--id", "emit_id", help="Idempotency id: emitting the same id twice counts once.")
@click.option("--payload", help="JSON payload carried with the event.")
def emit(
    file: Path, dataset: str, partition: tuple[str, ...], emit_id: str | None, payload: str | None
) -> None:
    """Announce DATASET's partition by hand (as if its sensor had seen it)."""
    pipeline = load(file)
    ds = pipeline.datasets.get(dataset)
    if ds is None:
        err.print(f"no dataset {dataset!r}; datasets: {', '.join(pipeline.datasets)}", markup=False)
        raise SystemExit(2)
    values = exact_partition(partition, ds.variables, f"dataset {dataset} is partitioned by")
    try:
        data = json.loads(payload) if payload else None
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None
    try:
        item = emit_item(pipeline, dataset, values, emit_id or uuid.uuid4().hex, data)
    except EmitError as exc:  # a value that cannot be stored (NUL, lone surrogate, too long)
        err.print(f"cannot emit: {exc}", markup=False)
        raise SystemExit(2) from None
    with_store(pipeline, lambda s: s.add_inbox(item))
    out.print(
        f"emitted {dataset} {format_partition(values)} (id {item.position['emit_id']})",
        markup=False,
    )


@click.command()
@FILE
@click.argument("run_id")
def retry(file: Path, run_id: str) -> None:
    """Run a failed or cancelled run again (same run id, next attempt)."""
    pipeline = load(file)
    record = with_store(pipeline, lambda s: s.retry_run(run_id, utcnow()))
    out.print(
        f"run {record.run_id} is pending again (attempt {record.attempt + 1}"
        f" of {record.max_attempts})",
        markup=False,
    )


@click.command()
@FILE
@click.argument("run_id")
def cancel(file: Path, run_id: str) -> None:
    """Cancel a pending or running run.

    The request is recorded in the state store; the running pipeline acts on it within its
    poll interval: a pending run is not started, a running one is stopped (a command's whole
    process group, a hand-off's downstream run) and ends `cancelled`, with an
    `eventflow.run.cancelled` event. `eventflow retry` runs it again."""
    pipeline = load(file)
    by = f"cli:{user()}"
    record = with_store(pipeline, lambda s: s.request_cancel(run_id, by, utcnow()))
    out.print(
        f"run {record.run_id} ({record.status}) will be cancelled by the running pipeline",
        markup=False,
    )


def operator() -> str:
    """``cli:USER``: who an audited action from the CLI is by."""
    return f"cli:{user()}"


def user() -> str:
    """Who runs the CLI, for the audit of what they changed."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _since(text: str) -> datetime:
    """``--since``: an ISO-8601 time or date (UTC unless it says otherwise), or a duration
    ago (``2h``, ``7d``)."""
    from eventflow.durations import parse_duration

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            return utcnow() - parse_duration(text)
        except ValueError:
            raise click.BadParameter(
                f"{text!r} is neither an ISO-8601 time (2024-05-01T06:00Z) nor a duration ago"
                " (2h, 7d)",
                param_hint="--since",
            ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@click.command()
@FILE
@click.option("--since", "since_text", required=True, metavar="TIME", help="ISO time or 2h/7d ago.")
@click.option("--sensor", "sensors", multiple=True, help="Only events of this sensor (repeat).")
@click.option("--force", is_flag=True, help="Fire partitions that already fired once more.")
@click.option("--dry-run", is_flag=True, help="Show what would fire; change nothing.")
@click.option(
    "--from-source",
    is_flag=True,
    help="Re-read the --sensor sources from that time (sensors that support it, e.g. Kafka)"
    " instead of the event log.",
)
@JSON_OPT
def replay(
    file: Path,
    since_text: str,
    sensors: tuple[str, ...],
    force: bool,
    dry_run: bool,
    from_source: bool,
    as_json: bool,
) -> None:
    """Feed stored events received since TIME through the rules again.

    Useful after a rule change: what would have fired, and fire it. Run ids are fire keys, so
    partitions that already fired do not fire again unless --force. Fired runs are executed by
    `eventflow run` (stop it first: a replay writes rule state).
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from eventflow import replay as replaying

    configure("warning")
    pipeline = load(file)
    when = _since(since_text)
    if from_source and not sensors:
        raise click.UsageError("--from-source needs --sensor: which sources to re-read")
    with Progress(
        SpinnerColumn(), TextColumn("{task.description} {task.completed} events"), console=err
    ) as bar:
        task = bar.add_task("replaying", total=None)
        report = with_store(
            pipeline,
            lambda s: replaying.replay(
                pipeline,
                s,
                since=when,
                sensors=sensors or None,
                force=force,
                dry_run=dry_run,
                from_source=from_source,
                progress=lambda n: bar.advance(task, n),
            ),
        )
    if as_json:
        print_json(
            {
                "since": when.isoformat(),
                "dry_run": dry_run,
                "events": report.events,
                "arrivals": report.stats.arrivals,
                "fired": [
                    {
                        "rule": r.rule,
                        "partition": dict(r.partition),
                        "generation": r.generation,
                        "run_id": r.run_id,
                    }
                    for r in report.fired
                ],
            }
        )
        return
    verb = "would fire" if dry_run else "fired"
    out.print(
        f"replayed {report.events} events since {when.isoformat()}:"
        f" {report.stats.arrivals} dataset arrivals, {len(report.fired)} runs {verb}",
        markup=False,
    )
    if report.fired:
        render.fired(report.fired, "Would fire" if dry_run else "Fired")
        if not dry_run:
            out.print("`eventflow run` executes them.", markup=False)
