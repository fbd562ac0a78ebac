"""The rules core: how one rule's state for one partition key changes when an input arrives.

Everything here is pure and synchronous: the engine loads a :class:`MatchState`, calls
:func:`on_input` or :func:`on_expiry` with the time it read once for the whole batch, and
carries out the returned effects in one store transaction. The same inputs in any order
fire the same partition keys, and the ids of runs and timers are derived from
``(rule, partition key, generation)`` so that a replayed input cannot fire twice.

A *generation* is one firing of one partition key. It opens with the first input, fires
when the rule's condition holds (``all`` inputs present, or ``any``), and a later update to
an input of a fired partition opens the next generation (``on_update: rerun``, the default)
or is ignored (``on_update: ignore``). An ``all`` join with ``within`` that is still missing
inputs when the window closes expires; the next input opens a new generation.

On top of that (each optional, see :class:`RuleSpec`): a condition tree (``all``/``any``/
``at_least`` with ``count`` leaves), a quiet period (fire only once the inputs have not
changed for ``quiet``), a per-partition deadline (``eventflow.deadline.missed``, optionally
a degraded run with what arrived), a policy for late data of closed partitions, and
batches (one run per ``max_events`` inputs or ``max_wait``). Every wait is a durable timer
the core asks for with :class:`ScheduleTimer` and handles in :func:`on_timer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from eventflow.events import InputRef, Partition, digest, partition_key
from eventflow.rules.expr import Condition, holds
from eventflow.rules.expr import missing as missing_of
from eventflow.rules.timing import DeadlineExpr
from eventflow.values import value

Mode = Literal["all", "any", "at_least"]
OnUpdate = Literal["rerun", "ignore"]
Late = Literal["rerun", "ignore", "event"]
OnDeadline = Literal["event", "run_partial"]
Status = Literal["open", "fired", "expired", "missed"]
"""``missed``: open, and its deadline passed (it still fires when its inputs complete)."""
DeadlineState = Literal["pending", "met", "missed"]

EXPIRY = "expiry"
QUIET = "quiet"
BATCH = "batch"
DEADLINE = "deadline"
EXPECT = "expect"
"""Timer kinds. Deadline timers are per partition (generation 0); ``expect`` timers are
per rule (generation = the schedule's period)."""
PARTITION_TIMER = 0
OPEN = ("open", "missed")


@dataclass(frozen=True, slots=True)
class BatchSpec:
    """Fire one run per ``max_events`` inputs, or ``max_wait`` after a batch's first input."""

    max_events: int | None = None
    max_wait: timedelta | None = None


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """What the core needs to know about a rule (compiled from the pipeline config)."""

    name: str
    mode: Mode
    datasets: tuple[str, ...]
    by: tuple[str, ...]
    within: timedelta | None = None
    on_update: OnUpdate = "rerun"
    condition: Condition | None = None
    """A condition tree; None: ``mode`` over ``datasets``, one partition each."""
    quiet: timedelta | None = None
    late: Late | None = None
    """Inputs of fired or expired partitions; None: what ``on_update`` says."""
    deadline: DeadlineExpr | None = None
    on_deadline: OnDeadline = "event"
    batch: BatchSpec | None = None
    keys: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per dataset keyed differently: rule variable -> template of the dataset's variables."""

    def key_of(self, partition: Partition, dataset: str | None = None) -> dict[str, str]:
        """The rule's partition key: the ``by`` variables of a dataset partition (through
        the dataset's ``vars`` templates where it has them)."""
        if self.keys and dataset is not None and dataset in self.keys:
            templates = self.keys[dataset]
            return {
                v: _fill(templates[v], partition) if v in templates else partition[v]
                for v in self.by
            }
        return {v: partition[v] for v in self.by}

    def late_policy(self, status: Status) -> Late:
        """What an input of a ``status`` (fired or expired) partition does."""
        if self.late is not None:
            return self.late
        return "ignore" if self.on_update == "ignore" and status == "fired" else "rerun"

    def satisfied(self, inputs: Mapping[str, tuple[InputRef, ...]]) -> bool:
        if self.condition is not None:
            return holds(self.condition, inputs)
        if self.mode == "any":
            return any(inputs.values())
        return all(map(inputs.get, self.datasets))


@value
class MatchState:
    """One rule's progress for one partition key, as kept in the store between batches.

    ``inputs`` maps each dataset to the events of the current generation, one per dataset
    partition (a newer event for the same dataset partition replaces the older one).
    """

    rule: str
    key: str
    partition: Mapping[str, str]
    generation: int = 1
    status: Status = "open"
    inputs: Mapping[str, tuple[InputRef, ...]] = field(default_factory=dict)
    opened_at: datetime | None = None
    expires_at: datetime | None = None
    fired_at: datetime | None = None
    updated_at: datetime | None = None
    deadline_at: datetime | None = None
    deadline: DeadlineState | None = None
    quiet_until: datetime | None = None
    """Set while the condition holds and the quiet period runs: when it would fire."""
    partial: bool = False
    """The fired generation was a degraded run (``on_deadline: run_partial``)."""
    late: int = 0
    """Inputs that came after the partition closed and were ignored or published."""
    version: str | None = None
    """The rule version under which this generation opened (set by the engine; None for
    matches opened before versions were recorded). The core carries it, never sets it."""

    def arrived(self) -> tuple[InputRef, ...]:
        return tuple(ref for refs in self.inputs.values() for ref in refs)

    def missing(self, spec: RuleSpec) -> tuple[str, ...]:
        if spec.condition is not None:
            return missing_of(spec.condition, self.inputs)
        return tuple(d for d in spec.datasets if not self.inputs.get(d))

    def has_event(self, event_id: str) -> bool:
        for refs in self.inputs.values():  # plain loops: this is on every evaluation's path
            for ref in refs:
                if ref.event_id == event_id:
                    return True
        return False

    def to_dict(self) -> dict[str, Any]:
        data = {
            "rule": self.rule,
            "key": self.key,
            "partition": dict(self.partition),
            "generation": self.generation,
            "status": self.status,
            "inputs": {d: [r.to_dict() for r in refs] for d, refs in self.inputs.items()},
            "opened_at": _iso(self.opened_at),
            "expires_at": _iso(self.expires_at),
            "fired_at": _iso(self.fired_at),
            "updated_at": _iso(self.updated_at),
        }
        if self.deadline is not None:  # the optional parts only when used: rows stay small
            data["deadline_at"] = _iso(self.deadline_at)
            data["deadline"] = self.deadline
        if self.quiet_until is not None:
            data["quiet_until"] = _iso(self.quiet_until)
        if self.partial:
            data["partial"] = True
        if self.late:
            data["late"] = self.late
        if self.version is not None:
            data["version"] = self.version
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MatchState:
        return cls(
            rule=data["rule"],
            key=data["key"],
            partition=dict(data["partition"]),
            generation=int(data["generation"]),
            status=data["status"],
            inputs={
                d: tuple(InputRef.from_dict(r) for r in refs) for d, refs in data["inputs"].items()
            },
            opened_at=_dt(data.get("opened_at")),
            expires_at=_dt(data.get("expires_at")),
            fired_at=_dt(data.get("fired_at")),
            updated_at=_dt(data.get("updated_at")),
            deadline_at=_dt(data.get("deadline_at")),
            deadline=data.get("deadline"),
            quiet_until=_dt(data.get("quiet_until")),
            partial=bool(data.get("partial", False)),
            late=int(data.get("late", 0)),
            version=data.get("version"),
        )


@value
class Fire:
    """Create the run for ``(rule, key, generation)`` with these inputs."""

    rule: str
    key: str
    partition: Mapping[str, str]
    generation: int
    inputs: tuple[InputRef, ...]
    partial: bool = False
    """A degraded run at the deadline: ``missing`` did not arrive."""
    missing: tuple[str, ...] = ()

    @property
    def run_id(self) -> str:
        return run_id_for(self.rule, self.key, self.generation)


@value
class Expired:
    """A partial match closed its ``within`` window without all inputs: publish it."""

    rule: str
    key: str
    partition: Mapping[str, str]
    generation: int
    arrived: tuple[InputRef, ...]
    missing: tuple[str, ...]
    opened_at: datetime | None


@value
class DeadlineMissed:
    """A partition was not fired by its deadline: publish what arrived and what is missing.

    ``fired_late`` when it fired after the deadline before the timer was handled;
    ``partial_run`` names the degraded run fired with it (``on_deadline: run_partial``).
    """

    rule: str
    key: str
    partition: Mapping[str, str]
    generation: int
    deadline: datetime
    arrived: tuple[InputRef, ...]
    missing: tuple[str, ...]
    fired_late: bool = False
    partial_run: str | None = None


@value
class LateInput:
    """An input of a fired or expired partition under ``late: event``: publish it."""

    rule: str
    key: str
    partition: Mapping[str, str]
    generation: int
    status: str
    ref: InputRef


@value
class ScheduleTimer:
    """Write a durable timer row that feeds :func:`on_expiry` when it falls due."""

    kind: str
    rule: str
    key: str
    generation: int
    due: datetime


@value
class CancelTimer:
    kind: str
    rule: str
    key: str
    generation: int


@value
class Ignored:
    """An input changed nothing, and why (logged, visible in ``why``)."""

    rule: str
    key: str
    event_id: str
    reason: str


Effect = Fire | Expired | DeadlineMissed | LateInput | ScheduleTimer | CancelTimer | Ignored


@value
class Step:
    """The state after one input and the effects the engine must carry out."""

    state: MatchState
    effects: tuple[Effect, ...] = ()


def run_id_for(rule: str, key: str, generation: int) -> str:
    """The run id of a fire: the same ``(rule, key, generation)`` always gives the same id."""
    return "run_" + digest("run", rule, key, generation)[:20]


def on_input(
    spec: RuleSpec, state: MatchState | None, ref: InputRef, now: datetime, key: str | None = None
) -> Step:
    """Advance ``spec``'s match for ``ref``'s partition key by one arriving input.

    ``key`` is ``partition_key(spec.key_of(ref.partition))`` when the caller has it already.
    """
    if spec.batch is not None:
        return _batch_input(spec, state, ref, now, key)
    effects: list[Effect] = []
    partition: Mapping[str, str]
    expires_at = deadline_at = None
    deadline: DeadlineState | None = None
    status: Status = "open"
    late = 0
    version: str | None = None
    if state is None:
        partition = spec.key_of(ref.partition, ref.dataset)
        generation, inputs, opened_at = 1, {}, None
        key = key or partition_key(partition)
        if spec.deadline is not None:
            deadline_at = _deadline_of(spec, partition, key, ref.event_id, effects)
            if deadline_at is not None:
                deadline = "pending"
                effects.append(
                    ScheduleTimer(DEADLINE, spec.name, key, PARTITION_TIMER, deadline_at)
                )
    else:
        if state.has_event(ref.event_id):
            return Step(state, (Ignored(spec.name, state.key, ref.event_id, "duplicate"),))
        partition, key = state.partition, state.key
        deadline_at, deadline, late = state.deadline_at, state.deadline, state.late
        if state.status == "fired" or state.status == "expired":
            policy = spec.late_policy(state.status)
            if policy != "rerun":
                return _late(spec, state, ref, policy, now)
            # The update opens the next generation; a fired one carries its inputs over.
            inputs = dict(state.inputs) if state.status == "fired" else {}
            generation, opened_at = state.generation + 1, None
        else:
            generation, inputs, opened_at = state.generation, dict(state.inputs), state.opened_at
            expires_at, status, version = state.expires_at, state.status, state.version

    inputs[ref.dataset] = _with(inputs.get(ref.dataset, ()), ref)
    if opened_at is None:
        opened_at = now
        if spec.within is not None and spec.mode != "any":
            expires_at = now + spec.within
            effects.append(ScheduleTimer(EXPIRY, spec.name, key, generation, expires_at))

    new = MatchState(
        spec.name, key, partition, generation, status, inputs, opened_at, expires_at, None, now,
        deadline_at, deadline, None, False, late, version,
    )  # fmt: skip
    if not spec.satisfied(inputs):
        return Step(new, tuple(effects))
    if spec.quiet is not None:  # wait until the inputs have been still for `quiet`
        if expires_at is not None:
            effects.append(CancelTimer(EXPIRY, spec.name, key, generation))
        until = now + spec.quiet
        effects.append(ScheduleTimer(QUIET, spec.name, key, generation, until))
        return Step(replace(new, expires_at=None, quiet_until=until), tuple(effects))
    return _fire(spec, new, now, effects)


def on_timer(
    spec: RuleSpec, state: MatchState | None, kind: str, generation: int, now: datetime
) -> Step | None:
    """Handle a timer that fell due; None when it is stale (the match moved on)."""
    if kind == EXPIRY:
        return on_expiry(spec, state, generation, now)
    if state is None:
        return None
    if kind == DEADLINE:
        return _deadline_due(spec, state, now)
    if state.generation != generation or state.status not in OPEN:
        return None
    if kind == QUIET:
        if state.quiet_until is None or state.quiet_until > now:
            return None
        return _fire(spec, state, now, [])  # (the fired state has no quiet_until)
    if kind == BATCH:
        if not state.inputs or spec.batch is None or spec.batch.max_wait is None:
            return None
        if state.opened_at is None or state.opened_at + spec.batch.max_wait > now:
            return None
        return _fire(spec, state, now, [])
    return None


def on_expected(
    spec: RuleSpec, state: MatchState | None, partition: Mapping[str, str], now: datetime
) -> Step:
    """A schedule says ``partition`` is due from now on: open it (with no inputs) so that
    its deadline runs even if nothing ever arrives. A known partition is left as it is."""
    if state is not None:
        return Step(state)
    partition = spec.key_of(partition)
    key = partition_key(partition)
    effects: list[Effect] = []
    deadline_at: datetime | None = None
    deadline: DeadlineState | None = None
    if spec.deadline is not None:
        deadline_at = _deadline_of(spec, partition, key, "", effects)
        if deadline_at is not None:
            deadline = "pending"
            effects.append(ScheduleTimer(DEADLINE, spec.name, key, PARTITION_TIMER, deadline_at))
    new = MatchState(
        spec.name, key, partition, 1, "open", {}, None, None, None, now, deadline_at, deadline
    )
    return Step(new, tuple(effects))


def on_expiry(
    spec: RuleSpec, state: MatchState | None, generation: int, now: datetime
) -> Step | None:
    """Close an open match whose ``within`` window has ended; None when the timer is stale."""
    if (
        state is None
        or state.status not in OPEN
        or state.generation != generation
        or state.expires_at is None
        or state.expires_at > now
    ):
        return None
    expired = Expired(
        spec.name,
        state.key,
        state.partition,
        state.generation,
        state.arrived(),
        state.missing(spec),
        state.opened_at,
    )
    return Step(replace(state, status="expired", updated_at=now), (expired,))


def _fire(
    spec: RuleSpec, state: MatchState, now: datetime, effects: list[Effect], partial: bool = False
) -> Step:
    """``state`` fires now: cancel its pending timers, settle its deadline, create the run."""
    name, key, generation = spec.name, state.key, state.generation
    if state.expires_at is not None:
        effects.append(CancelTimer(EXPIRY, name, key, generation))
    if spec.batch is not None and spec.batch.max_wait is not None:
        effects.append(CancelTimer(BATCH, name, key, generation))
    refs = tuple([r for rs in state.inputs.values() for r in rs])
    missing = state.missing(spec) if partial else ()
    fire = Fire(name, key, state.partition, generation, refs, partial, missing)
    deadline = state.deadline
    if deadline == "pending" and not partial:
        effects.append(CancelTimer(DEADLINE, name, key, PARTITION_TIMER))
        assert state.deadline_at is not None
        deadline = "met"
        if state.deadline_at < now:  # fired, but after its deadline: that is a miss too
            deadline = "missed"
            effects.append(
                DeadlineMissed(
                    name, key, state.partition, generation, state.deadline_at, refs, (), True
                )
            )
    effects.append(fire)
    s = state
    new = MatchState(
        s.rule,
        key,
        s.partition,
        generation,
        "fired",
        s.inputs,
        s.opened_at,
        None,
        now,
        now,
        s.deadline_at,
        deadline,
        None,
        partial,
        s.late,
        s.version,
    )  # fmt: skip  (positional: this is on every fire's path, and replace() costs 3x)
    return Step(new, tuple(effects))


def _deadline_due(spec: RuleSpec, state: MatchState, now: datetime) -> Step | None:
    if state.deadline != "pending" or state.deadline_at is None or state.deadline_at > now:
        return None
    arrived, missing = state.arrived(), state.missing(spec)
    if state.status not in OPEN:  # expired: nothing fired by the deadline
        missing = missing or tuple(spec.datasets)
    run: str | None = None
    effects: list[Effect] = []
    s = state
    new = MatchState(
        s.rule,
        s.key,
        s.partition,
        s.generation,
        "missed" if s.status in OPEN else s.status,
        s.inputs,
        s.opened_at,
        s.expires_at,
        s.fired_at,
        now,
        s.deadline_at,
        "missed",
        s.quiet_until,
        s.partial,
        s.late,
        s.version,
    )  # fmt: skip  (positional: 100,000 deadlines may fall due at once)
    if state.status in OPEN and spec.on_deadline == "run_partial" and arrived:
        run = run_id_for(spec.name, state.key, state.generation)
        step = _fire(spec, new, now, [], partial=True)
        new, effects = step.state, list(step.effects)
    missed = DeadlineMissed(
        spec.name, state.key, state.partition, state.generation, state.deadline_at, arrived,
        missing, False, run,
    )  # fmt: skip
    return Step(new, (missed, *effects))


def _late(spec: RuleSpec, state: MatchState, ref: InputRef, policy: Late, now: datetime) -> Step:
    new = replace(state, late=state.late + 1, updated_at=now)
    if policy == "event":
        late = LateInput(spec.name, state.key, state.partition, state.generation, state.status, ref)
        return Step(new, (late,))
    option = "late: ignore" if spec.late is not None else "on_update: ignore"
    reason = f"update of a {state.status} partition ({option})"
    return Step(new, (Ignored(spec.name, state.key, ref.event_id, reason),))


def _batch_input(
    spec: RuleSpec, state: MatchState | None, ref: InputRef, now: datetime, key: str | None
) -> Step:
    """Add ``ref`` to the open batch of its key (opening one), firing it when full."""
    assert spec.batch is not None
    if state is not None and state.has_event(ref.event_id):
        return Step(state, (Ignored(spec.name, state.key, ref.event_id, "duplicate"),))
    effects: list[Effect] = []
    if state is None or state.status not in OPEN:
        partition = (
            state.partition if state is not None else spec.key_of(ref.partition, ref.dataset)
        )
        key = state.key if state is not None else key or partition_key(partition)
        generation = state.generation + 1 if state is not None else 1
        new = MatchState(spec.name, key, partition, generation, "open", {}, now)
        if spec.batch.max_wait is not None:
            due = now + spec.batch.max_wait
            effects.append(ScheduleTimer(BATCH, spec.name, key, generation, due))
    else:
        new = state
    inputs = dict(new.inputs)
    inputs[ref.dataset] = (*inputs.get(ref.dataset, ()), ref)
    new = replace(new, inputs=inputs, updated_at=now)
    limit = spec.batch.max_events
    if limit is not None and sum(map(len, inputs.values())) >= limit:
        return _fire(spec, new, now, effects)
    return Step(new, tuple(effects))


def _deadline_of(
    spec: RuleSpec, partition: Mapping[str, str], key: str, event_id: str, effects: list[Effect]
) -> datetime | None:
    assert spec.deadline is not None
    try:
        return spec.deadline.at(partition)
    except ValueError as exc:
        reason = f"no deadline: `{spec.deadline.text}` for this partition: {exc}"
        effects.append(Ignored(spec.name, key, event_id, reason))
        return None


def _fill(template: str, partition: Partition) -> str:
    """``{var}`` placeholders of ``template`` replaced by the partition's values."""
    for var, val in partition.items():
        template = template.replace("{" + var + "}", val)
    return template


def _with(refs: tuple[InputRef, ...], ref: InputRef) -> tuple[InputRef, ...]:
    """``refs`` with ``ref`` added, replacing an older event for the same dataset partition."""
    if not refs:
        return (ref,)
    partition = ref.partition
    return (*[r for r in refs if r.partition != partition], ref)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
