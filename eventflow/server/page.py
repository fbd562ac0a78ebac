"""The status page at ``/``: lineage, partial matches, recent runs with logs (and the
version that made each), dead letters, sensor health, the versions that ran.

A renderer of the views (:mod:`eventflow.views`), the same that ``eventflow status`` and the
JSON API show, and of the lineage graph of :mod:`eventflow.graph`. Server-rendered HTML with
inline CSS, an inline SVG of the graph laid out here (no JavaScript library, nothing fetched
from the internet) and a few lines of script that load a run's logs from the JSON API and
refresh the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from eventflow import graph as lineage
from eventflow.events import format_partition
from eventflow.pipeline import PRODUCED_SENSOR_PREFIX
from eventflow.records import RunRecord
from eventflow.server.credentials import ANONYMOUS, Principal
from eventflow.server.page_backfills import backfills_section
from eventflow.server.page_deadletters import (
    DEADLETTER_HEADERS,
    DEADLETTER_SCRIPT,
    deadletter_rows,
)
from eventflow.server.page_health import health_section
from eventflow.server.page_pauses import PAUSE_HEADERS, PAUSE_SCRIPT, pause_rows
from eventflow.server.page_versions import short, versions_section
from eventflow.views.checks import Held
from eventflow.views.deadletters import deadletter_page
from eventflow.views.matches import PartialMatch
from eventflow.views.pauses import pauses
from eventflow.views.rules import RuleView
from eventflow.views.runs import RunChecks, RunView, downstream_text
from eventflow.views.sensors import SensorHealth, sensors
from eventflow.views.status import status

if TYPE_CHECKING:
    from eventflow.runtime import Runtime

NODE_W, NODE_H, COL_GAP, ROW_GAP = 170, 34, 70, 16
COLOURS = {"sensor": "#dbeafe", "dataset": "#dcfce7", "rule": "#fef3c7"}
DEADLETTERS = 20
"""Dead letters the page lists (the newest)."""

Row = tuple[str, list[str]]
"""A table row: its ``data-key`` (what it shows: a run id, a partition) and its cells."""


def layout(graph: lineage.Graph) -> dict[str, tuple[int, int]]:
    """Node id -> position. Column = longest path from a source (the graph is acyclic);
    rows in declared order."""
    column = {n.id: 0 for n in graph.nodes}
    for _ in graph.nodes:  # relax until stable: at most one pass per node
        changed = False
        for a, b in graph.edges:
            if a in column and b in column and column[b] < column[a] + 1:
                column[b], changed = column[a] + 1, True
        if not changed:
            break
    rows: dict[int, int] = {}
    placed = {}
    for node in graph.nodes:
        col = column[node.id]
        row = rows.get(col, 0)
        rows[col] = row + 1
        placed[node.id] = (col * (NODE_W + COL_GAP) + 10, row * (NODE_H + ROW_GAP) + 10)
    return placed


def svg(graph: lineage.Graph) -> str:
    """The lineage graph of :func:`eventflow.graph.build` as an inline SVG."""
    pos = layout(graph)
    if not pos:
        return "<p>No sensors, datasets or rules.</p>"
    width = max(x for x, _ in pos.values()) + NODE_W + 10
    height = max(y for _, y in pos.values()) + NODE_H + 10
    parts = [
        f'<svg id="lineage" xmlns="http://www.w3.org/2000/svg" width="{width}"'
        f' height="{height}" role="img" aria-label="lineage graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6"'
        ' markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#64748b"/>'
        "</marker></defs>",
    ]
    for a, b in graph.edges:
        if a not in pos or b not in pos:
            continue
        (x1, y1), (x2, y2) = pos[a], pos[b]
        sx, sy, ex, ey = x1 + NODE_W, y1 + NODE_H // 2, x2, y2 + NODE_H // 2
        mid = (sx + ex) // 2
        parts.append(
            f'<path d="M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}" fill="none"'
            ' stroke="#64748b" marker-end="url(#arrow)"/>'
        )
    for node in graph.nodes:
        x, y = pos[node.id]
        label = escape(node.name if len(node.name) <= 22 else node.name[:21] + "…")
        title = f"{node.kind} {node.name}" + (f" · {node.detail}" if node.detail else "")
        parts.append(
            f'<g class="node {node.kind}" data-name="{escape(node.name)}">'
            f"<title>{escape(title)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"'
            f' fill="{COLOURS[node.kind]}" stroke="#475569"/>'
            f'<text x="{x + 8}" y="{y + 21}" font-size="12">'
            f'<tspan fill="#475569">{node.kind[0].upper()}</tspan> {label}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: Sequence[Row], css: str, empty: str) -> str:
    if not rows:
        return f'<p class="empty {css}">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        f'<tr data-key="{escape(key)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        for key, cells in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _state(state: str) -> str:
    return f'<span class="state {escape(state)}">{escape(state)}</span>'


def _iso(text: str | None) -> str:
    return escape((text or "")[:19]) or "-"


def match_key(rule: str, partition: dict[str, str]) -> str:
    """The ``data-key`` of a partial match's row: ``rule dt=...``."""
    return f"{rule} {format_partition(partition)}"


def _sensor_rows(found: list[SensorHealth]) -> list[Row]:
    return [
        (s.sensor, [escape(s.sensor), escape(s.type), _state(s.state), escape(s.detail)])
        for s in found
    ]


def _rule_rows(rules: Sequence[RuleView]) -> list[Row]:
    rows = []
    for rule in rules:
        r = rule.to_dict()
        when = r["when"]
        counts = [str(r[s]) for s in ("open", "fired", "expired", "missed")]
        rows.append(
            (
                r["rule"],
                [
                    escape(r["rule"]),
                    escape(f"{when['mode']} of {', '.join(when['datasets'])}"),
                    escape(", ".join(when["by"])),
                    *counts,
                ],
            )
        )
    return rows


def _match_rows(found: Sequence[PartialMatch]) -> list[Row]:
    rows = []
    for m in found:
        p = m.to_dict()
        deadline = p["deadline"]
        rows.append(
            (
                match_key(p["rule"], p["partition"]),
                [
                    escape(p["rule"]),
                    escape(format_partition(p["partition"])),
                    _state(p["status"]),
                    escape(", ".join(p["arrived"]) or "-"),
                    f'<span class="missing">{escape(", ".join(p["missing"]) or "-")}</span>',
                    escape(p["expires_at"] or "-"),
                    escape(f"{deadline['at']} ({deadline['state']})") if deadline else "-",
                ],
            )
        )
    return rows


def _run_rows(found: Sequence[RunView], operator: bool) -> list[Row]:
    """The runs with their checks' outcome; an operator also gets a retry button on each
    failed one and a cancel button on each pending or running one."""
    rows = []
    for r in found:
        rid = escape(r.run_id)
        retry = ""
        if operator and r.status == "failed":
            retry = f' <button class="retry" data-run="{rid}">retry</button>'
        elif operator and r.status in ("pending", "running") and r.cancel_requested is None:
            retry = f' <button class="cancel" data-run="{rid}">cancel</button>'
        rows.append(
            (
                r.run_id,
                [
                    f'<code title="{rid}">{rid[:12]}</code>',
                    escape(r.rule),
                    escape(format_partition(r.partition)),
                    _state(r.status),
                    f"{r.attempt}/{r.max_attempts}",
                    _iso(r.created_at.isoformat()),
                    short(r.pipeline_version),
                    escape((r.error or "")[:80]),
                    _checks_cell(r.checks),
                    _downstream(r),
                    f'<button class="logs" data-run="{rid}">logs</button>{retry}',
                ],
            )
        )
    return rows


def _checks_cell(checks: RunChecks | None) -> str:
    """The outcome of a run's checks, styled like a state (empty without checks)."""
    if checks is None:
        return ""
    css = {"passed": "succeeded", "blocked": "failed", "overridden": "retrying"}
    state = css.get(checks.outcome, "pending")
    return f'<span class="state checks {state}">{escape(checks.text)}</span>'


def _downstream(record: RunRecord) -> str:
    """The downstream run of a hand-off, linked to the system's page of it (http(s) only)."""
    text = escape(downstream_text(record))
    url = (record.downstream or {}).get("url")
    if text and isinstance(url, str) and url.lower().startswith(("http://", "https://")):
        return f'<a href="{escape(url)}" rel="noreferrer">{text}</a>'
    return text


def _checks_rows(found: Sequence[Held], operator: bool) -> list[Row]:
    """Produced partitions held by their checks; an operator gets re-run and override
    buttons (posted as JSON, same-origin: the guard refuses a cross-site post)."""
    rows = []
    for h in found:
        g = h.gate
        rid = escape(g.run_id)
        results = "<br>".join(
            escape(
                f"{r.get('check')}: {'passed' if r.get('passed') else 'failed'}"
                + (f" ({r.get('detail')})" if r.get("detail") else "")
            )
            for r in g.results
        )
        buttons = ""
        if operator:
            button = '<button class="check-action" data-action="{0}" data-run="{1}">{2}</button> '
            if g.status == "blocked":
                buttons += button.format("rerun", rid, "re-run checks")
            buttons += button.format("override", rid, "override")
        rows.append(
            (
                g.run_id,
                [
                    f'<code title="{rid}">{rid[:12]}</code>',
                    escape(g.dataset),
                    escape(format_partition(g.partition)),
                    f'<span class="missing">{escape(h.reason)}</span>',
                    results or "-",
                    escape(", ".join(h.downstream) or "-"),
                    buttons,
                ],
            )
        )
    return rows


def _who(principal: Principal | None) -> str:
    """Who is signed in, and the button that signs out (nothing when all is open)."""
    if principal is None or principal is ANONYMOUS:
        return ""
    return (
        f' · <span class="who">{escape(principal.name)} ({principal.role})</span>'
        ' <button id="logout">sign out</button>'
    )


async def render_page(runtime: Runtime, principal: Principal | None) -> str:
    """The page as ``principal`` sees it: the status view, sensor health, the lineage graph
    and dead letters; an operator's page can retry failed runs."""
    pipeline, store = runtime.pipeline, runtime.store
    operator = principal is not None and principal.may("operate")
    view = await status(pipeline, store)
    graph = lineage.build(pipeline, await lineage.rule_states(pipeline, store))
    letters = (await deadletter_page(store, limit=DEADLETTERS)).items
    produced = sorted(
        n for n, ds in pipeline.datasets.items() if ds.sensor.startswith(PRODUCED_SENSOR_PREFIX)
    )
    return PAGE.format(
        name=escape(pipeline.name),
        summary=escape(view.summary()),
        who=_who(principal),
        graph=svg(graph),
        produced=escape(", ".join(produced) or "none"),
        sensors=_table(
            ["sensor", "type", "state", "detail"],
            _sensor_rows(sensors(runtime)),
            "sensors",
            "No sensors.",
        ),
        rules=_table(
            ["rule", "when", "by", "open", "fired", "expired", "missed"],
            _rule_rows(view.rules),
            "rules",
            "No rules.",
        ),
        matches=_table(
            ["rule", "partition", "status", "arrived", "missing", "expires at", "deadline"],
            _match_rows(view.partial_matches),
            "matches",
            "No open partial matches.",
        ),
        runs=_table(
            [
                "run",
                "rule",
                "partition",
                "status",
                "attempt",
                "created",
                "version",
                "error",
                "checks",
                "downstream",
                "",
            ],
            _run_rows(view.recent_runs, operator),
            "runs",
            "No runs yet.",
        ),
        checks=_table(
            ["run", "dataset", "partition", "status", "checks", "downstream", ""],
            _checks_rows(view.held, principal is not None and principal.may("operate")),
            "checks",
            "No partition is held by checks.",
        ),
        pauses=_table(
            PAUSE_HEADERS,
            pause_rows(pipeline, await pauses(store), operator),
            "pauses",
            "No rules or sensors.",
        )
        + PAUSE_SCRIPT,
        health=health_section(view),
        deadletters=_table(
            DEADLETTER_HEADERS,
            deadletter_rows(letters, operator),
            "deadletters",
            "No open dead letters.",
        )
        + DEADLETTER_SCRIPT,
        backfills=await backfills_section(runtime, principal),
        versions=await versions_section(runtime),
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>eventflow · {name}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #0f172a; }}
h1 {{ font-size: 1.4rem; margin: 0 0 .2rem; }} h2 {{ font-size: 1.1rem; margin-top: 1.6rem; }}
.summary {{ color: #475569; }}
table {{ border-collapse: collapse; }}
th, td {{ text-align: left; padding: .25rem .6rem; border-bottom: 1px solid #e2e8f0; }}
th {{ background: #f1f5f9; }}
.state {{ padding: 0 .4rem; border-radius: .6rem; font-size: 12px; }}
.up, .succeeded, .open, .connected, .live {{ background: #dcfce7; }}
.down, .failed, .expired, .missed, .disconnected, .stale {{ background: #fee2e2; }}
.retrying, .running, .pending, .starting, .standby, .paused {{ background: #fef3c7; }}
.missing {{ color: #b91c1c; font-weight: 600; }}
.graph {{ overflow-x: auto; border: 1px solid #e2e8f0; padding: .4rem; }}
pre.log {{ background: #0f172a; color: #e2e8f0; padding: .6rem; max-height: 20rem;
  overflow: auto; white-space: pre-wrap; }}
</style></head>
<body>
<h1>eventflow · {name}</h1>
<p class="summary">{summary} · <a href="/metrics">metrics</a> ·
<a href="/openapi.json">API</a>{who}</p>
<h2>Lineage</h2>
<div class="graph">{graph}</div>
<p class="summary">S sensor · D dataset · R rule. Produced datasets: {produced}.</p>
<h2>Sensors</h2>{sensors}
{health}
<h2>Rules</h2>{rules}
<h2>Partial matches (open, missed, expired)</h2>{matches}
<h2>Recent runs</h2>{runs}
<h2>Held by checks</h2>{checks}
<h2>Pause and resume</h2>{pauses}
<h2>Dead letters</h2>{deadletters}
<h2>Backfills</h2>{backfills}
{versions}
<div id="log-view"></div>
<script>
document.querySelectorAll("button.logs").forEach(function (b) {{
  b.addEventListener("click", async function () {{
    const r = await fetch("/api/runs/" + encodeURIComponent(b.dataset.run) + "/logs");
    const j = await r.json();
    const view = document.getElementById("log-view");
    view.innerHTML = "";
    const h = document.createElement("h2");
    h.textContent = "Logs of run " + j.run_id + " (attempt " + j.attempt + ")";
    view.appendChild(h);
    ["stdout", "stderr"].forEach(function (s) {{
      const pre = document.createElement("pre");
      pre.className = "log " + s;
      pre.textContent = "--- " + s + " ---\\n" + (j[s] || "(empty)");
      view.appendChild(pre);
    }});
    view.scrollIntoView();
  }});
}});
async function post(path) {{
  // JSON and same-origin: what the server's guard asks of a state-changing request
  const r = await fetch(path, {{method: "POST", headers: {{"Content-Type": "application/json"}},
                               body: "{{}}"}});
  if (!r.ok) alert((await r.json()).error);
  location.reload();
}}
document.querySelectorAll("button.retry").forEach(function (b) {{
  b.addEventListener("click", function () {{
    post("/api/runs/" + encodeURIComponent(b.dataset.run) + "/retry");
  }});
}});
document.querySelectorAll("button.cancel").forEach(function (b) {{
  b.addEventListener("click", function () {{
    if (confirm("Cancel run " + b.dataset.run + "?"))
      post("/api/runs/" + encodeURIComponent(b.dataset.run) + "/cancel");
  }});
}});
document.querySelectorAll("button.check-action").forEach(function (b) {{
  b.addEventListener("click", function () {{
    post("/api/checks/" + encodeURIComponent(b.dataset.run) + "/" + b.dataset.action);
  }});
}});
const logout = document.getElementById("logout");
if (logout) logout.addEventListener("click", function () {{ post("/logout"); }});
setInterval(function () {{
  if (!document.querySelector("pre.log, [data-busy]")) location.reload();
}}, 15000);
</script>
</body></html>
"""
