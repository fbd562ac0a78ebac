"""Check gates in every store: written whole by ``Changes.gates``, listed newest first with
filters, and committed atomically with the announcement they cause."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from eventflow.records import Changes, CheckGate, InboxItem
from eventflow.types import Store
from tests.integration import test_store_contract as contract

T0 = datetime(2026, 1, 1, tzinfo=UTC)
store = contract.store
"""Each test runs on the memory, SQLite and PostgreSQL stores."""


def gate(run_id: str, minutes: float = 0, dt: str = "2026-01-01", **kw: object) -> CheckGate:
    when = T0 + timedelta(minutes=minutes)
    fields: dict[str, object] = {
        "run_id": run_id,
        "rule": "load",
        "dataset": "loaded",
        "key": f"dt={dt}",
        "partition": {"dt": dt},
        "status": "pending",
        "attempt": 0,
        "payload": {"run_id": run_id, "rule": "load", "attempt": 1},
        "created_at": when,
        "updated_at": when,
        **kw,
    }
    return CheckGate(**fields)  # type: ignore[arg-type]


async def apply(store: Store, changes: Changes) -> None:
    async with store.transaction() as tx:
        await tx.apply(changes)


async def test_a_gate_round_trips_with_results_actions_and_version(store: Store) -> None:
    """Every field of a gate comes back as written, its results and audit trail included."""
    g = gate(
        "r1",
        status="blocked",
        attempt=2,
        results=({"check": "rows", "severity": "error", "passed": False, "value": 3},),
        actions=({"action": "rerun", "by": "cli:ops", "at": T0.isoformat()},),
        pipeline_version="v7",
    )
    await apply(store, Changes(gates=[g]))
    assert await store.list_gates(run_id="r1") == [g]
    assert g.blocking == ["rows"]


async def test_a_gate_written_again_is_replaced_and_keeps_its_creation_time(store: Store) -> None:
    """An upsert by run id replaces status, attempt and results, not ``created_at``."""
    first = gate("r1")
    await apply(store, Changes(gates=[first]))
    later = replace(
        first,
        status="passed",
        attempt=1,
        created_at=T0 + timedelta(hours=1),
        updated_at=T0 + timedelta(hours=1),
    )
    await apply(store, Changes(gates=[later]))
    (found,) = await store.list_gates()
    assert found.status == "passed"
    assert found.attempt == 1
    assert found.created_at == T0
    assert found.updated_at == T0 + timedelta(hours=1)


async def test_list_gates_is_newest_first_and_filters(store: Store) -> None:
    """Gates list newest first, by rule, dataset, key, status and run id, up to the limit."""
    gates = [
        gate("a", 0, "2026-01-01"),
        gate("b", 1, "2026-01-02", status="blocked"),
        gate("c", 2, "2026-01-03", rule="other", dataset="else"),
    ]
    await apply(store, Changes(gates=gates))
    assert [g.run_id for g in await store.list_gates()] == ["c", "b", "a"]
    assert [g.run_id for g in await store.list_gates(limit=2)] == ["c", "b"]
    assert [g.run_id for g in await store.list_gates(rule="load")] == ["b", "a"]
    assert [g.run_id for g in await store.list_gates(dataset="else")] == ["c"]
    assert [g.run_id for g in await store.list_gates(key="dt=2026-01-01")] == ["a"]
    assert [g.run_id for g in await store.list_gates(status="blocked")] == ["b"]
    assert [g.run_id for g in await store.list_gates(run_id="a")] == ["a"]
    assert await store.list_gates(run_id="nope") == []


async def test_a_failed_transaction_writes_neither_the_gate_nor_its_announcement(
    store: Store,
) -> None:
    """The gate's decision and the announcement commit together or not at all."""
    await apply(store, Changes(gates=[gate("r1")]))
    item = InboxItem("rules.load", "loaded", {"dt": "2026-01-01"}, {"run_id": "r1"}, {}, T0)
    changes = Changes(gates=[gate("r1", status="passed")], inbox_add=[item])
    with pytest.raises(RuntimeError):
        await _apply_then_fail(store, changes)
    (found,) = await store.list_gates()
    assert found.status == "pending"
    assert await store.fetch_inbox(10) == []


async def _apply_then_fail(store: Store, changes: Changes) -> None:
    async with store.transaction() as tx:
        await tx.apply(changes)
        raise RuntimeError("crash before commit")
