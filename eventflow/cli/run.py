"""``eventflow validate`` and ``eventflow run`` (with ``--http``, the server)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from eventflow.cli.common import ENV_OPT, FILE, JSON_OPT, err, load, out, print_json
from eventflow.config.loader import load_pipeline
from eventflow.errors import EventflowError
from eventflow.extras import MissingExtraError
from eventflow.extras import require as require_extra
from eventflow.log import configure, get_logger
from eventflow.pipeline import CompiledPipeline

if TYPE_CHECKING:
    from eventflow.server.credentials import Credentials


@click.command()
@FILE
@JSON_OPT
@ENV_OPT
def validate(file: Path, as_json: bool, env: str | None) -> None:
    """Check a pipeline file, in every environment it declares (or only --env); print
    every problem with its line and a fix."""
    from eventflow.config.loader import check_file

    try:
        problems = check_file(file, env=env)
        if env is None and not problems:
            for name in declared_environments(file):
                problems += [p for p in check_file(file, env=name) if p not in problems]
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
        pipeline = load_pipeline(file, env=env)
        envs = [env] if env else [pipeline.environment, *declared_environments(file)]
        out.print(
            f"{file}: ok ({len(pipeline.sensors)} sensors, {len(pipeline.datasets)}"
            f" datasets, {len(pipeline.rules)} rules, {len(pipeline.publishers)}"
            f" publishers; environments: {', '.join(dict.fromkeys(envs))})",
            markup=False,
        )


def declared_environments(file: Path) -> list[str]:
    """The environments the file declares (none when it cannot be read as a mapping)."""
    import yaml

    from eventflow.environments import names

    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, yaml.YAMLError):
        return []  # check_file has said what is wrong with it
    return names(raw) if isinstance(raw, dict) else []


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
@click.option(
    "--insecure",
    is_flag=True,
    help="Serve --http on an address beyond loopback without a credential (`server.auth`):"
    " anyone who reaches it reads and acts.",
)
@ENV_OPT
@click.option(
    "--accept",
    "accept",
    multiple=True,
    metavar="ID",
    help="Apply this line of `eventflow plan` though it drops or re-keys live state"
    " (repeatable); recorded with the start.",
)
def run(
    file: Path,
    log_level: str,
    log_format: str,
    http: str | None,
    insecure: bool,
    env: str | None,
    accept: tuple[str, ...],
) -> None:
    """Run the pipeline until SIGTERM or Ctrl-C (which drain gracefully). A change that
    would drop or re-key live state is refused unless accepted (see `eventflow plan`)."""
    configure(log_level, log_format)  # type: ignore[arg-type]
    pipeline = load(file, env)
    from eventflow.runtime import Runtime

    address, credentials = None, None
    if http is not None:
        try:
            require_extra("http", "eventflow run --http")
        except MissingExtraError as exc:
            click.echo(f"error: {exc}", err=True)  # one line: what is missing and the fix
            raise SystemExit(2) from None
        from eventflow.server.app import parse_address

        try:
            address = parse_address(http)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--http") from None
        credentials = http_credentials(pipeline, address[0], insecure)

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

        # SIGHUP drains like SIGTERM (no reload in place: restart to load a changed file,
        # which `eventflow validate` checks first; see docs/howto/operating.md).
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, on_signal, sig)
        runtime = Runtime(pipeline, own_process=True, accept=accept)
        if address is None:
            await runtime.run(stop)
            return
        from eventflow.server.app import HttpServer

        async with HttpServer(runtime, *address, credentials):
            await runtime.run(stop)

    try:
        asyncio.run(main())
    except EventflowError as exc:
        get_logger().error("pipeline_failed", error=str(exc))
        if refused(exc):
            err.print(f"error: {exc}", markup=False)
        raise SystemExit(1) from None


def refused(exc: EventflowError) -> bool:
    """A start refused for its plan or environment: worth a readable line besides the log."""
    from eventflow.environments import WrongEnvironment
    from eventflow.migrate import PlanRefused

    return isinstance(exc, PlanRefused | WrongEnvironment)


def http_credentials(pipeline: CompiledPipeline, host: str, insecure: bool) -> Credentials:
    """The credentials of ``server.auth``; exit 2 with one line when a token file cannot be
    read, or when ``host`` is reachable beyond this machine and none is configured (unless
    ``insecure``): a server open to the network by accident reads and acts for anyone."""
    from eventflow.server.credentials import is_loopback, load_credentials

    auth = pipeline.raw.server.auth
    try:
        credentials = load_credentials(auth, pipeline.base_dir)
    except EventflowError as exc:
        err.print(f"error: {exc}", markup=False)
        raise SystemExit(2) from None
    if not credentials.configured and not insecure and not is_loopback(host):
        err.print(
            f"error: --http {host} is reachable beyond this machine and no credential is"
            f" configured: set {auth.operate_token_env} (and {auth.read_token_env}) or"
            " `server.auth` in the pipeline file, or pass --insecure to serve it open",
            markup=False,
        )
        raise SystemExit(2)
    return credentials
