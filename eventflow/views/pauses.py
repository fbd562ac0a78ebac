"""What is paused: each paused rule or sensor, by whom, since when, and how much it holds.

A paused rule holds the runs its fires created while it was paused (and any that were
pending when it was paused): its pending runs, which the dispatcher leaves alone until the
resume. ``eventflow status``, ``GET /api/rules``, ``GET /api/sensors``, ``GET /api/status``
and the page show this view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventflow.events import JSON
from eventflow.pauses import Pause
from eventflow.run_hooks import HOOKS
from eventflow.types import Store

ALERTS = ("on_deadline", *HOOKS)
"""The pseudo-rules a paused rule holds with its own runs: its alert and its hooks."""


@dataclass(frozen=True, slots=True)
class PauseView:
    pause: Pause
    held: int | None
    """Runs held (pending) of a paused rule, its ``on_deadline`` alert and its hooks; None for a
    sensor (a paused sensor reads nothing: the source keeps its data)."""

    def to_dict(self) -> dict[str, JSON]:
        return {**self.pause.to_dict(), "held": self.held}


async def pauses(store: Store) -> list[PauseView]:
    """Every pause, by kind and name, with what each paused rule holds."""
    found = []
    for p in await store.pauses():
        held = None
        if p.kind == "rule":
            held = await store.count_runs(rule=p.name, status="pending")
            for suffix in ALERTS:
                held += await store.count_runs(rule=f"{p.name}:{suffix}", status="pending")
        found.append(PauseView(p, held))
    return found


def by_name(views: list[PauseView], kind: str) -> dict[str, PauseView]:
    return {v.pause.name: v for v in views if v.pause.kind == kind}


def with_pause(item: dict[str, Any], view: PauseView | None) -> dict[str, Any]:
    """``item`` (a rule or sensor as a dict) with its ``paused`` entry (None: it runs)."""
    if view is None:
        return {**item, "paused": None}
    paused = view.to_dict()
    del paused["kind"], paused["name"]
    return {**item, "paused": paused}
