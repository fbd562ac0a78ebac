"""A backfill request: a durable row that the running pipeline carries out.

``eventflow backfill`` (with ``eventflow run`` going), ``POST /api/backfills`` and the status
page's form write one :class:`BackfillRequest`; the running process's
:class:`~eventflow.backfill_worker.BackfillWorker` picks it up, fires its partitions in
small batches at its rate and records its progress in the same row. The row says who asked
and when, what (rule, range, force, rate), how large the plan was and how far it got; a
cancel request is kept beside it, like a run's.

The row's columns are encoded here once for the three stores (SQLite, PostgreSQL and the
in-memory one keep the same tuples).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from eventflow.errors import StoreError

BackfillStatus = Literal["pending", "running", "done", "failed", "cancelled"]
BACKFILL_STATUSES: tuple[BackfillStatus, ...] = (
    "pending",
    "running",
    "done",
    "failed",
    "cancelled",
)
ACTIVE: tuple[BackfillStatus, ...] = ("pending", "running")


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    """One backfill: what was asked, by whom, and how far the running pipeline got."""

    id: str
    rule: str
    lo: str
    hi: str
    requested_by: str
    requested_at: datetime
    force: bool = False
    list_sources: bool = True
    rate: float | None = None
    """Partitions fired per second (None: ``engine.backfill_rate``)."""
    status: BackfillStatus = "pending"
    preview: int | None = None
    """Partitions the dry-run plan would fire when it was submitted."""
    planned: int | None = None
    """Partitions to fire, once the running pipeline planned it."""
    fired: int = 0
    skipped: int = 0
    """Partitions in the range that succeeded before (or fired live meanwhile)."""
    incomplete: int = 0
    message: str | None = None
    """Why nothing was found, or what failed."""
    cancel_requested: dict[str, str] | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def progressed(self, **changes: Any) -> BackfillRequest:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "from": self.lo,
            "to": self.hi,
            "force": self.force,
            "list_sources": self.list_sources,
            "rate": self.rate,
            "status": self.status,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at.isoformat(),
            "preview": self.preview,
            "planned": self.planned,
            "fired": self.fired,
            "skipped": self.skipped,
            "incomplete": self.incomplete,
            "message": self.message,
            "cancel_requested": self.cancel_requested,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def new_request(
    rule: str,
    lo: str,
    hi: str,
    by: str,
    now: datetime,
    *,
    force: bool = False,
    list_sources: bool = True,
    rate: float | None = None,
    preview: int | None = None,
) -> BackfillRequest:
    return BackfillRequest(
        id=f"bf-{uuid.uuid4().hex[:12]}",
        rule=rule,
        lo=lo,
        hi=hi,
        requested_by=by,
        requested_at=now,
        force=force,
        list_sources=list_sources,
        rate=rate,
        preview=preview,
        updated_at=now,
    )


# --- the row -------------------------------------------------------------------------------

COLUMNS = (
    "id, rule, lo, hi, force, list_sources, rate, status, requested_by, requested_at,"
    " preview, planned, fired, skipped, incomplete, message, cancel_requested, updated_at,"
    " finished_at"
)


def time_text(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def encode(r: BackfillRequest) -> dict[str, Any]:
    """The row's named parameters (the same for both SQL stores)."""
    return {
        "id": r.id,
        "rule": r.rule,
        "lo": r.lo,
        "hi": r.hi,
        "force": int(r.force),
        "list_sources": int(r.list_sources),
        "rate": r.rate,
        "status": r.status,
        "requested_by": r.requested_by,
        "requested_at": time_text(r.requested_at),
        "preview": r.preview,
        "planned": r.planned,
        "fired": r.fired,
        "skipped": r.skipped,
        "incomplete": r.incomplete,
        "message": r.message,
        "cancel_requested": None
        if r.cancel_requested is None
        else json.dumps(r.cancel_requested, separators=(",", ":")),
        "updated_at": time_text(r.updated_at),
        "finished_at": time_text(r.finished_at),
    }


def decode(row: Sequence[Any]) -> BackfillRequest:
    """A row in :data:`COLUMNS` order."""
    (id_, rule, lo, hi, force, listing, rate, status, by, at, preview, planned, fired,
     skipped, incomplete, message, cancel, updated, finished) = row  # fmt: skip
    return BackfillRequest(
        id=id_,
        rule=rule,
        lo=lo,
        hi=hi,
        requested_by=by,
        requested_at=datetime.fromisoformat(at),
        force=bool(force),
        list_sources=bool(listing),
        rate=None if rate is None else float(rate),
        status=status,
        preview=preview,
        planned=planned,
        fired=fired,
        skipped=skipped,
        incomplete=incomplete,
        message=message,
        cancel_requested=None if cancel is None else json.loads(cancel),
        updated_at=_parse(updated),
        finished_at=_parse(finished),
    )


def cancel_text(by: str, now: datetime) -> str:
    return json.dumps({"by": by, "at": now.astimezone(UTC).isoformat()}, separators=(",", ":"))


def not_cancellable(backfill_id: str, found: BackfillRequest | None) -> StoreError:
    if found is None:
        return StoreError(
            f"no backfill {backfill_id!r}", hint="`eventflow backfills FILE` lists them"
        )
    return StoreError(
        f"backfill {backfill_id} is {found.status}; only a pending or running backfill can be"
        " cancelled",
        hint="submit a new backfill to fire what it left",
    )
