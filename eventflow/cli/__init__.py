"""The ``eventflow`` command: validate, run, status, why, runs, events, deadletters, graph, emit,
retry, backfill, replay, plan, versions.

Human output by default (rich tables), ``--json`` for scripts. Every command takes the
pipeline file first; the state store is the one the file names. The commands are thin:
they parse options, call a view (:mod:`eventflow.views`) or an action, and render
(:mod:`eventflow.cli.render`). Nothing here imports the HTTP server or a store driver until
a command needs it, which keeps ``eventflow --help`` fast.

- :mod:`eventflow.cli.run`: ``validate``, ``run``;
- :mod:`eventflow.cli.inspect`: ``status``, ``why``, ``runs``, ``events``, ``graph``;
- :mod:`eventflow.cli.deadletters`: ``deadletters`` (list, show, redrive, discard);
- :mod:`eventflow.cli.checks`: ``checks`` (data-quality checks: list, rerun, override).
- :mod:`eventflow.cli.plan`: ``plan``, ``versions``.
- :mod:`eventflow.cli.act`: ``emit``, ``retry``, ``cancel``, ``replay``;
- :mod:`eventflow.cli.backfills`: ``backfill``, ``backfills``, ``cancel-backfill``.
- :mod:`eventflow.cli.health`: ``workers`` (and the health tables of ``status``);
"""

from __future__ import annotations

import click

from eventflow import __version__
from eventflow.cli import act, backfills, checks, deadletters, health, inspect, pause, plan, run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eventflow")
def main() -> None:
    """eventflow runs a job when its inputs have actually arrived.

    Every command takes the pipeline FILE first, or MODULE:ATTRIBUTE for a pipeline
    declared in Python (eventflow.Pipeline).
    """


for _command in (
    run.validate,
    run.run,
    inspect.status,
    inspect.why,
    inspect.matches,
    inspect.runs,
    deadletters.deadletters,
    inspect.events,
    inspect.graph,
    health.workers_command,
    act.emit,
    act.retry,
    act.cancel,
    pause.pause,
    pause.resume,
    backfills.backfill,
    backfills.backfills,
    backfills.cancel_backfill,
    act.replay,
    checks.checks,
    plan.plan,
    plan.versions,
):
    main.add_command(_command)

__all__ = ["main"]
