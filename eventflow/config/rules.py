"""A validated rule section compiled into what the rules core and the engine run."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import jmespath
from jmespath.parser import ParsedResult

from eventflow.config.models import AllOf, AnyOf, AtLeast, DatasetRef, DeadlineAlert, RuleConfig
from eventflow.config.models import Condition as ConditionConfig
from eventflow.rules.core import BatchSpec, RuleSpec
from eventflow.rules.expr import Condition, Group, Need
from eventflow.rules.timing import DeadlineExpr, Schedule, parse_time, zone


@dataclass(frozen=True)
class Compiled:
    spec: RuleSpec
    filters: dict[str, ParsedResult] = field(default_factory=dict)
    """Per dataset: a JMESPath filter an input event must pass (rule `where` and the
    dataset's own, combined)."""
    schedule: Schedule | None = None
    schedule_start: datetime | None = None
    params: dict[str, ParsedResult] = field(default_factory=dict)
    """The rule's ``params`` expressions, by name."""


def compile_rule(name: str, rc: RuleConfig, by: tuple[str, ...]) -> Compiled:
    """Raises ValueError or a JMESPath error only for what the checks have reported."""
    when = rc.when
    tz = zone(rc.timezone)
    condition = None if when.simple else _condition_of(when.mode, when.items, when.at_least or 1)
    on_deadline = rc.on_deadline
    if isinstance(on_deadline, DeadlineAlert):
        on_deadline = "run_partial" if on_deadline.run_partial else "event"
    batch = None
    if rc.batch is not None:
        batch = BatchSpec(rc.batch.max_events, rc.batch.max_wait)
    spec = RuleSpec(
        name=name,
        mode=when.mode,
        datasets=when.datasets,
        by=by,
        within=when.within,
        on_update=rc.on_update,
        condition=condition,
        quiet=rc.quiet,
        late=rc.late,
        deadline=DeadlineExpr.parse(rc.expect_by, tz) if rc.expect_by is not None else None,
        on_deadline=on_deadline,
        batch=batch,
        keys=_keys(when.items),
    )
    filters: dict[str, ParsedResult] = {}
    for dataset, where in _filters(when.items):
        text = f"({rc.where}) && ({where})" if rc.where and where else (rc.where or where)
        if text:
            filters[dataset] = jmespath.compile(text)
    schedule = start = None
    if rc.expect is not None:
        schedule = Schedule(rc.expect.every, dict(rc.expect.partition), tz)
        if rc.expect.start is not None:
            start = parse_time(rc.expect.start, tz)
    params = {name: jmespath.compile(expr) for name, expr in rc.params.items()}
    return Compiled(spec, filters, schedule, start, params)


def alert_name(rule: str) -> str:
    """The pseudo-rule whose runs are ``rule``'s deadline alerts (``:`` is not allowed in
    rule names, so it cannot clash)."""
    return f"{rule}:on_deadline"


def alert_spec(rule: str, by: tuple[str, ...]) -> RuleSpec:
    """A rule with no inputs: its runs are created by the engine at missed deadlines."""
    return RuleSpec(alert_name(rule), "any", (), by)


def _condition_of(op: str, items: tuple[ConditionConfig, ...], n: int) -> Condition:
    children = tuple(_node(item) for item in items)
    if op == "all":
        return Group("all", children)
    if op == "any":
        return Group("any", children)
    return Group("at_least", children, n)


def _node(item: ConditionConfig) -> Condition:
    if isinstance(item, str):
        return Need(item)
    if isinstance(item, DatasetRef):
        return Need(item.dataset, item.count)
    if isinstance(item, AllOf):
        return _condition_of("all", item.all, 1)
    if isinstance(item, AnyOf):
        return _condition_of("any", item.any, 1)
    assert isinstance(item, AtLeast)
    return _condition_of("at_least", item.of, item.at_least)


def _keys(items: tuple[ConditionConfig, ...]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        if isinstance(item, DatasetRef):
            if item.vars:
                out[item.dataset] = dict(item.vars)
        elif isinstance(item, AllOf):
            out |= _keys(item.all)
        elif isinstance(item, AnyOf):
            out |= _keys(item.any)
        elif isinstance(item, AtLeast):
            out |= _keys(item.of)
    return out


def _filters(items: tuple[ConditionConfig, ...]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for item in items:
        if isinstance(item, str):
            out.append((item, None))
        elif isinstance(item, DatasetRef):
            out.append((item.dataset, item.where))
        elif isinstance(item, AllOf):
            out += _filters(item.all)
        elif isinstance(item, AnyOf):
            out += _filters(item.any)
        else:
            out += _filters(item.of)
    return out
