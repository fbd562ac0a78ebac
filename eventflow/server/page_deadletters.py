"""The status page's dead-letter section: the newest open dead letters and, for an operator,
their show, redrive and discard buttons.

``show`` loads ``GET /api/deadletters/{event_id}`` (the kept message, its history) below the
tables; ``redrive`` and ``discard`` post to ``/api/deadletters/{event_id}/...`` through the
page's ``post`` (JSON, same origin: what the guard asks of a state-changing request).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from eventflow.views.deadletters import DeadLetterView

Row = tuple[str, list[str]]

DEADLETTER_HEADERS = ["time", "sensor", "position", "error", "excerpt", "status", ""]


def deadletter_rows(found: Sequence[DeadLetterView], operator: bool) -> list[Row]:
    rows = []
    for view in found:
        d = view.to_dict()
        position = " ".join(f"{k}={v}" for k, v in d["position"].items())
        event = escape(d["event_id"])
        buttons = [f'<button class="deadletter-show" data-event="{event}">show</button>']
        if operator:
            if d["redrivable"] and d["redrive_requested"] is None:
                buttons.append(_button(event, "redrive"))
            buttons.append(_button(event, "discard"))
        status = "redrive requested" if d["redrive_requested"] else d["status"]
        rows.append(
            (
                d["event_id"],
                [
                    escape(d["time"][:19]),
                    escape(d["sensor"]),
                    escape(position),
                    escape(d["error"][:120]),
                    f"<code>{escape(d['excerpt'][:60])}</code>",
                    escape(status),
                    " ".join(buttons),
                ],
            )
        )
    return rows


def _button(event: str, action: str) -> str:
    return (
        f'<button class="deadletter-action" data-event="{event}" data-action="{action}">'
        f"{action}</button>"
    )


DEADLETTER_SCRIPT = """<div id="deadletter-view"></div>
<script>
document.querySelectorAll("button.deadletter-action").forEach(function (b) {
  b.addEventListener("click", function () {
    post("/api/deadletters/" + encodeURIComponent(b.dataset.event) + "/" + b.dataset.action);
  });
});
document.querySelectorAll("button.deadletter-show").forEach(function (b) {
  b.addEventListener("click", async function () {
    const r = await fetch("/api/deadletters/" + encodeURIComponent(b.dataset.event));
    const view = document.getElementById("deadletter-view");
    const pre = document.createElement("pre");
    pre.className = "log deadletter";
    pre.textContent = JSON.stringify(await r.json(), null, 2);
    view.replaceChildren(pre);
    view.dataset.busy = "1";
    view.scrollIntoView();
  });
});
</script>"""
