"""The ``eventflow`` command: validate, run, status, why, runs, emit, retry.

Human output by default (rich tables), ``--json`` for scripts. Every command takes the
pipeline file first; the state store is the one the file names.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from eventflow import __version__
from eventflow.cli_rules import (
    describe_counts,
    describe_options,
    describe_timing,
    match_timing,
    rule_options,
    with_counts,
)
from eventflow.config.loader import load_pipeline
from eventflow.durations import format_duration
from eventflow.errors import ConfigError, EventflowError
from eventflow.events import emit_problem, format_partition, partition_key, utcnow
from eventflow.extras import MissingExtraError
from eventflow.extras import require as require_extra
from eventflow.log import configure, get_logger
from eventflow.pipeline import EMIT_SENSOR, Pipeline
from eventflow.store import open_store, redact_dsn
from eventflow.types import InboxItem, RunRecord, Store

T = TypeVar("T")
# Piped output (scripts, CI logs) gets wide tables instead of rich's 80-column default.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

FILE = click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
JSON_OPT = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _load(file: Path) -> Pipeline:
    try:
        return load_pipeline(file)
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False)
        err.print(f"{len(exc.problems)} problem(s) in {file}", markup=False)
        raise SystemExit(2) from None
    except OSError as exc:
        err.print(f"cannot read {file}: {exc.strerror}", markup=False)
        raise SystemExit(2) from None


def _with_store(pipeline: Pipeline, action: Callable[[Store], Awaitable[T]]) -> T:
    async def main() -> T:
        async with open_store(pipeline.state_dsn, pipeline.base_dir) as store:
            return await action(store)

    try:
        return asyncio.run(main())
    except EventflowError as exc:
        err.print(f"error: {exc}", markup=False)
        raise SystemExit(1) from None


def _parse_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="KEY=VALUE")
        values[name] = value
    return values


def _exact_partition(pairs: tuple[str, ...], names: Sequence[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` arguments naming exactly ``names``, in that order; exit 2 otherwise."""
    values = _parse_pairs(pairs)
    if set(values) != set(names):
        example = " ".join(f"{v}=..." for v in names)
        err.print(
            f"{what} ({', '.join(names)}): give each as KEY=VALUE, e.g. {example}", markup=False
        )
        raise SystemExit(2)
    return {n: values[n] for n in names}


def _add_row(table: Table, *cells: str) -> None:
    """Add a row of plain text: values such as ``dt=[x]`` are not rich markup."""
    table.add_row(*(Text(cell) for cell in cells))


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eventflow")
def main() -> None:
    """eventflow runs a job when its inputs have actually arrived.

    Every command takes the pipeline FILE first, or MODULE:ATTRIBUTE for a pipeline
    declared in Python (eventflow.Pipeline).
    """


@main.command()
@FILE
@JSON_OPT
def validate(file: Path, as_json: bool) -> None:
    """Check a pipeline file; print every problem with its line and a fix."""
    from eventflow.config.loader import check_file

    try:
        problems = check_file(file)
    except OSError as exc:
        err.print(f"cannot read {file}: {exc.strerror}", markup=False)
        raise SystemExit(2) from None
    if as_json:
        _print_json(
            [
                {
                    "file": p.file,
                    "line": p.line,
                    "path": list(p.path),
                    "message": p.message,
                    "hint": p.hint,
                }
                for p in problems
            ]
        )
    else:
        for problem in problems:
            err.print(str(problem), markup=False)
    if problems:
        if not as_json:
            err.print(f"{len(problems)} problem(s) in {file}", markup=False)
        raise SystemExit(2)
    if not as_json:
        pipeline = load_pipeline(file)
        out.print(
            f"{file}: ok ({len(pipeline.sensors)} sensors, {len(pipeline.datasets)}"
            f" datasets, {len(pipeline.rules)} rules, {len(pipeline.publishers)}"
            " publishers)",
            markup=False,
        )


@main.command()
@FILE
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--log-format",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "json", "console"]),
    help="auto: readable on a terminal, JSON lines otherwise.",
)
@click.option(
    "--http",
    "http",
    metavar="[HOST:]PORT",
    help="Serve the status page, /metrics, /healthz, /readyz, the JSON API and webhooks"
    " (host 127.0.0.1 when only a port is given). Off by default.",
)
def run(file: Path, log_level: str, log_format: str, http: str | None) -> None:
    """Run the pipeline until SIGTERM or Ctrl-C (which drain gracefully)."""
    configure(log_level, log_format)  # type: ignore[arg-type]
    pipeline = _load(file)
    from eventflow.runtime import Runtime

    address = None
    if http is not None:
        try:
            require_extra("http", "eventflow run --http")
        except MissingExtraError as exc:
            raise click.UsageError(str(exc)) from None
        from eventflow.server.app import parse_address

        try:
            address = parse_address(http)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--http") from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal(signum: int) -> None:
            nonlocal signals
            signals += 1
            get_logger().info(
                "signal_received",
                signal=signal.Signals(signum).name,
                action="drain" if signals == 1 else "exit now",
            )
            if signals == 1:
                stop.set()
            else:
                raise SystemExit(130)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        runtime = Runtime(pipeline, own_process=True)
        if address is None:
            await runtime.run(stop)
            return
        from eventflow.server.app import HttpServer

        async with HttpServer(runtime, *address):
            await runtime.run(stop)

    try:
        asyncio.run(main())
    except EventflowError as exc:
        get_logger().error("pipeline_failed", error=str(exc))
        raise SystemExit(1) from None


@main.command()
@FILE
@click.option(
    "--limit",
    default=50,
    show_default=True,
    help="Most open and most expired partial matches to list (each).",
)
@JSON_OPT
def status(file: Path, limit: int, as_json: bool) -> None:
    """Rules, open partial matches with what is missing, expired matches, run counts."""
    pipeline = _load(file)

    async def gather(store: Store) -> dict[str, Any]:
        return {
            "counts": await store.counts(),
            "per_rule": await store.match_counts(),
            # The oldest few of each kind: a pipeline may have a million open matches.
            "matches": [
                *await store.list_matches(status="open", limit=limit),
                *await store.list_matches(status="missed", limit=limit),
                *await store.list_matches(status="expired", limit=limit),
            ],
            "runs": await store.list_runs(limit=20),
        }

    data = _with_store(pipeline, gather)
    rules = []
    for name, rule in pipeline.rules.items():
        per_status = data["per_rule"].get(name, {})
        rules.append(
            {
                "rule": name,
                "when": {
                    "mode": rule.spec.mode,
                    "datasets": list(rule.spec.datasets),
                    "by": list(rule.spec.by),
                },
                "open": per_status.get("open", 0),
                "fired": per_status.get("fired", 0),
                "expired": per_status.get("expired", 0),
                "missed": per_status.get("missed", 0),
                **rule_options(rule.spec),
            }
        )
    partial = []
    for m in data["matches"]:
        if m.status not in ("open", "expired", "missed") or m.rule not in pipeline.rules:
            continue
        spec = pipeline.rules[m.rule].spec
        partial.append(
            match_timing(m)
            | {
                "rule": m.rule,
                "partition": dict(m.partition),
                "status": m.status,
                "generation": m.generation,
                "arrived": sorted(d for d in m.inputs if m.inputs[d]),
                "missing": list(m.missing(spec)),
                "opened_at": m.opened_at.isoformat() if m.opened_at else None,
                "expires_at": m.expires_at.isoformat() if m.expires_at else None,
            }
        )
    report = {
        "pipeline": pipeline.name,
        "state": redact_dsn(pipeline.state_dsn),
        "rules": rules,
        "partial_matches": partial,
        "counts": data["counts"],
        "recent_runs": [_run_row(r) for r in data["runs"]],
    }
    if as_json:
        _print_json(report)
        return
    counts = data["counts"]
    out.print(f"[bold]{escape(pipeline.name)}[/]  state {escape(redact_dsn(pipeline.state_dsn))}")
    table = Table(
        "rule", "when", "open", "fired", "expired", "missed", title="Rules", title_justify="left"
    )
    for r in rules:
        w = r["when"]
        by = f" by {', '.join(w['by'])}" if w["by"] else ""
        _add_row(
            table,
            r["rule"],
            f"{r['condition_text']}{by}{describe_options(r)}",
            str(r["open"]),
            str(r["fired"]),
            str(r["expired"]),
            str(r["missed"]),
        )
    out.print(table)
    if partial:
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
        for p in partial:
            _add_row(
                table,
                p["rule"],
                format_partition(p["partition"]),
                p["status"],
                ", ".join(with_counts(pipeline.rules[p["rule"]].spec, p)) or "-",
                ", ".join(p["missing"]) or "-",
                p["expires_at"] or p["quiet_until"] or "-",
                f"{p['deadline']['at']} ({p['deadline']['state']})" if p["deadline"] else "-",
            )
        out.print(table)
    out.print(
        f"runs: {counts['runs_pending']} pending, {counts['runs_running']} running, "
        f"{counts['runs_succeeded']} succeeded, {counts['runs_failed']} failed · "
        f"events {counts['events']} · outbox {counts['outbox']} · timers {counts['timers']}"
        f" · dead letters {counts['deadletters']}"
    )


@main.command()
@FILE
@click.argument("rule")
@click.argument("partition", nargs=-1, metavar="KEY=VALUE...")
@JSON_OPT
def why(file: Path, rule: str, partition: tuple[str, ...], as_json: bool) -> None:
    """Say which inputs of RULE arrived for a partition (with source positions) and which
    are missing, and what ran."""
    pipeline = _load(file)
    if rule not in pipeline.rules:
        err.print(f"no rule {rule!r}; rules: {', '.join(pipeline.rules)}", markup=False)
        raise SystemExit(2)
    spec = pipeline.rules[rule].spec
    values = _exact_partition(partition, spec.by, f"rule {rule} joins on")
    key = partition_key(values)

    async def gather(store: Store) -> tuple[Any, list[RunRecord]]:
        match = await store.get_match(rule, key)
        return match, await store.list_runs(rule=rule, key=key, limit=10_000)

    match, runs = _with_store(pipeline, gather)
    datasets: list[dict[str, Any]] = []
    for ds in spec.datasets:
        refs = match.inputs.get(ds, ()) if match else ()
        datasets.append(
            {"dataset": ds, "arrived": bool(refs), "events": [r.to_dict() for r in refs]}
        )
    report: dict[str, Any] = {
        "rule": rule,
        "partition": values,
        "condition": {
            "mode": spec.mode,
            "datasets": list(spec.datasets),
            "by": list(spec.by),
            "within": spec.within.total_seconds() if spec.within else None,
        },
        **rule_options(spec),
        **(match_timing(match) if match else {}),
        "status": match.status if match else "nothing arrived",
        "generation": match.generation if match else 0,
        "opened_at": match.opened_at.isoformat() if match and match.opened_at else None,
        "expires_at": match.expires_at.isoformat() if match and match.expires_at else None,
        "inputs": datasets,
        "missing": list(match.missing(spec)) if match else list(spec.datasets),
        "runs": [_run_row(r) for r in sorted(runs, key=lambda r: r.generation)],
    }
    if as_json:
        _print_json(report)
        return
    cond = f"{report['condition_text']} by ({', '.join(spec.by)})"
    if spec.within:
        cond += f" within {format_duration(spec.within)}"
    cond += describe_options(report)
    out.print(f"rule [bold]{escape(rule)}[/]: {escape(cond)}")
    out.print(
        f"partition {format_partition(report['partition'])}: {report['status']}"
        + (f", generation {report['generation']}" if match else "")
        + (f", expires at {report['expires_at']}" if report["expires_at"] else "")
        + describe_timing(report)
    )
    for line in describe_counts(spec, match):
        out.print(f"  {escape(line)}")
    for d in datasets:
        if not d["arrived"]:
            out.print(f"  [red]✗ {escape(d['dataset'])}[/]  missing")
            continue
        for ev in d["events"]:
            pos = " ".join(f"{k}={v}" for k, v in ev["position"].items())
            detail = (
                f"{format_partition(ev['partition'])}  at {ev['time']}  from {ev['sensor']}"
                f" ({pos})  event {ev['event_id']}"
            )
            out.print(
                f"  [green]✓ {escape(d['dataset'])}[/]  {escape(detail)}",
                markup=True,
            )
    for r in report["runs"]:
        out.print(
            f"  run {r['run_id']} generation {r['generation']}: {r['status']}"
            f" (attempt {r['attempt']}/{r['max_attempts']})"
            + (f" {r['error']}" if r["error"] else ""),
            markup=False,
        )


def _run_row(run: RunRecord) -> dict[str, Any]:
    row = run.to_dict()
    row.pop("inputs", None)
    return row


@main.command()
@FILE
@click.argument("run_id", required=False)
@click.option("--rule", help="Only runs of this rule.")
@click.option(
    "--status", "status_", type=click.Choice(["pending", "running", "succeeded", "failed"])
)
@click.option("--limit", default=50, show_default=True)
@click.option("--attempt", type=int, help="With RUN_ID: whose logs to show (default: last).")
@JSON_OPT
def runs(
    file: Path,
    run_id: str | None,
    rule: str | None,
    status_: Any,
    limit: int,
    attempt: int | None,
    as_json: bool,
) -> None:
    """List runs, newest first; with RUN_ID, show one run with its captured output."""
    pipeline = _load(file)
    if run_id:
        record = _with_store(pipeline, lambda s: s.get_run(run_id))
        if record is None:
            err.print(f"no run {run_id!r}", markup=False)
            raise SystemExit(1)
        _show_run(pipeline, record, attempt, as_json)
        return
    records = _with_store(pipeline, lambda s: s.list_runs(rule=rule, status=status_, limit=limit))
    if as_json:
        _print_json([_run_row(r) | {"inputs": [i.to_dict() for i in r.inputs]} for r in records])
        return
    table = Table("run", "rule", "partition", "status", "attempt", "created", "error")
    for r in records:
        _add_row(
            table,
            r.run_id,
            r.rule,
            format_partition(r.partition),
            r.status,
            f"{r.attempt}/{r.max_attempts}",
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            (r.error or "")[:60],
        )
    out.print(table)


def _show_run(pipeline: Pipeline, run: RunRecord, attempt: int | None, as_json: bool) -> None:
    n = attempt or run.attempt
    folder = pipeline.runs_dir / run.run_id
    logs = {}
    for stream in ("stdout", "stderr"):
        path = folder / f"attempt-{n}.{stream}"
        logs[stream] = path.read_text(errors="replace") if path.exists() else ""
    if as_json:
        _print_json(run.to_dict() | {"logs": logs, "logs_attempt": n})
        return
    for k, v in run.to_dict().items():
        if k != "inputs":
            out.print(f"{k:>12}: {v}", markup=False)
    for ref in run.inputs:
        out.print(
            f"       input: {ref.dataset} {format_partition(ref.partition)} event {ref.event_id}",
            markup=False,
        )
    for stream, text in logs.items():
        out.print(f"--- {stream} (attempt {n}) ---", markup=False)
        out.print(text.rstrip("\n") or "(empty)", markup=False)


@main.command()
@FILE
@click.argument("dataset")
@click.argument("partition", nargs=-1, metavar="KEY=VALUE...")
@click.option("--id", "emit_id", help="Idempotency id: emitting the same id twice counts once.")
@click.option("--payload", help="JSON payload carried with the event.")
def emit(
    file: Path, dataset: str, partition: tuple[str, ...], emit_id: str | None, payload: str | None
) -> None:
    """Announce DATASET's partition by hand (as if its sensor had seen it)."""
    pipeline = _load(file)
    ds = pipeline.datasets.get(dataset)
    if ds is None:
        err.print(f"no dataset {dataset!r}; datasets: {', '.join(pipeline.datasets)}", markup=False)
        raise SystemExit(2)
    values = _exact_partition(partition, ds.variables, f"dataset {dataset} is partitioned by")
    try:
        data = json.loads(payload) if payload else None
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None
    problem = emit_problem(values, emit_id or "", data)
    if problem is not None:
        err.print(f"cannot emit {dataset}: {problem}", markup=False)
        raise SystemExit(2)
    item = InboxItem(
        observation_sensor=EMIT_SENSOR,
        dataset=dataset,
        partition=values,
        position={"emit_id": emit_id or uuid.uuid4().hex},
        payload=data,
        created_at=utcnow(),
    )
    _with_store(pipeline, lambda s: s.add_inbox(item))
    out.print(
        f"emitted {dataset} {format_partition(values)} (id {item.position['emit_id']})",
        markup=False,
    )


@main.command()
@FILE
@click.argument("run_id")
def retry(file: Path, run_id: str) -> None:
    """Run a failed run again (same run id, next attempt)."""
    pipeline = _load(file)
    record = _with_store(pipeline, lambda s: s.retry_run(run_id, utcnow()))
    out.print(
        f"run {record.run_id} is pending again (attempt {record.attempt + 1}"
        f" of {record.max_attempts})",
        markup=False,
    )


# --- lineage, backfill and replay ----------------------------------------------------------


@main.command()
@FILE
@click.option(
    "--format", "fmt", default="mermaid", show_default=True, type=click.Choice(["mermaid", "dot"])
)
@click.option("--state", is_flag=True, help="Show each rule's last run and open partial matches.")
def graph(file: Path, fmt: str, state: bool) -> None:
    """Print the lineage graph: sensors -> datasets -> rules -> produced datasets."""
    from eventflow import graph as lineage

    pipeline = _load(file)
    states = _with_store(pipeline, lambda s: lineage.rule_states(pipeline, s)) if state else None
    click.echo(lineage.build(pipeline, states).render(fmt), nl=False)  # type: ignore[arg-type]


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


@main.command()
@FILE
@click.argument("rule")
@click.option("--from", "lo", required=True, metavar="KEY", help="First partition: 2024-05-01.")
@click.option("--to", "hi", required=True, metavar="KEY", help="Last partition (inclusive).")
@click.option("--dry-run", is_flag=True, help="Show what would run; change nothing.")
@click.option("--force", is_flag=True, help="Run partitions that already succeeded again.")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(min=1))
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
    no_list: bool,
    as_json: bool,
) -> None:
    """Run RULE for every partition from --from to --to whose inputs are there.

    Partitions come from what the sensors can list (directories) and from the event log.
    A KEY gives the rule's partition values in order, separated by '/' (2024-05-01/07 or
    dt=2024-05-01/hr=07); a shorter KEY bounds by its first values. Partitions that already
    succeeded are skipped unless --force; stop `eventflow run` first.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from eventflow import backfill as bf

    configure("warning")  # progress and the table are the output; problems go to stderr
    pipeline = _load(file)
    if rule not in pipeline.rules:
        err.print(f"no rule {rule!r}; rules: {', '.join(pipeline.rules)}", markup=False)
        raise SystemExit(2)
    by = pipeline.rules[rule].spec.by
    try:
        bounds = bf.parse_bound(lo, by, "--from"), bf.parse_bound(hi, by, "--to")
    except bf.BackfillError as exc:
        raise click.BadParameter(str(exc)) from None

    def make_plan(store: Store) -> Awaitable[bf.Plan]:
        return bf.plan(pipeline, store, rule, *bounds, force=force, list_sources=not no_list)

    async def work(store: Store) -> bf.Plan:
        the_plan = await make_plan(store)
        todo = len(the_plan.of("run", "resume"))
        if dry_run or not todo:
            return the_plan
        columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeElapsedColumn(), console=err, disable=as_json) as bar:
            task = bar.add_task(f"backfill {rule}", total=todo)
            await bf.backfill(
                pipeline, store, the_plan, concurrency, on_done=lambda _: bar.advance(task)
            )
        return the_plan

    result = _with_store(pipeline, work)
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
        _print_json({"rule": rule, "dry_run": dry_run, "partitions": rows})
    else:
        title = f"Backfill of {rule}" + (" (dry run)" if dry_run else "")
        table = Table("partition", "action", "reason", "run", "status", title=title)
        for i in result.items:
            cells = (i.action, i.reason, i.run_id or "-", i.status or "-")
            _add_row(table, format_partition(i.partition), *cells)
        out.print(table)
        counts = {a: len(result.of(a)) for a in ("run", "resume", "skip", "incomplete")}
        out.print(
            f"{counts['run']} to run, {counts['resume']} resumed, {counts['skip']} skipped"
            f" (succeeded before), {counts['incomplete']} incomplete"
            + ("" if dry_run else f"; {failed} failed"),
            markup=False,
        )
    if failed:
        raise SystemExit(1)


def _fired_table(runs: Sequence[Any], title: str, limit: int = 50) -> None:
    table = Table("rule", "partition", "generation", "run", title=title, title_justify="left")
    for run in runs[:limit]:
        _add_row(table, run.rule, format_partition(run.partition), str(run.generation), run.run_id)
    out.print(table)
    if len(runs) > limit:
        out.print(f"... and {len(runs) - limit} more", markup=False)


@main.command()
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
    pipeline = _load(file)
    when = _since(since_text)
    if from_source and not sensors:
        raise click.UsageError("--from-source needs --sensor: which sources to re-read")
    with Progress(
        SpinnerColumn(), TextColumn("{task.description} {task.completed} events"), console=err
    ) as bar:
        task = bar.add_task("replaying", total=None)
        report = _with_store(
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
        _print_json(
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
        _fired_table(report.fired, "Would fire" if dry_run else "Fired")
        if not dry_run:
            out.print("`eventflow run` executes them.", markup=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
