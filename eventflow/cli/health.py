"""``eventflow workers`` and the health parts of ``eventflow status``: sensors as the workers
report them, workers with their heartbeats, each rule's error rates and MTTR."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
from rich.table import Table

from eventflow.cli.common import FILE, JSON_OPT, load, out, print_json, with_store
from eventflow.durations import format_duration
from eventflow.views.reliability import RuleReliability
from eventflow.views.workers import SensorStatus, WorkerView
from eventflow.views.workers import workers as worker_views


def _table(*headers: str, title: str) -> Table:
    return Table(*headers, title=title, title_justify="left")


def _row(table: Table, *cells: object) -> None:
    from eventflow.cli.render import add_row

    add_row(table, *("-" if c is None or c == "" else str(c) for c in cells))


def _lag(s: SensorStatus) -> str | None:
    d = s.to_dict()
    if d["lag"] is None:
        return None
    parts = d["lag_detail"] or {}
    text = f"{d['lag']:g}"
    if parts:
        text += " (" + ", ".join(f"{k}: {v:g}" for k, v in sorted(parts.items())) + ")"
    return text


def sensors(found: Sequence[SensorStatus]) -> None:
    """The sensors table: state, worker, last poll, lag, last error."""
    if not found:
        return
    table = _table(
        "sensor", "type", "state", "worker", "last poll", "lag", "last error", title="Sensors"
    )
    for s in found:
        d = s.to_dict()
        error = d["last_error"]
        _row(
            table,
            s.sensor,
            s.type,
            s.state,
            s.worker,
            (d["last_poll"] or "")[:19],
            _lag(s),
            f"{error['message']} ({error['at'][:19]})" if error else None,
        )
    out.print(table)


def workers(found: Sequence[WorkerView]) -> None:
    """The workers table: id, host, pid, state, started, heartbeat age, leases."""
    if not found:
        out.print("Workers: none has written a heartbeat to this store.", markup=False)
        return
    table = _table(
        "worker", "host", "pid", "state", "started", "heartbeat", "leases", title="Workers"
    )
    for w in found:
        d = w.to_dict()
        _row(
            table,
            d["worker"],
            d["host"],
            d["pid"],
            d["state"],
            d["started_at"][:19],
            f"{d['heartbeat_age_seconds']:g}s ago",
            ", ".join(d["leases"]),
        )
    out.print(table)


def reliability(found: Sequence[RuleReliability]) -> None:
    """Each rule's runs, error rates, MTTR and failing streams over the window."""
    if not any(r.runs for r in found):
        return
    window = format_duration_s(found[0].window_seconds) if found else ""
    table = _table(
        "rule",
        "runs",
        "attempt errors",
        "run errors",
        "MTTR",
        "failing",
        title=f"Reliability (runs created in the last {window})",
    )
    for r in found:
        _row(
            table,
            r.rule,
            r.runs,
            f"{r.attempt_error_rate:.1%} ({r.failed_attempts}/{r.attempts})",
            f"{r.run_error_rate:.1%} ({r.failed}/{r.finished})",
            None if r.mttr_seconds is None else format_duration_s(r.mttr_seconds),
            f"{r.failing} since {r.failing_since.isoformat()[:19]}" if r.failing_since else None,
        )
    out.print(table)


def format_duration_s(seconds: float) -> str:
    from datetime import timedelta

    return format_duration(timedelta(seconds=round(seconds)))


@click.command(name="workers")
@FILE
@JSON_OPT
def workers_command(file: Path, as_json: bool) -> None:
    """Workers that wrote a heartbeat to the store (id, host, pid, state, leases) and each
    sensor as they report it."""
    from eventflow.views.workers import sensor_statuses

    pipeline = load(file)
    found = with_store(pipeline, worker_views)
    rows = sensor_statuses(pipeline, found)
    if as_json:
        print_json(
            {"workers": [w.to_dict() for w in found], "sensors": [s.to_dict() for s in rows]}
        )
        return
    workers(found)
    sensors(rows)
