"""What every command shares: the consoles, the FILE argument, ``--json``, loading the
pipeline, opening its store, and the exits for bad input (2) and runtime errors (1)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from eventflow.config.loader import load_pipeline
from eventflow.errors import ConfigError, EventflowError
from eventflow.pipeline import CompiledPipeline
from eventflow.store import open_store
from eventflow.types import Store

T = TypeVar("T")
# Piped output (scripts, CI logs) gets wide tables instead of rich's 80-column default.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

FILE = click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
JSON_OPT = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


ENV_OPT = click.option(
    "--env",
    "env",
    metavar="NAME",
    envvar="EVENTFLOW_ENV",
    help="The environment of the file (`environments:`); default: `default`.",
)


def load(file: Path, env: str | None = None) -> CompiledPipeline:
    """The pipeline of ``file`` (in environment ``env``); every problem on stderr and exit 2
    when it has any."""
    try:
        return load_pipeline(file, env=env)
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False)
        err.print(f"{len(exc.problems)} problem(s) in {file}", markup=False)
        raise SystemExit(2) from None
    except OSError as exc:
        err.print(f"cannot read {file}: {exc.strerror}", markup=False)
        raise SystemExit(2) from None


def with_store(pipeline: CompiledPipeline, action: Callable[[Store], Awaitable[T]]) -> T:
    """Open the pipeline's store, run ``action`` on it, close it; exit 1 on an error."""

    async def main() -> T:
        async with open_store(pipeline.state_dsn, pipeline.base_dir) as store:
            return await action(store)

    try:
        return asyncio.run(main())
    except EventflowError as exc:
        err.print(f"error: {exc}", markup=False)
        raise SystemExit(1) from None


def no_rule(pipeline: CompiledPipeline, rule: str) -> None:
    """Exit 2 when the pipeline has no rule ``rule``, naming those it has."""
    if rule not in pipeline.rules:
        err.print(f"no rule {rule!r}; rules: {', '.join(pipeline.rules)}", markup=False)
        raise SystemExit(2)


def parse_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="KEY=VALUE")
        values[name] = value
    return values


def exact_partition(pairs: tuple[str, ...], names: Sequence[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` arguments naming exactly ``names``, in that order; exit 2 otherwise."""
    values = parse_pairs(pairs)
    if set(values) != set(names):
        example = " ".join(f"{v}=..." for v in names)
        err.print(
            f"{what} ({', '.join(names)}): give each as KEY=VALUE, e.g. {example}", markup=False
        )
        raise SystemExit(2)
    return {n: values[n] for n in names}


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))
