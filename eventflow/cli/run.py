"""``eventflow validate`` and ``eventflow run`` (with ``--http``, the server)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from eventflow.cli.common import FILE, JSON_OPT, err, load, out, print_json
from eventflow.config.loader import load_pipeline
from eventflow.errors import EventflowError
from eventflow.extras import MissingExtraError
from eventflow.extras import require as require_extra
from eventflow.log import configure, get_logger


@click.command()
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
        print_json(
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


@click.command()
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
    pipeline = load(file)
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
