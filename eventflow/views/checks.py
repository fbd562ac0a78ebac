"""Produced partitions held by their rule's data-quality checks: what ``eventflow checks
list``, ``status``, ``why``, ``GET /api/checks`` and the page show."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from eventflow.pipeline import CompiledPipeline
from eventflow.records import CheckGate, GateStatus
from eventflow.types import Store

HELD: tuple[GateStatus, ...] = ("pending", "running", "blocked")
"""The statuses of a partition that is not announced (yet)."""


@dataclass(frozen=True, slots=True)
class Held:
    """A gate and the rules downstream of its dataset (which wait for it)."""

    gate: CheckGate
    downstream: tuple[str, ...]

    @property
    def reason(self) -> str:
        """``blocked by check rows`` or ``checks pending``: what ``why`` says instead of
        ``missing``."""
        g = self.gate
        if g.status == "blocked":
            names = ", ".join(g.blocking) or "?"
            return f"blocked by check {names}"
        return f"checks {g.status}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.gate.to_dict(), "reason": self.reason, "downstream": list(self.downstream)}


def _downstream(pipeline: CompiledPipeline, dataset: str) -> tuple[str, ...]:
    return tuple(r.name for r in pipeline.rules_by_dataset.get(dataset, ()))


async def gates(
    pipeline: CompiledPipeline,
    store: Store,
    *,
    rule: str | None = None,
    status: GateStatus | None = None,
    limit: int = 100,
) -> list[Held]:
    """Gates newest first, of ``rule`` and ``status`` when given."""
    found = await store.list_gates(rule=rule, status=status, limit=limit)
    return [Held(g, _downstream(pipeline, g.dataset)) for g in found]


async def held(pipeline: CompiledPipeline, store: Store, *, limit: int = 50) -> list[Held]:
    """Partitions not announced: checks pending or running, or blocked."""
    out: list[Held] = []
    for status in HELD:
        out += await gates(pipeline, store, status=status, limit=limit)
    out.sort(key=lambda h: (h.gate.created_at, h.gate.run_id), reverse=True)
    return out[:limit]


async def blocked_inputs(
    pipeline: CompiledPipeline,
    store: Store,
    datasets: Collection[str],
    partition: Mapping[str, str],
) -> dict[str, Held]:
    """For each of ``datasets`` held by checks for ``partition`` (their shared variables
    agree), its newest gate: why a downstream rule's input is not there."""
    found: dict[str, Held] = {}
    for dataset in datasets:
        for gate in await store.list_gates(dataset=dataset, limit=200):
            shared = set(gate.partition) & set(partition)
            if not shared or any(gate.partition[v] != partition[v] for v in shared):
                continue
            if gate.status in HELD:
                found[dataset] = Held(gate, _downstream(pipeline, dataset))
            break  # the newest gate of this partition decides
    return found
