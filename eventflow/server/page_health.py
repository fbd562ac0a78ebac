"""The page's health section: sensors as the workers report them, the workers, and each
rule's error rates and MTTR (drawn from the :class:`~eventflow.views.status.Status`)."""

from __future__ import annotations

from html import escape

from eventflow.views.status import Status


def _cell(value: object) -> str:
    return escape("-" if value is None or value == "" else str(value))


def _state(state: str) -> str:
    return f'<span class="state {escape(state)}">{escape(state)}</span>'


def _table(css: str, headers: list[str], rows: list[tuple[str, list[str]]], empty: str) -> str:
    if not rows:
        return f'<p class="empty {css}">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        f'<tr data-key="{escape(key)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        for key, cells in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def health_section(view: Status) -> str:
    """``<h2>`` and table of reported sensors, of workers, of rule reliability."""
    sensors = []
    for s in view.sensors:
        d = s.to_dict()
        error = d["last_error"]
        sensors.append(
            (
                f"{s.sensor} {s.worker or ''}".strip(),
                [
                    _cell(s.sensor),
                    _state(s.state),
                    _cell(s.worker),
                    _cell((d["last_poll"] or "")[:19]),
                    _cell(d["lag"]),
                    _cell(f"{error['message']} ({error['at'][:19]})" if error else None),
                ],
            )
        )
    workers = [
        (
            w.beat.worker,
            [
                _cell(w.beat.worker),
                _cell(w.beat.host),
                _cell(w.beat.pid),
                _state(w.state),
                _cell(f"{w.age_seconds:.0f}s ago"),
                _cell(", ".join(w.beat.leases)),
            ],
        )
        for w in view.workers
    ]
    rules = [
        (
            r.rule,
            [
                _cell(r.rule),
                _cell(r.runs),
                _cell(f"{r.attempt_error_rate:.1%}"),
                _cell(f"{r.run_error_rate:.1%}"),
                _cell(None if r.mttr_seconds is None else f"{r.mttr_seconds:.0f}s"),
                _cell(r.failing or None),
            ],
        )
        for r in view.reliability
    ]
    return (
        "<h2>Sensors on the workers</h2>"
        + _table(
            "reported",
            ["sensor", "state", "worker", "last poll", "lag", "last error"],
            sensors,
            "No worker has reported a sensor.",
        )
        + "<h2>Workers</h2>"
        + _table(
            "workers",
            ["worker", "host", "pid", "state", "heartbeat", "leases"],
            workers,
            "No worker has written a heartbeat.",
        )
        + "<h2>Reliability (last day)</h2>"
        + _table(
            "reliability",
            ["rule", "runs", "attempt errors", "run errors", "MTTR", "failing streams"],
            rules,
            "No rules.",
        )
    )
