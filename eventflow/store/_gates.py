"""How check gates (:class:`~eventflow.records.CheckGate`) become rows and back, shared by
the SQLite, PostgreSQL and in-memory stores (the conventions of :mod:`._codec`).

A gate's *claim* (``claimed_by``, ``claim_until``) is kept beside its row and written only by
``claim_gates`` and ``renew_gates``: the upsert of a whole gate leaves it alone."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from eventflow.records import CheckGate, GateStatus
from eventflow.store._codec import dt_text, json_loads, json_text, text_dt


class GateRow(NamedTuple):
    run_id: str
    rule: str
    dataset: str
    key: str
    partition: str
    status: str
    attempt: int
    payload: str
    results: str
    actions: str
    pipeline_version: str | None
    created_at: str
    updated_at: str


def gate_row(g: CheckGate) -> GateRow:
    return GateRow(
        g.run_id,
        g.rule,
        g.dataset,
        g.key,
        json_text(dict(g.partition)),
        g.status,
        g.attempt,
        json_text(g.payload, "gate payload"),
        json_text([dict(r) for r in g.results], f"check results of run {g.run_id}"),
        json_text([dict(a) for a in g.actions], f"check actions of run {g.run_id}"),
        g.pipeline_version,
        dt_text(g.created_at),
        dt_text(g.updated_at),
    )


def decode_gate(row: Sequence[Any]) -> CheckGate:
    r = GateRow(*row)
    return CheckGate(
        run_id=r.run_id,
        rule=r.rule,
        dataset=r.dataset,
        key=r.key,
        partition=json_loads(r.partition),
        status=cast(GateStatus, r.status),
        attempt=r.attempt,
        payload=json_loads(r.payload),
        created_at=text_dt(r.created_at),
        updated_at=text_dt(r.updated_at),
        results=tuple(json_loads(r.results)),
        actions=tuple(json_loads(r.actions)),
        pipeline_version=r.pipeline_version,
    )


def gate_filter(
    *,
    rule: str | None = None,
    dataset: str | None = None,
    key: str | None = None,
    status: str | None = None,
    run_id: str | None = None,
    run_ids: Collection[str] | None = None,
) -> dict[str, str | None]:
    """The named parameters of ``list_gates`` (None: any); ``run_ids`` as a JSON array."""
    return {
        "rule": rule,
        "dataset": dataset,
        "key": key,
        "status": status,
        "run_id": run_id,
        "run_ids": None if run_ids is None else json_text(sorted(run_ids)),
    }


def gate_matches(row: GateRow, where: Mapping[str, str | None]) -> bool:
    """Whether ``row`` passes ``where`` (:func:`gate_filter`): the memory store's query."""
    values = row._asdict()
    for name, want in where.items():
        if want is None:
            continue
        if name == "run_ids":
            if row.run_id not in json_loads(want):
                return False
        elif values[name] != want:
            return False
    return True


def claim_params(worker: str, now: datetime, until: datetime, limit: int) -> dict[str, Any]:
    """The parameters of the ``claim_gates`` queries."""
    return {"worker": worker, "now": dt_text(now), "until": dt_text(until), "limit": limit}


def renew_params(worker: str, run_ids: Collection[str], until: datetime) -> dict[str, Any]:
    return {"worker": worker, "run_ids": json_text(sorted(run_ids)), "until": dt_text(until)}


def claimable(status: str, claim: tuple[str, str] | None, worker: str, now_text: str) -> bool:
    """Whether a single-worker store (SQLite, memory) lets ``worker`` claim a gate: it is
    pending, or running with a claim that expired or is another worker's (the store admits
    one worker at a time, so that one is dead). PostgreSQL waits for the claim to expire."""
    if status == "pending":
        return True
    if status != "running":
        return False
    return claim is None or claim[1] < now_text or claim[0] != worker
