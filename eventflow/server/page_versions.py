"""The page's versions section: the version this process runs (its git commit, whether the
tree was dirty, its environment and store) and the newest starts the store recorded
(:mod:`eventflow.views.versions`, what ``GET /api/versions`` answers)."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from eventflow.views.versions import VersionView, current, version_page

if TYPE_CHECKING:
    from eventflow.runtime import Runtime

STARTS = 10
"""Starts the page lists (the newest)."""
SHORT = 7
"""Hex digits of a version or commit shown (the whole one is in the cell's title)."""


def short(value: str | None) -> str:
    """``<code title="full">short</code>``, ``-`` for None."""
    if not value:
        return "-"
    return f'<code title="{escape(value)}">{escape(value[:SHORT])}</code>'


def _git(commit: str | None, dirty: bool | None) -> str:
    if commit is None:
        return "not in git"
    return short(commit) + (" (dirty)" if dirty else "")


def _start_row(view: VersionView) -> tuple[str, list[str]]:
    s = view.start
    return (
        str(s.seq),
        [
            escape(str(s.seq)),
            escape(s.started_at.isoformat()[:19]),
            short(s.version) + (" (this)" if view.current else ""),
            escape(s.environment),
            escape(s.worker),
            _git(s.git_commit, s.git_dirty),
            escape(", ".join(view.changes) or "no changes"),
        ],
    )


async def versions_section(runtime: Runtime) -> str:
    """``<h2>`` with the running version, then a table of the newest starts."""
    started = runtime.started
    identity = started.identity if started else await runtime.store.store_identity()
    now = current(runtime.pipeline, identity, started.start if started else None)
    start = now.start
    facts = [
        ("version", short(now.version)),
        (
            "git commit",
            _git(start.git_commit, start.git_dirty) if start else "-",
        ),
        ("environment", escape(now.environment)),
        (
            "store",
            f"{short(identity.store_id)} ({escape(identity.environment)})" if identity else "-",
        ),
        ("started", escape(start.started_at.isoformat()[:19]) if start else "-"),
    ]
    summary = "".join(
        f'<tr data-key="{escape(k)}"><th>{escape(k)}</th><td>{v}</td></tr>' for k, v in facts
    )
    page = await version_page(runtime.pipeline, runtime.store, limit=STARTS)
    rows = [_start_row(v) for v in page.items]
    head = "".join(
        f"<th>{h}</th>"
        for h in ("#", "started", "version", "environment", "worker", "git", "changes")
    )
    body = "".join(
        f'<tr data-key="{escape(key)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        for key, cells in rows
    )
    table = (
        f'<table class="starts"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        if rows
        else '<p class="empty starts">No start recorded yet.</p>'
    )
    return (
        f'<h2>Versions</h2><table class="version"><tbody>{summary}</tbody></table>'
        f'<p class="summary">Newest starts ({page.total} in all):</p>{table}'
    )
