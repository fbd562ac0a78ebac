"""Durable pause and resume of a rule or a sensor: the records, and the action itself.

A pause is a row in the state store (who, why, since) and every pause and resume asked for
is an audit row (who, when, why, whether it changed anything) and an audit log line
(``rule_paused``, ``sensor_resumed``, ...). What a pause does:

- a paused **rule** still takes its events: the engine commits them, the sources are
  acknowledged, the matching state advances and its timers fall due at their times, so a
  fire creates its run (one per fire key, as always). The dispatcher does not claim the runs
  of a paused rule (nor of its ``on_deadline`` alert): they are held, pending, until the
  resume, and then run once each (the run id is the fire key, unique in the store);
- a paused **sensor** stops reading: the runtime stops its task; the source keeps the data
  (the sensor's cursor did not move past what was committed) and a new instance reads on
  from the cursor at the resume.

The store is the truth: the ``eventflow pause`` of another process is seen by the running
pipeline at its next poll of the pauses (:mod:`eventflow.pause_watch`), a pause through the
pipeline's own API at once. The dispatcher's claim reads the pauses in the same statement,
so no run of a paused rule starts after the pause is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from eventflow.errors import EventflowError
from eventflow.events import JSON, utcnow
from eventflow.log import get_logger

if TYPE_CHECKING:
    from eventflow.pipeline import CompiledPipeline
    from eventflow.types import Store

PauseKind = Literal["rule", "sensor"]
PAUSE_KINDS: tuple[PauseKind, ...] = ("rule", "sensor")
PauseActionName = Literal["pause", "resume"]
REASON_MAX = 500
"""Longest reason kept (characters)."""


@dataclass(frozen=True, slots=True)
class Pause:
    """A rule or sensor that is paused now."""

    kind: PauseKind
    name: str
    by: str
    reason: str | None
    since: datetime

    def to_dict(self) -> dict[str, JSON]:
        return {
            "kind": self.kind,
            "name": self.name,
            "by": self.by,
            "reason": self.reason,
            "since": self.since.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class PauseAction:
    """One pause or resume an operator asked for (the audit trail)."""

    kind: PauseKind
    name: str
    action: PauseActionName
    by: str
    reason: str | None
    at: datetime
    changed: bool
    """False when the rule or sensor was paused (or running) already: nothing changed."""

    def to_dict(self) -> dict[str, JSON]:
        return {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "by": self.by,
            "reason": self.reason,
            "at": self.at.isoformat(),
            "changed": self.changed,
        }


class UnknownTarget(EventflowError):
    """The pipeline has no rule (or sensor) of that name."""


def check_target(pipeline: CompiledPipeline, kind: PauseKind, name: str) -> None:
    """Raise :class:`UnknownTarget` unless ``pipeline`` has a ``kind`` named ``name``."""
    known = pipeline.rules if kind == "rule" else pipeline.sensors
    if name not in known or (kind == "rule" and ":" in name):
        names = ", ".join(n for n in known if ":" not in n) or "none"
        raise UnknownTarget(f"no {kind} {name!r}; {kind}s: {names}")


async def act(
    pipeline: CompiledPipeline,
    store: Store,
    kind: PauseKind,
    name: str,
    action: PauseActionName,
    by: str,
    reason: str | None = None,
) -> PauseAction:
    """Pause or resume ``kind`` ``name`` of ``pipeline`` in ``store`` on behalf of ``by``:
    the pause row and its audit row in one transaction, then the audit log line.
    Idempotent: pausing what is paused keeps the first pause (``changed`` False)."""
    check_target(pipeline, kind, name)
    if reason is not None:
        reason = reason.strip()[:REASON_MAX] or None
    done = await store.set_pause(kind, name, action, by, reason, utcnow())
    _audit(done)
    return done


def _audit(done: PauseAction) -> None:
    """The audit log line of a pause or resume (who, when, what, why)."""
    log = get_logger(component="pauses").bind(
        **{done.kind: done.name}, by=done.by, changed=done.changed, at=done.at.isoformat()
    )
    if done.kind == "rule" and done.action == "pause":
        log.info("rule_paused", reason=done.reason)
    elif done.kind == "rule":
        log.info("rule_resumed")
    elif done.action == "pause":
        log.info("sensor_paused", reason=done.reason)
    else:
        log.info("sensor_resumed")
