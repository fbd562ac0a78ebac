"""The status page at ``/``: lineage, open partitions, recent runs with logs, sensor health.

Server-rendered HTML with inline CSS, an inline SVG graph laid out here (no JavaScript
library, nothing fetched from the internet) and a few lines of script that load a run's logs
from the JSON API and refresh the page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

from eventflow.events import format_partition
from eventflow.pipeline import PRODUCED_SENSOR_PREFIX, Pipeline
from eventflow.server import reports
from eventflow.server.api import RETRY_BUDGET

if TYPE_CHECKING:
    from eventflow.runtime import Runtime

NODE_W, NODE_H, COL_GAP, ROW_GAP = 170, 34, 70, 16
COLOURS = {"sensor": "#dbeafe", "dataset": "#dcfce7", "rule": "#fef3c7"}


@dataclass(frozen=True)
class Node:
    kind: str
    name: str


def lineage(pipeline: Pipeline) -> tuple[list[Node], list[tuple[Node, Node]]]:
    """Sensors -> datasets -> rules -> produced datasets, as nodes and edges."""
    nodes: list[Node] = [Node("sensor", s) for s in pipeline.sensors]
    edges: list[tuple[Node, Node]] = []
    for name, ds in pipeline.datasets.items():
        node = Node("dataset", name)
        nodes.append(node)
        if ds.sensor in pipeline.sensors:
            edges.append((Node("sensor", ds.sensor), node))
    for name, rule in pipeline.rules.items():
        node = Node("rule", name)
        nodes.append(node)
        edges += [(Node("dataset", d), node) for d in rule.spec.datasets]
        if rule.produces:
            edges.append((node, Node("dataset", rule.produces)))
    return nodes, edges


def layout(nodes: list[Node], edges: list[tuple[Node, Node]]) -> dict[Node, tuple[int, int]]:
    """Column = longest path from a source (the graph is acyclic); rows in declared order."""
    column = dict.fromkeys(nodes, 0)
    for _ in nodes:  # relax until stable: at most one pass per node
        changed = False
        for a, b in edges:
            if a in column and b in column and column[b] < column[a] + 1:
                column[b], changed = column[a] + 1, True
        if not changed:
            break
    rows: dict[int, int] = {}
    placed = {}
    for node in nodes:
        col = column[node]
        row = rows.get(col, 0)
        rows[col] = row + 1
        placed[node] = (col * (NODE_W + COL_GAP) + 10, row * (NODE_H + ROW_GAP) + 10)
    return placed


def svg(pipeline: Pipeline) -> str:
    nodes, edges = lineage(pipeline)
    pos = layout(nodes, edges)
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
    for a, b in edges:
        if a not in pos or b not in pos:
            continue
        (x1, y1), (x2, y2) = pos[a], pos[b]
        sx, sy, ex, ey = x1 + NODE_W, y1 + NODE_H // 2, x2, y2 + NODE_H // 2
        mid = (sx + ex) // 2
        parts.append(
            f'<path d="M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}" fill="none"'
            ' stroke="#64748b" marker-end="url(#arrow)"/>'
        )
    for node, (x, y) in pos.items():
        label = escape(node.name if len(node.name) <= 22 else node.name[:21] + "…")
        parts.append(
            f'<g class="node {node.kind}" data-name="{escape(node.name)}">'
            f"<title>{node.kind} {escape(node.name)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"'
            f' fill="{COLOURS[node.kind]}" stroke="#475569"/>'
            f'<text x="{x + 8}" y="{y + 21}" font-size="12">'
            f'<tspan fill="#475569">{node.kind[0].upper()}</tspan> {label}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: list[list[str]], css: str, empty: str) -> str:
    if not rows:
        return f'<p class="empty {css}">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _sensor_rows(runtime: Runtime) -> list[list[str]]:
    rows = []
    now = time.monotonic()
    for name, spec in runtime.pipeline.sensors.items():
        handle = runtime.sensors.get(name)
        if handle is None:
            state, detail = "starting", ""
        elif handle.healthy:
            state, detail = "up", handle.detail
        else:
            within = now - handle.since < RETRY_BUDGET
            state, detail = ("retrying" if within else "down"), handle.detail
        rows.append(
            [
                escape(name),
                escape(spec.type),
                f'<span class="state {state}">{state}</span>',
                escape(detail),
            ]
        )
    return rows


def _run_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in runs:
        rid = escape(r["run_id"])
        rows.append(
            [
                f"<code>{rid[:12]}</code>",
                escape(r["rule"]),
                escape(format_partition(r["partition"])),
                f'<span class="state {escape(r["status"])}">{escape(r["status"])}</span>',
                f"{r['attempt']}/{r['max_attempts']}",
                escape((r["created_at"] or "")[:19]),
                escape((r["error"] or "")[:80]),
                f'<button class="logs" data-run="{rid}">logs</button>',
            ]
        )
    return rows


async def render_page(runtime: Runtime) -> str:
    pipeline, store = runtime.pipeline, runtime.store
    counts = await store.counts()
    rules = reports.rules(pipeline, await store.match_counts())
    matches = await reports.partial_matches(pipeline, store, rule=None, status=None, limit=50)
    runs = [reports.run_row(r) for r in await store.list_runs(limit=30)]
    rule_rows = [
        [
            escape(r["rule"]),
            escape(f"{r['when']['mode']} of {', '.join(r['when']['datasets'])}"),
            escape(", ".join(r["when"]["by"])),
            str(r["open"]),
            str(r["fired"]),
            str(r["expired"]),
        ]
        for r in rules
    ]
    match_rows = [
        [
            escape(m["rule"]),
            escape(format_partition(m["partition"])),
            f'<span class="state {m["status"]}">{m["status"]}</span>',
            escape(", ".join(m["arrived"]) or "-"),
            f'<span class="missing">{escape(", ".join(m["missing"]) or "-")}</span>',
            escape(m["expires_at"] or "-"),
        ]
        for m in matches
    ]
    produced = sorted(
        n for n, ds in pipeline.datasets.items() if ds.sensor.startswith(PRODUCED_SENSOR_PREFIX)
    )
    summary = (
        f"runs: {counts['runs_pending']} pending, {counts['runs_running']} running,"
        f" {counts['runs_succeeded']} succeeded, {counts['runs_failed']} failed ·"
        f" events {counts['events']} · outbox {counts['outbox']} · timers {counts['timers']}"
        f" · dead letters {counts['deadletters']}"
    )
    return PAGE.format(
        name=escape(pipeline.name),
        summary=escape(summary),
        graph=svg(pipeline),
        produced=escape(", ".join(produced) or "none"),
        sensors=_table(
            ["sensor", "type", "state", "detail"], _sensor_rows(runtime), "sensors", "No sensors."
        ),
        rules=_table(
            ["rule", "when", "by", "open", "fired", "expired"], rule_rows, "rules", "No rules."
        ),
        matches=_table(
            ["rule", "partition", "status", "arrived", "missing", "expires at"],
            match_rows,
            "matches",
            "No open partial matches.",
        ),
        runs=_table(
            ["run", "rule", "partition", "status", "attempt", "created", "error", ""],
            _run_rows(runs),
            "runs",
            "No runs yet.",
        ),
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
.up, .succeeded, .open {{ background: #dcfce7; }}
.down, .failed, .expired {{ background: #fee2e2; }}
.retrying, .running, .pending, .starting {{ background: #fef3c7; }}
.missing {{ color: #b91c1c; font-weight: 600; }}
.graph {{ overflow-x: auto; border: 1px solid #e2e8f0; padding: .4rem; }}
pre.log {{ background: #0f172a; color: #e2e8f0; padding: .6rem; max-height: 20rem;
  overflow: auto; white-space: pre-wrap; }}
</style></head>
<body>
<h1>eventflow · {name}</h1>
<p class="summary">{summary} · <a href="/metrics">metrics</a> ·
<a href="/openapi.json">API</a></p>
<h2>Lineage</h2>
<div class="graph">{graph}</div>
<p class="summary">S sensor · D dataset · R rule. Produced datasets: {produced}.</p>
<h2>Sensors</h2>{sensors}
<h2>Rules</h2>{rules}
<h2>Open partitions</h2>{matches}
<h2>Recent runs</h2>{runs}
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
setInterval(function () {{
  if (!document.querySelector("pre.log")) location.reload();
}}, 15000);
</script>
</body></html>
"""
