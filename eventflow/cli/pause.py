"""``eventflow pause`` and ``eventflow resume``: hold a rule's runs or stop a sensor, durably.

The pause is a row in the state store with who asked and why (see :mod:`eventflow.pauses`);
the running pipeline notices it within its poll interval. Both commands are idempotent.
"""

from __future__ import annotations

from pathlib import Path

import click

from eventflow.cli.act import operator
from eventflow.cli.common import FILE, JSON_OPT, err, load, out, print_json, with_store
from eventflow.pauses import PauseActionName, PauseKind, UnknownTarget, act


def _target(rule: str | None, sensor: str | None) -> tuple[PauseKind, str]:
    if (rule is None) == (sensor is None):
        raise click.UsageError("give exactly one of --rule RULE or --sensor SENSOR")
    return ("rule", rule) if rule is not None else ("sensor", sensor or "")


def _command(action: PauseActionName, doc: str) -> click.Command:
    @click.command(name=action, help=doc)
    @FILE
    @click.option("--rule", help=f"The rule to {action}.")
    @click.option("--sensor", help=f"The sensor to {action}.")
    @click.option("--reason", help="Why (kept with the audit record).")
    @JSON_OPT
    def command(
        file: Path, rule: str | None, sensor: str | None, reason: str | None, as_json: bool
    ) -> None:
        kind, name = _target(rule, sensor)
        pipeline = load(file)
        by = operator()
        try:
            done = with_store(pipeline, lambda s: act(pipeline, s, kind, name, action, by, reason))
        except UnknownTarget as exc:
            err.print(str(exc), markup=False)
            raise SystemExit(2) from None
        if as_json:
            print_json(done.to_dict())
            return
        past = "paused" if action == "pause" else "resumed"
        state = past if done.changed else f"already {past if action == 'pause' else 'running'}"
        after = "; the running pipeline acts on it within its poll interval" if done.changed else ""
        out.print(f"{kind} {name}: {state}{after}", markup=False)

    return command


pause = _command(
    "pause",
    """Pause a rule (its events are still taken and matched; its runs are held until the
    resume) or a sensor (it stops reading; the source keeps the data).

    Recorded in the state store with who asked, when and why; the running pipeline notices
    it within its poll interval. Pausing what is paused changes nothing.""",
)
resume = _command(
    "resume",
    """Resume a paused rule (each run it holds runs once) or sensor (it reads on from its
    cursor). Recorded with who asked and when.""",
)
