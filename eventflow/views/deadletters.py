"""Dead letters: observations that could not be processed, newest first; one in full
(its message, position and history); and the operators' actions on them (redrive and
discard, audited with who and when, and logged).

``eventflow deadletters``, ``GET/POST /api/deadletters...`` and the page all come here. A
redrive is a request the running pipeline carries out (:mod:`eventflow.redrive`); a discard
takes effect at once. Both act on open dead letters only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from eventflow.errors import EventflowError
from eventflow.log import get_logger
from eventflow.pipeline import CompiledPipeline
from eventflow.records import DeadLetter, DeadLetterStatus
from eventflow.redrive import preview
from eventflow.store._deadletters import DeadLetterRefused
from eventflow.types import Store
from eventflow.views import paging
from eventflow.views.paging import Page

Action = Literal["redrive", "discard"]
STATUS_CHOICES = ("open", "redriven", "discarded", "all")
"""What ``--status`` / ``?status=`` take; ``open`` by default, ``all`` for every status."""
SELECT_LIMIT = 10_000
"""Most dead letters one bulk action selects (repeat it for more)."""


class NothingSelected(EventflowError):
    """A bulk action was given no selector (ids, a sensor, a time range or all)."""


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """One dead letter: the event id it would have had, where it came from, what failed."""

    letter: DeadLetter

    def to_dict(self) -> dict[str, Any]:
        d = self.letter
        return {
            "event_id": d.event_id,
            "sensor": d.sensor,
            "position": dict(d.position),
            "error": d.error,
            "excerpt": d.excerpt,
            "time": d.time.isoformat(),
            "status": d.status,
            "redrivable": d.message is not None,
            "redrive_requested": None
            if d.requested_at is None
            else {"by": d.requested_by, "at": d.requested_at.isoformat()},
        }

    def to_detail(self) -> dict[str, Any]:
        """Everything, the kept message (payload included) and the history too."""
        return {
            **self.to_dict(),
            "message": None if self.letter.message is None else dict(self.letter.message),
            "history": [dict(h) for h in self.letter.history],
        }


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What an action did to one dead letter (or, in a dry run, would do)."""

    event_id: str
    action: Action
    done: bool
    detail: str
    """A redrive's preview (dry run), or why it was refused."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "action": self.action,
            "done": self.done,
            "detail": self.detail,
        }


def status_filter(status: str | None) -> DeadLetterStatus | None:
    """The store's filter for a ``--status`` choice (``all``: none)."""
    if status is None:
        return "open"
    if status not in STATUS_CHOICES:
        raise ValueError(f"status must be one of {', '.join(STATUS_CHOICES)}, not {status!r}")
    return None if status == "all" else status  # type: ignore[return-value]


async def deadletter_page(
    store: Store,
    *,
    sensor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[DeadLetterView]:
    """A page of dead letters, most recently recorded first, of ``sensor``, observed at or
    after ``since`` and before ``until``, with ``status`` (default ``open``), after the page
    whose ``next`` is ``cursor``, with the total the filters select."""
    after = paging.decode(cursor)[1] if cursor else None
    wanted = status_filter(status)
    found = await store.list_deadletters(
        limit + 1, sensor=sensor, since=since, until=until, after=after, status=wanted
    )  # one more than asked tells whether a next page exists
    total = await store.count_deadletters(sensor=sensor, since=since, until=until, status=wanted)
    items = [DeadLetterView(d) for d in found[:limit]]
    more = len(found) > limit and items
    last = items[-1].letter if more else None
    return Page(items, paging.encode(last.time, last.event_id) if last else None, total)


async def deadletter_detail(store: Store, event_id: str) -> DeadLetterView | None:
    found = await store.get_deadletter(event_id)
    return None if found is None else DeadLetterView(found)


Selected = tuple[str, DeadLetter | None]
"""An event id a bulk action names, and its dead letter (None: there is none)."""


async def select(
    store: Store,
    *,
    ids: Sequence[str] = (),
    sensor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    all_: bool = False,
) -> list[Selected]:
    """The dead letters a bulk action applies to: those of ``ids`` (any status: a refusal
    says why), or the open ones of ``sensor`` and the time range (every open one with
    ``all_``), oldest first."""
    if ids:
        return [(i, await store.get_deadletter(i)) for i in dict.fromkeys(ids)]
    if not (all_ or sensor or since or until):
        raise NothingSelected(
            "say which dead letters: their event ids, --sensor, --since/--until, or --all"
        )
    letters = await store.list_deadletters(
        SELECT_LIMIT, sensor=sensor, since=since, until=until, status="open"
    )
    return [(d.event_id, d) for d in reversed(letters)]


async def act(
    pipeline: CompiledPipeline,
    store: Store,
    letters: Sequence[Selected],
    action: Action,
    by: str,
    now: datetime,
    *,
    dry_run: bool = False,
) -> list[ActionResult]:
    """Request the redrive of, or discard, each of ``letters`` (audited: ``by``, ``now``,
    and a log line each); with ``dry_run``, only say what would happen (a redrive's
    preview evaluates the kept message against the current pipeline)."""
    log = get_logger(component="deadletters")
    results = []
    for event_id, letter in letters:
        if dry_run:
            results.append(
                ActionResult(event_id, action, False, _preview(pipeline, event_id, letter, action))
            )
            continue
        try:
            done = await store.act_on_deadletter(event_id, action, by, now)
        except DeadLetterRefused as exc:
            results.append(ActionResult(event_id, action, False, str(exc)))
            continue
        name = "deadletter_redrive_requested" if action == "redrive" else "deadletter_discarded"
        log.info(name, event_id=event_id, sensor=done.sensor, by=by)
        detail = (
            "the running pipeline redrives it within its poll interval"
            if action == "redrive"
            else "discarded"
        )
        results.append(ActionResult(event_id, action, True, detail))
    return results


def _preview(
    pipeline: CompiledPipeline, event_id: str, letter: DeadLetter | None, action: Action
) -> str:
    """What ``action`` would do (a dry run)."""
    if letter is None:
        return f"no dead letter {event_id!r}"
    if letter.status != "open":
        return f"it is {letter.status}: nothing would be done"
    return preview(pipeline, letter) if action == "redrive" else "would be discarded"
