"""A tiny engine for the pure rules core: states, durable timers, event dedupe, checkpoints.

It does what the real engine does with the core's effects, without a store: timers fall
due in order when the clock advances, an event id is processed once, and a crash throws
away everything after the last checkpoint (the inputs since then are delivered again).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime

from eventflow.events import InputRef, partition_key
from eventflow.rules import (
    CancelTimer,
    DeadlineMissed,
    Expired,
    Fire,
    LateInput,
    MatchState,
    RuleSpec,
    ScheduleTimer,
    Step,
    on_expected,
    on_input,
    on_timer,
)

TimerKey = tuple[str, str, int]


@dataclass
class Durable:
    """What a commit makes durable."""

    states: dict[str, MatchState] = field(default_factory=dict)
    timers: dict[TimerKey, datetime] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    fires: dict[str, Fire] = field(default_factory=dict)
    """By run id: a run is created once."""
    expired: list[Expired] = field(default_factory=list)
    missed: list[DeadlineMissed] = field(default_factory=list)
    late: list[LateInput] = field(default_factory=list)


class Sim:
    def __init__(self, spec: RuleSpec) -> None:
        self.spec = spec
        self.d = Durable()
        self.checkpoint = copy.deepcopy(self.d)
        self.now: datetime | None = None

    def commit(self) -> None:
        self.checkpoint = copy.deepcopy(self.d)

    def crash(self) -> None:
        self.d = copy.deepcopy(self.checkpoint)

    def advance(self, now: datetime) -> None:
        """Handle every timer due by ``now``, earliest first."""
        self.now = now
        while True:
            due = [(t, k) for k, t in self.d.timers.items() if t <= now]
            if not due:
                return
            when, (kind, key, gen) = min(due)
            del self.d.timers[(kind, key, gen)]
            step = on_timer(self.spec, self.d.states.get(key), kind, gen, when)
            if step is not None:
                self._apply(step)

    def feed(self, ref: InputRef, now: datetime) -> None:
        self.advance(now)
        if ref.event_id in self.d.seen:
            return
        self.d.seen.add(ref.event_id)
        key = partition_key(self.spec.key_of(ref.partition, ref.dataset))
        self._apply(on_input(self.spec, self.d.states.get(key), ref, now))

    def expect(self, partition: dict[str, str], now: datetime) -> None:
        self.advance(now)
        key = partition_key(self.spec.key_of(partition))
        self._apply(on_expected(self.spec, self.d.states.get(key), partition, now))

    def _apply(self, step: Step) -> None:
        self.d.states[step.state.key] = step.state
        for e in step.effects:
            if isinstance(e, Fire):
                assert e.run_id not in self.d.fires, "a run id was created twice"
                self.d.fires[e.run_id] = e
            elif isinstance(e, Expired):
                self.d.expired.append(e)
            elif isinstance(e, DeadlineMissed):
                self.d.missed.append(e)
            elif isinstance(e, LateInput):
                self.d.late.append(e)
            elif isinstance(e, ScheduleTimer):
                self.d.timers[(e.kind, e.key, e.generation)] = e.due
            elif isinstance(e, CancelTimer):
                self.d.timers.pop((e.kind, e.key, e.generation), None)
