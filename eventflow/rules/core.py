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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from eventflow.events import InputRef, Partition, digest, partition_key
from eventflow.values import value

Mode = Literal["all", "any"]
OnUpdate = Literal["rerun", "ignore"]
Status = Literal["open", "fired", "expired"]

EXPIRY = "expiry"


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """What the core needs to know about a rule (compiled from the pipeline config)."""

    name: str
    mode: Mode
    datasets: tuple[str, ...]
    by: tuple[str, ...]
    within: timedelta | None = None
    on_update: OnUpdate = "rerun"

    def key_of(self, partition: Partition) -> dict[str, str]:
        """The rule's partition key: the ``by`` variables of a dataset partition."""
        return {v: partition[v] for v in self.by}


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

    def arrived(self) -> tuple[InputRef, ...]:
        return tuple(ref for refs in self.inputs.values() for ref in refs)

    def missing(self, spec: RuleSpec) -> tuple[str, ...]:
        return tuple(d for d in spec.datasets if not self.inputs.get(d))

    def has_event(self, event_id: str) -> bool:
        for refs in self.inputs.values():  # plain loops: this is on every evaluation's path
            for ref in refs:
                if ref.event_id == event_id:
                    return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {
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
        )


@value
class Fire:
    """Create the run for ``(rule, key, generation)`` with these inputs."""

    rule: str
    key: str
    partition: Mapping[str, str]
    generation: int
    inputs: tuple[InputRef, ...]

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


Effect = Fire | Expired | ScheduleTimer | CancelTimer | Ignored


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
    partition: Mapping[str, str]
    if state is None:
        partition = spec.key_of(ref.partition)
        generation, inputs, opened_at = 1, {}, None
        key = key or partition_key(partition)
    else:
        if state.has_event(ref.event_id):
            return Step(state, (Ignored(spec.name, state.key, ref.event_id, "duplicate"),))
        partition, key = state.partition, state.key
        if state.status == "fired":
            if spec.on_update == "ignore":
                reason = "update of a fired partition (on_update: ignore)"
                return Step(state, (Ignored(spec.name, key, ref.event_id, reason),))
            # The update opens the next generation with the inputs of the last one carried over.
            generation, inputs, opened_at = state.generation + 1, dict(state.inputs), None
        elif state.status == "expired":
            generation, inputs, opened_at = state.generation + 1, {}, None
        else:
            generation, inputs, opened_at = state.generation, dict(state.inputs), state.opened_at

    effects: list[Effect] = []
    inputs[ref.dataset] = _with(inputs.get(ref.dataset, ()), ref)
    expires_at = state.expires_at if state is not None and opened_at is not None else None
    if opened_at is None:
        opened_at = now
        if spec.within is not None and spec.mode == "all":
            expires_at = now + spec.within
            effects.append(ScheduleTimer(EXPIRY, spec.name, key, generation, expires_at))

    if _satisfied(spec, inputs):
        if expires_at is not None:
            effects.append(CancelTimer(EXPIRY, spec.name, key, generation))
        new = MatchState(
            spec.name, key, partition, generation, "fired", inputs, opened_at, None, now, now
        )
        refs = tuple(r for rs in inputs.values() for r in rs)
        effects.append(Fire(spec.name, key, partition, generation, refs))
    else:
        new = MatchState(
            spec.name, key, partition, generation, "open", inputs, opened_at, expires_at, None, now
        )
    return Step(new, tuple(effects))


def on_expiry(
    spec: RuleSpec, state: MatchState | None, generation: int, now: datetime
) -> Step | None:
    """Close an open match whose ``within`` window has ended; None when the timer is stale."""
    if (
        state is None
        or state.status != "open"
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


def _satisfied(spec: RuleSpec, inputs: Mapping[str, tuple[InputRef, ...]]) -> bool:
    if spec.mode == "any":
        return any(inputs.values())
    return all(map(inputs.get, spec.datasets))


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
