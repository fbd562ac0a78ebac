"""Check gates in every store: written whole by ``Changes.gates``, listed newest first with
filters, and committed atomically with the announcement they cause."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventflow.errors import StoreError
from eventflow.records import Changes, CheckGate, InboxItem
from eventflow.store.memory import MemoryStore
from eventflow.store.postgres import PostgresStore
from eventflow.store.sqlite import SQLiteStore
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
    assert [g.run_id for g in await store.list_gates(run_ids=["a", "c", "nope"])] == ["c", "a"]
    assert await store.list_gates(run_ids=[]) == []


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


async def test_claim_takes_pending_gates_oldest_first_once_and_counts_the_evaluation(
    store: Store,
) -> None:
    """A claim makes the oldest pending gates ``running`` with evaluation + 1; a second
    claim while they are held finds none of them."""
    await apply(store, Changes(gates=[gate("b", 1), gate("a", 0), gate("c", 2, status="passed")]))
    first = await store.claim_gates(T0, T0 + timedelta(seconds=30), 1)
    assert [(g.run_id, g.status, g.attempt, was) for g, was in first] == [
        ("a", "running", 1, "pending")
    ]
    rest = await store.claim_gates(T0, T0 + timedelta(seconds=30), 10)
    assert [g.run_id for g, _ in rest] == ["b"]
    assert await store.claim_gates(T0, T0 + timedelta(seconds=30), 10) == []
    (a,) = await store.list_gates(run_id="a")
    assert (a.status, a.attempt) == ("running", 1)


async def test_an_expired_claim_is_taken_over_and_a_renewed_one_is_not(store: Store) -> None:
    """A running gate whose claim expired is claimed again (its status before: running);
    renewing a claim keeps it, and renewal only holds the worker's own running gates."""
    await apply(store, Changes(gates=[gate("a"), gate("b", 1)]))
    await store.claim_gates(T0, T0 + timedelta(seconds=30), 10)
    assert await store.renew_gates(["a", "nope"], T0 + timedelta(seconds=90)) == {"a"}
    later = T0 + timedelta(seconds=60)
    taken = await store.claim_gates(later, later + timedelta(seconds=30), 10)
    assert [(g.run_id, g.attempt, was) for g, was in taken] == [("b", 2, "running")]
    decided = replace((await store.list_gates(run_id="a"))[0], status="passed")
    await apply(store, Changes(gates=[decided]))
    assert await store.renew_gates(["a"], later) == set()  # decided: nothing to hold
    assert await store.renew_gates([], later) == set()


async def test_a_claim_released_by_renewing_to_now_is_claimed_at_once(store: Store) -> None:
    """A clean stop renews its claims to now: the next claim takes them without waiting
    for the lease."""
    await apply(store, Changes(gates=[gate("a")]))
    await store.claim_gates(T0, T0 + timedelta(seconds=30), 10)
    await store.renew_gates(["a"], T0)
    again = await store.claim_gates(T0 + timedelta(seconds=1), T0 + timedelta(seconds=31), 10)
    assert [(g.run_id, g.attempt) for g, _ in again] == [("a", 2)]


async def test_a_gate_written_whole_keeps_its_claim(store: Store) -> None:
    """Writing a claimed gate (its results so far) leaves the claim: it is not claimed
    again before the lease ends."""
    await apply(store, Changes(gates=[gate("a")]))
    ((claimed, _),) = await store.claim_gates(T0, T0 + timedelta(seconds=30), 10)
    await apply(store, Changes(gates=[replace(claimed, results=({"check": "x"},))]))
    assert await store.claim_gates(T0 + timedelta(seconds=10), T0, 10) == []


async def test_a_second_worker_waits_for_the_lease_only_on_postgresql(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Another worker's live claim is left alone on PostgreSQL (shared by workers); a
    single-worker store (SQLite) takes it at once, since its holder must be dead."""
    dsn = request.getfixturevalue("postgres_dsn")
    async with (
        PostgresStore.from_dsn(dsn, tmp_path) as one,
        PostgresStore.from_dsn(dsn, tmp_path) as two,
    ):
        await apply(one, Changes(gates=[gate("a")]))
        assert len(await one.claim_gates(T0, T0 + timedelta(seconds=30), 10)) == 1
        assert await two.claim_gates(T0 + timedelta(seconds=10), T0, 10) == []
        late = T0 + timedelta(seconds=31)
        assert [g.run_id for g, _ in await two.claim_gates(late, late, 10)] == ["a"]
        assert await one.renew_gates(["a"], late) == set()  # taken over
    async with SQLiteStore(tmp_path / "s.db") as first:
        await apply(first, Changes(gates=[gate("a")]))
        await first.claim_gates(T0, T0 + timedelta(seconds=30), 10)
    async with SQLiteStore(tmp_path / "s.db") as second:  # the next process: the first is dead
        taken = await second.claim_gates(T0 + timedelta(seconds=1), T0, 10)
        assert [(g.run_id, was) for g, was in taken] == [("a", "running")]
    async with MemoryStore() as mem:
        await apply(mem, Changes(gates=[gate("a")]))
        assert len(await mem.claim_gates(T0, T0 + timedelta(seconds=30), 10)) == 1
        assert await mem.claim_gates(T0 + timedelta(seconds=1), T0, 10) == []  # its own


async def test_get_gate_in_a_transaction_reads_it_as_committed_and_sees_its_own_writes(
    store: Store,
) -> None:
    await apply(store, Changes(gates=[gate("a")]))
    async with store.transaction() as tx:
        assert await tx.get_gate("missing") is None
        found = await tx.get_gate("a")
        assert found is not None
        assert found.status == "pending"
        await tx.apply(Changes(gates=[replace(found, status="running", attempt=1)]))
        again = await tx.get_gate("a")
        assert again is not None
        assert (again.status, again.attempt) == ("running", 1)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_an_operators_action_waits_for_a_checker_holding_the_gate_in_another_process(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    """A checker (one store) reads the running gate in its transaction; an operator's
    override through another store (the CLI's process, another worker) waits for that
    transaction, then finds the partition passed and is refused: the checker's result and
    the override never overwrite each other."""
    from eventflow.quality import gates

    def open_store() -> Store:
        if kind == "sqlite":
            return SQLiteStore(tmp_path / "s.db")
        return PostgresStore.from_dsn(request.getfixturevalue("postgres_dsn"), tmp_path)

    async with open_store() as checker, open_store() as operator:
        await apply(checker, Changes(gates=[gate("a", status="running", attempt=1)]))
        async with checker.transaction() as tx:
            current = await tx.get_gate("a")
            assert current is not None
            override = asyncio.create_task(gates.act(operator, "a", "override", "ops", T0))
            await asyncio.sleep(0.5)
            assert not override.done()  # it waits for the checker's transaction
            await tx.apply(Changes(gates=[replace(current, status="passed")]))
        with pytest.raises(StoreError, match="its partition is passed"):
            await asyncio.wait_for(override, 30)
        [after] = await operator.list_gates(run_id="a")
        assert (after.status, after.actions) == ("passed", ())
