"""The status page's pause section: every rule and sensor, whether it is paused (by whom,
since when, how much a rule holds) and, for an operator, its pause or resume button.

The buttons post to ``/api/{rules,sensors}/{name}/{pause,resume}`` through the page's
``post`` (JSON, same origin: what the guard asks of a state-changing request).
"""

from __future__ import annotations

from html import escape

from eventflow.pipeline import CompiledPipeline
from eventflow.views.pauses import PauseView

Row = tuple[str, list[str]]


def pause_rows(pipeline: CompiledPipeline, found: list[PauseView], operator: bool) -> list[Row]:
    """One row per rule (alerts left out) and sensor: kind, name, state, who, since, held."""
    paused: dict[tuple[str, str], PauseView] = {(v.pause.kind, v.pause.name): v for v in found}
    targets = [("rule", n) for n in pipeline.rules if ":" not in n]
    targets += [("sensor", n) for n in pipeline.sensors]
    rows = []
    for kind, name in targets:
        view = paused.get((kind, name))
        action = "resume" if view else "pause"
        button = (
            f'<button class="pause-action" data-kind="{kind}" data-name="{escape(name)}"'
            f' data-action="{action}">{action}</button>'
            if operator
            else ""
        )
        if view is None:
            cells = ['<span class="state up">running</span>', "-", "-", "-", "-"]
        else:
            p = view.pause
            cells = [
                '<span class="state paused">paused</span>',
                escape(p.by),
                escape(p.since.isoformat()[:19]),
                escape(p.reason or "-"),
                "-" if view.held is None else str(view.held),
            ]
        rows.append((f"{kind} {name}", [kind, escape(name), *cells, button]))
    return rows


PAUSE_HEADERS = ["kind", "name", "state", "paused by", "since", "reason", "held", ""]

PAUSE_SCRIPT = """<script>
document.querySelectorAll("button.pause-action").forEach(function (b) {
  b.addEventListener("click", function () {
    post("/api/" + b.dataset.kind + "s/" + encodeURIComponent(b.dataset.name) + "/"
         + b.dataset.action);
  });
});
</script>"""
