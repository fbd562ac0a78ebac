"""The pauses of rules and sensors in every store: rows, and the one operation that writes them.

A pause or resume writes the ``pauses`` row (inserted, or deleted) and its ``pause_actions``
audit row in one transaction; the queries are ``insert_pause``, ``delete_pause``,
``record_pause_action``, ``list_pauses`` and ``list_pause_actions`` of each store's
``queries.sql``. The in-memory store keeps the same rows in :class:`MemoryPauses`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from eventflow.pauses import Pause, PauseAction, PauseActionName, PauseKind
from eventflow.store import _codec as c

PauseRow = tuple[str, str, str, str | None, str]
"""``(kind, name, paused_by, reason, since)``."""
ActionRow = tuple[str, str, str, str, str | None, str, Any]
"""``(kind, name, action, actor, reason, at, changed)``."""


def params(
    kind: PauseKind, name: str, by: str, reason: str | None, now: datetime
) -> dict[str, Any]:
    return {"kind": kind, "name": name, "actor": by, "reason": reason, "at": c.dt_text(now)}


def decode_pause(row: Sequence[Any]) -> Pause:
    kind, name, by, reason, since = row
    return Pause(cast(PauseKind, kind), name, by, reason, c.text_dt(since))


def decode_action(row: Sequence[Any]) -> PauseAction:
    kind, name, action, by, reason, at, changed = row
    return PauseAction(
        cast(PauseKind, kind),
        name,
        cast(PauseActionName, action),
        by,
        reason,
        c.text_dt(at),
        bool(changed),
    )


def sqlite_set_pause(
    conn: sqlite3.Connection,
    q: dict[str, str],
    kind: PauseKind,
    name: str,
    action: PauseActionName,
    by: str,
    reason: str | None,
    now: datetime,
) -> PauseAction:
    p = params(kind, name, by, reason, now)
    changed = conn.execute(q["insert_pause" if action == "pause" else "delete_pause"], p).rowcount
    conn.execute(q["record_pause_action"], {**p, "action": action, "changed": int(changed > 0)})
    return PauseAction(kind, name, action, by, reason, now, changed > 0)


async def postgres_set_pause(
    execute: Callable[[str, dict[str, Any]], Awaitable[int]],
    q: dict[str, str],
    kind: PauseKind,
    name: str,
    action: PauseActionName,
    by: str,
    reason: str | None,
    now: datetime,
) -> PauseAction:
    """``execute(sql, params)`` runs one statement in the caller's transaction and returns
    its row count."""
    p = params(kind, name, by, reason, now)
    changed = await execute(q["insert_pause" if action == "pause" else "delete_pause"], p)
    await execute(q["record_pause_action"], {**p, "action": action, "changed": changed > 0})
    return PauseAction(kind, name, action, by, reason, now, changed > 0)


@dataclass
class MemoryPauses:
    """The in-memory store's ``pauses`` and ``pause_actions`` tables."""

    pauses: dict[tuple[str, str], PauseRow] = field(default_factory=dict)
    actions: list[ActionRow] = field(default_factory=list)

    def set_pause(
        self,
        kind: PauseKind,
        name: str,
        action: PauseActionName,
        by: str,
        reason: str | None,
        now: datetime,
    ) -> PauseAction:
        at = c.dt_text(now)
        key = (kind, name)
        changed = (key not in self.pauses) if action == "pause" else (key in self.pauses)
        if changed and action == "pause":
            self.pauses[key] = (kind, name, by, reason, at)
        elif changed:
            del self.pauses[key]
        self.actions.append((kind, name, action, by, reason, at, changed))
        return PauseAction(kind, name, action, by, reason, now, changed)

    def list_pauses(self) -> list[Pause]:
        return [decode_pause(self.pauses[k]) for k in sorted(self.pauses)]

    def list_actions(self, limit: int) -> list[PauseAction]:
        return [decode_action(r) for r in reversed(self.actions[-limit:] if limit > 0 else [])]

    def paused_rules(self) -> set[str]:
        """The paused rules: a claim leaves their runs alone, and the runs of their alerts and
        hooks (``RULE:on_deadline``, ``RULE:on_failure``, ``RULE:on_missed``: the part before
        the ``:``)."""
        return {name for kind, name in self.pauses if kind == "rule"}
