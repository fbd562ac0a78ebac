"""The operators' actions on dead letters in every store: a redrive requested, a dead letter
discarded, and what a redrive did (committed with the engine batch that carried it out).

The queries are ``get_deadletter``, ``request_redrive``, ``discard_deadletter``,
``fetch_redrives`` and ``redrive_outcome`` of each store's ``queries.sql``; each change
appends one entry (``{action, by, at, error?}``) to the row's ``history``. The in-memory
store applies the same rules to its rows in :func:`memory_act` and :func:`memory_outcome`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from eventflow.errors import StoreConflict, StoreError
from eventflow.records import DeadLetter, DeadLetterOutcome
from eventflow.records import history_entry as entry
from eventflow.store import _codec as c

DeadLetterAction = Literal["redrive", "discard"]
DEADLETTER_ACTIONS: tuple[DeadLetterAction, ...] = ("redrive", "discard")


class DeadLetterRefused(StoreError):
    """An action on a dead letter that does not apply: no such dead letter, or its state
    (already redriven or discarded, a redrive already requested, no message kept)."""


def act_params(event_id: str, action: DeadLetterAction, by: str, now: datetime) -> dict[str, Any]:
    """The parameters of ``request_redrive`` or ``discard_deadletter``."""
    done = "redrive_requested" if action == "redrive" else "discarded"
    return {
        "event_id": event_id,
        "by": by,
        "at": c.dt_text(now),
        "entry": c.json_text(entry(done, by, now)),
    }


def outcome_params(o: DeadLetterOutcome) -> dict[str, Any]:
    """The parameters of ``redrive_outcome``."""
    return {
        "event_id": o.event_id,
        "status": o.status,
        "error": o.error,
        "entry": c.json_text(dict(o.entry), f"history of dead letter {o.event_id}"),
    }


def refused(event_id: str, letter: DeadLetter | None, action: DeadLetterAction) -> StoreError:
    """Why ``action`` changed nothing of the dead letter ``event_id`` (``letter`` as it is)."""
    listing = "list them with `eventflow deadletters FILE --status all`"
    if letter is None:
        return DeadLetterRefused(f"no dead letter {event_id!r}", hint=listing)
    if letter.status != "open":
        done = "redriven" if action == "redrive" else "discarded"
        return DeadLetterRefused(
            f"dead letter {event_id!r} is {letter.status}: only an open one can be {done}",
            hint=listing,
        )
    if letter.message is None:
        return DeadLetterRefused(
            f"dead letter {event_id!r} kept only an excerpt of its message (the sensor could"
            " not decode it, or it was larger than 1 MiB): it cannot be redriven",
            hint="send the message again at its source, then discard this dead letter",
        )
    return DeadLetterRefused(
        f"a redrive of dead letter {event_id!r} is already requested (by"
        f" {letter.requested_by}); the running pipeline carries it out within its poll"
        " interval",
        hint="`eventflow deadletters FILE show ID` shows its history",
    )


def not_requested(event_id: str) -> StoreConflict:
    """A redrive outcome whose request is gone (discarded, or carried out by another
    worker meanwhile): the batch is evaluated again without it."""
    return StoreConflict(f"the redrive of dead letter {event_id!r} is no longer requested")


def memory_act(
    row: c.DeadLetterRow | None, p: Mapping[str, Any], action: DeadLetterAction
) -> c.DeadLetterRow | None:
    """The row after ``action`` (:func:`act_params` ``p``), None when it does not apply."""
    if row is None or row.status != "open":
        return None
    history = _appended(row.history, p["entry"])
    if action == "discard":
        return row._replace(
            status="discarded", requested_by=None, requested_at=None, history=history
        )
    if row.message is None or row.requested_at is not None:
        return None
    return row._replace(requested_by=p["by"], requested_at=p["at"], history=history)


def memory_outcome(row: c.DeadLetterRow | None, p: Mapping[str, Any]) -> c.DeadLetterRow:
    """The row after a redrive's outcome (:func:`outcome_params` ``p``); raises
    :class:`StoreConflict` when the redrive is no longer requested."""
    if row is None or row.status != "open" or row.requested_at is None:
        raise not_requested(p["event_id"])
    return row._replace(
        status=p["status"],
        error=p["error"],
        requested_by=None,
        requested_at=None,
        history=_appended(row.history, p["entry"]),
    )


def _appended(history: str, item: str) -> str:
    return c.json_text([*c.json_loads(history), c.json_loads(item)])
