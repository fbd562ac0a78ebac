"""The event log listed newest first in every store, filtered by dataset, sensor, partition
values and receive time, paged by keyset, with the total the filters select."""

from __future__ import annotations

from dataclasses import replace

from eventflow.records import Changes
from eventflow.types import Store
from tests.integration import test_store_contract as contract

store = contract.store
"""Each test runs on the memory, SQLite and PostgreSQL stores."""
at = contract.at


async def logged(store: Store) -> None:
    events = [
        contract.stored_event("e1", 0),
        replace(
            contract.stored_event("e2", 1, sensor="hooks"),
            datasets=(("stock", {"dt": "2024-01-02"}),),
        ),
        replace(
            contract.stored_event("e3", 2),
            datasets=(("orders", {"dt": "2024-01-02", "hr": "07"}), ("stock", {"dt": "x"})),
        ),
    ]
    for event in events:  # one commit each: the log's order is the commit order
        async with store.transaction() as tx:
            await tx.apply(Changes(events=[event]))


async def test_the_event_log_is_listed_newest_first_with_filters(store: Store) -> None:
    """Each filter selects the events it names, alone and together, and the count agrees."""
    await logged(store)

    async def ids(**where: object) -> list[str]:
        found = [e.id for e in await store.list_events(**where)]  # type: ignore[arg-type]
        assert await store.count_events(**where) == len(found)  # type: ignore[arg-type]
        return found

    assert await ids() == ["e3", "e2", "e1"]
    assert await ids(dataset="orders") == ["e3", "e1"]
    assert await ids(dataset="stock") == ["e3", "e2"]
    assert await ids(sensor="hooks") == ["e2"]
    assert await ids(partition={"dt": "2024-01-02"}) == ["e3", "e2"]
    assert await ids(dataset="orders", partition={"dt": "2024-01-02", "hr": "07"}) == ["e3"]
    assert await ids(dataset="stock", partition={"dt": "2024-01-01"}) == []
    assert await ids(since=at(1.5)) == ["e3", "e2"]
    assert await ids(until=at(1.5)) == ["e1"]
    assert [e.payload for e in await store.list_events(1)] == [contract.stored_event("e3").payload]


async def test_the_event_log_pages_by_keyset(store: Store) -> None:
    """``after`` continues after the event it names, with the same filters."""
    await logged(store)
    first = await store.list_events(2)
    assert [e.id for e in first] == ["e3", "e2"]
    assert [e.id for e in await store.list_events(2, after="e2")] == ["e1"]
    assert [e.id for e in await store.list_events(2, dataset="orders", after="e3")] == ["e1"]
