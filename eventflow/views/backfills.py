"""Backfills: the dry-run preview, submitting and cancelling a request, the list.

The CLI (``backfill``, ``backfills``, ``cancel-backfill``), the JSON API (``/api/backfills``)
and the status page's form all go through these functions; each action is audited: the
row keeps who asked and when (``requested_by``, ``cancel_requested``), and the log says it
(``backfill_submitted``, ``backfill_cancel_requested``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventflow import backfill as bf
from eventflow.backfill_requests import BackfillRequest, new_request
from eventflow.events import format_partition
from eventflow.log import get_logger
from eventflow.pipeline import CompiledPipeline
from eventflow.types import Store
from eventflow.views import NotFound

PREVIEW_ROWS = 200
"""Partitions a preview lists (the counts are of all)."""


@dataclass(frozen=True, slots=True)
class Preview:
    """What a backfill would do now: the counts and the first partitions."""

    rule: str
    lo: str
    hi: str
    counts: dict[str, int]
    partitions: list[dict[str, Any]] = field(default_factory=list)
    why_empty: str | None = None

    @property
    def to_fire(self) -> int:
        return self.counts.get("run", 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "from": self.lo,
            "to": self.hi,
            "dry_run": True,
            "counts": self.counts,
            "partitions": self.partitions,
            "why_empty": self.why_empty,
        }


def bounds(pipeline: CompiledPipeline, rule: str, lo: str, hi: str) -> tuple[bf.Bound, bf.Bound]:
    """The parsed range; BackfillError for an unknown rule or a bad bound."""
    found = pipeline.rules.get(rule)
    if found is None:
        raise bf.BackfillError(
            f"no rule {rule!r}", hint=f"rules: {', '.join(pipeline.rules) or 'none'}"
        )
    by = found.spec.by
    return bf.parse_bound(lo, by, "from"), bf.parse_bound(hi, by, "to")


async def preview(
    pipeline: CompiledPipeline,
    store: Store,
    rule: str,
    lo: str,
    hi: str,
    *,
    force: bool = False,
    list_sources: bool = True,
    rows: int = PREVIEW_ROWS,
    batch_size: int | None = None,
) -> Preview:
    """The dry-run plan of a backfill: nothing is written. ``batch_size``: observations the
    plan's scratch engine takes at a time (small inside a running pipeline)."""
    the_plan = await bf.plan(
        pipeline, store, rule, *bounds(pipeline, rule, lo, hi), force=force,
        list_sources=list_sources, batch_size=batch_size,
    )  # fmt: skip
    counts = {a: len(the_plan.of(a)) for a in ("run", "resume", "skip", "incomplete")}
    partitions = [
        {
            "partition": i.partition,
            "key": format_partition(i.partition),
            "action": i.action,
            "reason": i.reason,
            "run_id": i.run_id,
        }
        for i in the_plan.items[:rows]
    ]
    return Preview(rule, lo, hi, counts, partitions, the_plan.why_empty)


async def submit(
    pipeline: CompiledPipeline,
    store: Store,
    rule: str,
    lo: str,
    hi: str,
    by: str,
    now: datetime,
    *,
    force: bool = False,
    list_sources: bool = True,
    rate: float | None = None,
    preview_size: int | None = None,
) -> BackfillRequest:
    """Record a backfill request for the running pipeline (who asked: ``by``)."""
    bounds(pipeline, rule, lo, hi)
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise bf.BackfillError(
            f"rate must be a finite number of partitions a second above 0, not {rate}"
        )
    request = new_request(
        rule, lo, hi, by, now, force=force, list_sources=list_sources, rate=rate,
        preview=preview_size,
    )  # fmt: skip
    await store.save_backfill(request)
    get_logger(component="backfill").info(
        "backfill_submitted", backfill=request.id, rule=rule, lo=lo, hi=hi, force=force,
        rate=rate, requested_by=by,
    )  # fmt: skip
    return request


async def cancel(store: Store, backfill_id: str, by: str, now: datetime) -> BackfillRequest:
    """Ask the running pipeline to stop a backfill (StoreError if it ended or is unknown)."""
    request = await store.request_backfill_cancel(backfill_id, by, now)
    get_logger(component="backfill").info(
        "backfill_cancel_requested", backfill=backfill_id, rule=request.rule, requested_by=by
    )
    return request


async def backfills(
    store: Store, *, status: str | None = None, limit: int = 50
) -> list[BackfillRequest]:
    """Backfill requests, newest first (``status``: one status, or ``active``)."""
    return await store.list_backfills(status=status, limit=limit)


async def backfill(store: Store, backfill_id: str) -> BackfillRequest:
    found = await store.get_backfill(backfill_id)
    if found is None:
        raise NotFound(f"no backfill {backfill_id!r}", hint="`eventflow backfills FILE` lists them")
    return found


def progress_text(request: BackfillRequest) -> str:
    """``120/1000 fired, 3 skipped``: how far a request is, for tables and the page."""
    planned = "?" if request.planned is None else str(request.planned)
    text = f"{request.fired}/{planned} fired, {request.skipped} skipped"
    if request.incomplete:
        text += f", {request.incomplete} incomplete"
    return text
