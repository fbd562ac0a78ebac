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
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from eventflow import __version__
from eventflow.config.loader import load_pipeline
from eventflow.durations import format_duration
from eventflow.errors import ConfigError, EventflowError
from eventflow.events import format_partition, partition_key, utcnow
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
    """eventflow runs a job when its inputs have actually arrived."""


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
        runtime = Runtime(pipeline)
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
            }
        )
    partial = []
    for m in data["matches"]:
        if m.status not in ("open", "expired") or m.rule not in pipeline.rules:
            continue
        spec = pipeline.rules[m.rule].spec
        partial.append(
            {
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
    table = Table("rule", "when", "open", "fired", "expired", title="Rules", title_justify="left")
    for r in rules:
        w = r["when"]
        by = f" by {', '.join(w['by'])}" if w["by"] else ""
        _add_row(
            table,
            r["rule"],
            f"{w['mode']} of {', '.join(w['datasets'])}{by}",
            str(r["open"]),
            str(r["fired"]),
            str(r["expired"]),
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
            title="Partial matches",
            title_justify="left",
        )
        for p in partial:
            _add_row(
                table,
                p["rule"],
                format_partition(p["partition"]),
                p["status"],
                ", ".join(p["arrived"]) or "-",
                ", ".join(p["missing"]) or "-",
                p["expires_at"] or "-",
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
        "status": match.status if match else "nothing arrived",
        "generation": match.generation if match else 0,
        "opened_at": match.opened_at.isoformat() if match and match.opened_at else None,
        "expires_at": match.expires_at.isoformat() if match and match.expires_at else None,
        "inputs": datasets,
        "missing": [d["dataset"] for d in datasets if not d["arrived"]],
        "runs": [_run_row(r) for r in sorted(runs, key=lambda r: r.generation)],
    }
    if as_json:
        _print_json(report)
        return
    cond = f"{spec.mode} of [{', '.join(spec.datasets)}] by ({', '.join(spec.by)})"
    if spec.within:
        cond += f" within {format_duration(spec.within)}"
    out.print(f"rule [bold]{escape(rule)}[/]: {escape(cond)}")
    out.print(
        f"partition {format_partition(report['partition'])}: {report['status']}"
        + (f", generation {report['generation']}" if match else "")
        + (f", expires at {report['expires_at']}" if report["expires_at"] else "")
    )
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
