"""Join conditions as trees: ``all``, ``any``, ``at_least: N`` over datasets, nested.

A leaf :class:`Need` holds when its dataset has at least ``count`` distinct partitions in
the match (an hourly dataset feeding a daily rule needs ``count: 24``: one per hour of the
day). A :class:`Group` combines its items. Evaluation reads only which dataset partitions
have arrived, so it is pure and cheap.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from eventflow.events import InputRef
from eventflow.values import value

Op = Literal["all", "any", "at_least"]


@value
class Need:
    """A leaf: ``count`` distinct partitions of ``dataset`` have arrived."""

    dataset: str
    count: int = 1


@value
class Group:
    """``all`` / ``any`` of ``items``, or ``at_least`` ``n`` of them."""

    op: Op
    items: tuple[Condition, ...]
    n: int = 1


Condition = Need | Group
Inputs = Mapping[str, tuple[InputRef, ...]]


def holds(cond: Condition, inputs: Inputs) -> bool:
    """Whether ``cond`` is satisfied by the arrived ``inputs`` (dataset -> its partitions)."""
    if type(cond) is Need:
        return len(inputs.get(cond.dataset, ())) >= cond.count
    assert isinstance(cond, Group)
    if cond.op == "all":
        return all(holds(item, inputs) for item in cond.items)
    if cond.op == "any":
        return any(holds(item, inputs) for item in cond.items)
    return sum(1 for item in cond.items if holds(item, inputs)) >= cond.n


def leaves(cond: Condition) -> Iterator[Need]:
    """Every dataset leaf of ``cond``, left to right."""
    if isinstance(cond, Need):
        yield cond
        return
    for item in cond.items:
        yield from leaves(item)


def missing(cond: Condition, inputs: Inputs) -> tuple[str, ...]:
    """The datasets whose leaves do not hold yet (a ``count`` leaf with some partitions
    arrived is missing too: ``why`` shows how many of how many)."""
    return tuple(need.dataset for need in leaves(cond) if not holds(need, inputs))


def describe(cond: Condition) -> str:
    """The condition as people write it: ``all(orders, any(a, b), hourly*24)``."""
    if isinstance(cond, Need):
        return cond.dataset if cond.count == 1 else f"{cond.dataset}*{cond.count}"
    inner = ", ".join(describe(item) for item in cond.items)
    if cond.op == "at_least":
        return f"at_least {cond.n} of ({inner})"
    return f"{cond.op}({inner})"
