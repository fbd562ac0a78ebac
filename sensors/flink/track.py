"""What the Flink sensor has announced of each job, and what is new since (pure).

The cursor keeps, per job id, the last state announced (with the time Flink says the job
entered it), the id of the last completed checkpoint announced, and the end of the last
period of event time announced. Every announcement's source position is made of those
values (job id and state and its time; job id and checkpoint id; job id and period), so an
announcement repeated after a crash has the same event id and is recorded once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eventflow.plugin import JSON

STATES = (
    "INITIALIZING",
    "CREATED",
    "RUNNING",
    "RECONCILING",
    "FAILING",
    "RESTARTING",
    "CANCELLING",
    "SUSPENDED",
    "FAILED",
    "CANCELED",
    "FINISHED",
)
"""Flink's job states, in the order of a job's life (ties of the same millisecond)."""
TERMINAL = frozenset({"FAILED", "CANCELED", "FINISHED"})
"""States a job never leaves."""
NO_WATERMARK = -(2**63)
"""Flink's watermark before the first one (``Long.MIN_VALUE``)."""
END_OF_INPUT = 2**63 - 1
"""The watermark after the last record of a bounded input (``Long.MAX_VALUE``)."""
LAST_TIME = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z in epoch ms: a watermark past it is taken for the end of input."""
MAX_PERIODS_PER_POLL = 1000
"""Periods announced per job and poll at most (a `since` far back announces in steps)."""


@dataclass(frozen=True, slots=True)
class JobCursor:
    """What was announced of one job: the sensor's cursor entry ``job:ID``."""

    name: str
    state: str | None = None
    state_at: int = 0
    """Epoch ms at which the job entered ``state`` (Flink's ``timestamps``)."""
    checkpoint: int = 0
    """Id of the last completed checkpoint or savepoint announced."""
    period: int | None = None
    """End (epoch ms) of the last period announced; None before the first watermark."""
    high: int | None = None
    """The highest watermark seen (epoch ms): where a finished input's last period ends."""
    done: bool = False
    """The job ended and everything about it was announced: it is not read again."""

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"name": self.name, "state": self.state, "at": self.state_at,
                                "checkpoint": self.checkpoint}  # fmt: skip
        if self.period is not None:
            out["period"] = self.period
        if self.high is not None:
            out["high"] = self.high
        if self.done:
            out["done"] = True
        return out

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> JobCursor:
        return cls(
            name=str(value.get("name", "")),
            state=value.get("state"),
            state_at=int(value.get("at", 0)),
            checkpoint=int(value.get("checkpoint", 0)),
            period=None if value.get("period") is None else int(value["period"]),
            high=None if value.get("high") is None else int(value["high"]),
            done=bool(value.get("done", False)),
        )


def _rank(state: str | None) -> int:
    return STATES.index(state) if state in STATES else -1


def new_states(cursor: JobCursor, timestamps: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The states the job entered since ``cursor``'s, oldest first, as (state, epoch ms).

    ``timestamps`` is the job's ``timestamps`` (the last time it entered each state, 0 for
    never): a job that went RUNNING, RESTARTING and RUNNING again between two polls gives
    RESTARTING then RUNNING (Flink keeps only the last time of each state)."""
    last = (cursor.state_at, _rank(cursor.state))
    found = []
    for state, at in timestamps.items():
        if not isinstance(at, int) or isinstance(at, bool) or at <= 0:
            continue
        if (at, _rank(state)) > last:
            found.append((at, _rank(state), str(state)))
    return [(state, at) for at, _, state in sorted(found)]


def new_checkpoints(cursor: JobCursor, body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Completed checkpoints and savepoints after ``cursor``'s, by id, from the answer of
    ``/jobs/:id/checkpoints`` (its ``history``, which holds the last few, and ``latest``)."""
    found: dict[int, dict[str, Any]] = {}
    latest = body.get("latest") or {}
    candidates: list[Any] = list(body.get("history") or [])
    if isinstance(latest, Mapping):
        candidates += [latest.get("completed"), latest.get("savepoint")]
    for item in candidates:
        if not isinstance(item, Mapping) or item.get("status") != "COMPLETED":
            continue
        cid = item.get("id")
        if isinstance(cid, int) and cid > cursor.checkpoint:
            found[cid] = dict(item)
    return [found[cid] for cid in sorted(found)]


def watermark_of(vertices: Iterable[Sequence[Mapping[str, Any]]]) -> int | None:
    """The job's watermark: the lowest input watermark of its subtasks, over the vertices
    that report one (a source vertex has no input, so reports none). None while a vertex
    has had no watermark yet, or no vertex reports one."""
    lowest: int | None = None
    for subtasks in vertices:
        for item in subtasks:
            try:
                value = int(item["value"])
            except (KeyError, TypeError, ValueError):
                continue
            if value == NO_WATERMARK:
                return None
            lowest = value if lowest is None else min(lowest, value)
    return lowest


@dataclass(frozen=True, slots=True)
class Periods:
    """What a watermark reading gives: the periods passed, and the cursor after them."""

    ends: list[int] = field(default_factory=list)
    """Ends (epoch ms) of the periods announced now, in order."""
    cursor: JobCursor | None = None
    """The cursor after them (None: unchanged)."""
    keep: bool = False
    """Whether the cursor changed in a way to write even without a period announced (the
    first watermark of a job, or the highest watermark entering a new period)."""


def passed(
    cursor: JobCursor,
    watermark: int,
    every: int,
    lateness: int,
    since: int | None,
    limit: int = MAX_PERIODS_PER_POLL,
) -> Periods:
    """The periods (``every`` ms long, aligned to the epoch) whose end plus ``lateness``
    the ``watermark`` has reached, after the last one announced. The first period of a job
    is the one ``since`` falls in or, without it, the one the first watermark (less the
    lateness) falls in. At the end of a bounded input (``END_OF_INPUT``) the periods up to
    the one holding the highest watermark seen before are announced: the last partition of
    a stream closes when its input ends (a watermark past :data:`LAST_TIME` counts as
    that too)."""
    if watermark > LAST_TIME:  # Long.MAX_VALUE: the input ended
        if cursor.high is None:
            return Periods()
        reach = -(-cursor.high // every) * every  # the end of the period holding `high`
        high = cursor.high
    else:
        reach = watermark - lateness
        high = watermark if cursor.high is None else max(cursor.high, watermark)
    period = cursor.period
    if period is None:
        start = since if since is not None else reach
        period = (start // every) * every
    ends: list[int] = []
    end = period + every
    while end <= reach and len(ends) < limit:
        ends.append(end)
        period = end
        end += every
    new = replace(cursor, period=period, high=high)
    if new == cursor:
        return Periods()
    keep = cursor.period is None or cursor.high is None or high // every != cursor.high // every
    return Periods(ends, new, keep)
