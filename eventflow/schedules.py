"""Expected partitions: the engine's side of ``expect: {every: ...}`` schedules.

Each rule with a schedule keeps one durable ``expect`` timer whose generation is the next
period to open, and a cursor (pseudo-sensor ``rules.<rule>``, key ``expect``) with the last
period opened and the schedule it counts for (a changed ``every`` starts afresh). Both are
written in the batch that opens the periods, so a crash neither skips a period nor opens
one twice. A timer that fell due while eventflow was stopped opens every period that began
meanwhile (at most :data:`CATCH_UP` per batch) at the next start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from eventflow.events import partition_key
from eventflow.pipeline import PRODUCED_SENSOR_PREFIX, CompiledPipeline, RuleRuntime
from eventflow.records import Changes, Timer
from eventflow.rules.core import EXPECT
from eventflow.rules.timing import Schedule
from eventflow.types import Store

CURSOR = "expect"
CATCH_UP = 1000
"""Most periods one batch opens for one rule; the rest follow in the next batches."""


@dataclass(frozen=True, slots=True)
class Expected:
    """A partition a schedule says is due from now on."""

    partition: dict[str, str]
    key: str


class Schedules:
    def __init__(self, pipeline: CompiledPipeline, store: Store) -> None:
        self.pipeline = pipeline
        self.store = store
        self.next: dict[str, int] = {}
        """Per rule: the period its ``expect`` timer opens next."""

    async def start(self, now: datetime) -> None:
        """Make sure each scheduled rule has its ``expect`` timer (idempotent)."""
        timers: list[Timer] = []
        for rule in self.pipeline.rules.values():
            schedule = rule.schedule
            if schedule is None:
                continue
            done = (await self.store.load_cursors(_sensor(rule.name))).get(CURSOR)
            k = schedule.index(rule.schedule_start or now)
            if isinstance(done, dict) and done.get("schedule") == _key(schedule):
                k = int(done["period"]) + 1
            self.next[rule.name] = k
            timers.append(Timer(EXPECT, rule.name, _key(schedule), k, schedule.start(k)))
        if timers:
            async with self.store.transaction() as tx:
                await tx.apply(Changes(timers_add=timers))

    def due(
        self, rule: RuleRuntime, timer: Timer, now: datetime, changes: Changes
    ) -> list[Expected]:
        """The partitions of the periods that began by ``now``; records the cursor and the
        next timer in ``changes``. Empty for a stale timer (the schedule changed)."""
        schedule = rule.schedule
        if schedule is None or timer.key != _key(schedule):
            return []  # the timer of a schedule the pipeline no longer has
        if timer.generation < self.next.get(rule.name, timer.generation):
            return []  # opened already (another worker may have moved the schedule on)
        periods = schedule.due(timer.generation - 1, now, CATCH_UP)
        if not periods:
            return []
        last = periods[-1]
        self.next[rule.name] = last + 1
        changes.cursors[(_sensor(rule.name), CURSOR)] = {"schedule": timer.key, "period": last}
        changes.timers_add.append(
            Timer(EXPECT, rule.name, _key(schedule), last + 1, schedule.start(last + 1))
        )
        out = []
        for k in periods:
            partition = rule.spec.key_of(schedule.partition_of(k))
            out.append(Expected(partition, partition_key(partition)))
        return out


def _key(schedule: Schedule) -> str:
    """The key of a rule's ``expect`` timer: it belongs to the rule's schedule, not to a
    partition, and a changed schedule does not take over the old one's timer."""
    return partition_key({"every": str(schedule.every.total_seconds()), **schedule.partition})


def _sensor(rule: str) -> str:
    return PRODUCED_SENSOR_PREFIX + rule
