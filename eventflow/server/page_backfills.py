"""The status page's backfills: the requests with their progress and, for an operator, a
form (rule, from, to, a dry-run preview, submit) and a cancel button on each active one.

Drawn from :mod:`eventflow.views.backfills`; the form's buttons call the JSON API
(``GET /api/backfills/preview``, ``POST /api/backfills``, ``POST .../cancel``) with a JSON
body from the page's own origin, which is what the server's guard asks of a post.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from eventflow.server.credentials import Principal
from eventflow.views import backfills as views

if TYPE_CHECKING:
    from eventflow.runtime import Runtime

SHOWN = 20
"""Backfill requests the page lists (the newest)."""


async def backfills_section(runtime: Runtime, principal: Principal | None) -> str:
    """The section's HTML: the table, and the form when ``principal`` may operate."""
    operator = principal is not None and principal.may("operate")
    found = await views.backfills(runtime.store, limit=SHOWN)
    rows = []
    for r in found:
        cancel = (
            f' <button class="cancel-backfill" data-backfill="{escape(r.id)}">cancel</button>'
            if operator and r.active and not r.cancel_requested
            else ""
        )
        cells = [
            f"<code>{escape(r.id)}</code>",
            escape(r.rule),
            escape(f"{r.lo} .. {r.hi}"),
            f'<span class="state {escape(r.status)}">{escape(r.status)}</span>',
            f'<span class="progress">{escape(views.progress_text(r))}</span>'
            + (f' <span class="why">{escape(r.message)}</span>' if r.message else ""),
            escape(r.requested_by),
            escape(r.requested_at.isoformat()[:19]) + cancel,
        ]
        rows.append(
            f'<tr data-key="{escape(r.id)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>" for h in ("id", "rule", "range", "status", "progress", "requested by", "at")
    )
    table = (
        f'<table class="backfills"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}'
        "</tbody></table>"
        if rows
        else '<p class="empty backfills">No backfills.</p>'
    )
    if not operator:
        return table
    options = "".join(
        f'<option value="{escape(n)}">{escape(n)} ({escape(", ".join(rule.spec.by))})</option>'
        for n, rule in runtime.pipeline.rules.items()
    )
    return table + FORM.format(options=options) + SCRIPT


FORM = """
<form id="backfill-form" onsubmit="return false">
<label>rule <select name="rule">{options}</select></label>
<label>from <input name="from" placeholder="2024-05-01" required></label>
<label>to <input name="to" placeholder="2024-05-31" required></label>
<label>rate <input name="rate" type="number" min="0.1" step="any" placeholder="default"></label>
<label><input name="force" type="checkbox"> force</label>
<button type="button" id="backfill-preview">preview</button>
<button type="button" id="backfill-submit">submit</button>
</form>
<div id="backfill-plan"></div>
"""

SCRIPT = """
<script>
(function () {
  const form = document.getElementById("backfill-form");
  const plan = document.getElementById("backfill-plan");
  form.addEventListener("input", function () { form.dataset.busy = "1"; });
  function fields() {
    const f = new FormData(form);
    return {rule: f.get("rule"), from: f.get("from"), to: f.get("to"),
            force: f.get("force") === "on", rate: f.get("rate") ? Number(f.get("rate")) : null};
  }
  async function send(path, body) {
    const r = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                 body: JSON.stringify(body)});
    const j = await r.json();
    if (!r.ok) { plan.textContent = j.error; return null; }
    return j;
  }
  document.getElementById("backfill-preview").addEventListener("click", async function () {
    const v = fields();
    const q = new URLSearchParams({rule: v.rule, from: v.from, to: v.to, force: v.force});
    const r = await fetch("/api/backfills/preview?" + q.toString());
    const j = await r.json();
    plan.innerHTML = "";
    if (!r.ok) { plan.textContent = j.error; return; }
    const p = document.createElement("p");
    p.className = "preview";
    p.textContent = j.why_empty ? "nothing to fire: " + j.why_empty :
      j.counts.run + " to fire, " + j.counts.resume + " resumed, " + j.counts.skip +
      " skipped, " + j.counts.incomplete + " incomplete";
    plan.appendChild(p);
    const ul = document.createElement("ul");
    j.partitions.forEach(function (row) {
      const li = document.createElement("li");
      li.textContent = row.key + ": " + row.action + " (" + row.reason + ")";
      ul.appendChild(li);
    });
    plan.appendChild(ul);
  });
  document.getElementById("backfill-submit").addEventListener("click", async function () {
    const v = fields();
    const body = {rule: v.rule, from: v.from, to: v.to, force: v.force};
    if (v.rate) body.rate = v.rate;
    if (await send("/api/backfills", body)) location.reload();
  });
  document.querySelectorAll("button.cancel-backfill").forEach(function (b) {
    b.addEventListener("click", async function () {
      const path = "/api/backfills/" + encodeURIComponent(b.dataset.backfill) + "/cancel";
      if (await send(path, {})) location.reload();
    });
  });
})();
</script>
"""
