"""Dead letters' actions in every store: the kept message round-trips, a redrive is
requested and carried out once (its outcome applies only while requested), a discard is
kept for the audit and filtered by status, and refusals say why."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from eventflow.errors import StoreConflict
from eventflow.records import Changes, DeadLetter, DeadLetterOutcome, StoredEvent
from eventflow.store._deadletters import DeadLetterRefused
from eventflow.types import Store
from tests.integration import test_store_contract as contract

T0 = datetime(2026, 1, 1, tzinfo=UTC)
store = contract.store
"""Each test runs on the memory, SQLite and PostgreSQL stores."""

MESSAGE = {
    "key": "/orders",
    "time": T0.isoformat(),
    "payload": {"dt": 20260101, "rows": [1, 2]},
    "attributes": {"path": "/orders", "query": {}},
}


def letter(eid: str, minutes: float = 0, sensor: str = "hooks", **kw: object) -> DeadLetter:
    fields: dict[str, object] = {
        "event_id": eid,
        "sensor": sensor,
        "position": {"path": "/orders", "id": eid},
        "error": "dataset orders: partition variable 'dt' (payload.day) gave None, not a value",
        "excerpt": "{'dt': 20260101}",
        "time": T0 + timedelta(minutes=minutes),
        "message": MESSAGE,
        **kw,
    }
    return DeadLetter(**fields)  # type: ignore[arg-type]


async def apply(store: Store, changes: Changes) -> None:
    async with store.transaction() as tx:
        await tx.apply(changes)


async def test_a_dead_letter_keeps_its_whole_message(store: Store) -> None:
    """Every field, the message with its payload and attributes included, comes back."""
    d = letter("e1")
    await apply(store, Changes(deadletters=[d]))
    assert await store.get_deadletter("e1") == d
    assert await store.get_deadletter("nope") is None
    bare = letter("e2", message=None)
    await apply(store, Changes(deadletters=[bare]))
    assert await store.get_deadletter("e2") == bare


async def test_a_redrive_request_is_recorded_fetched_and_carried_out_once(store: Store) -> None:
    """The request is audited and fetched by the engine; its outcome commits with the event;
    a second outcome for the same request is a conflict that writes nothing."""
    await apply(store, Changes(deadletters=[letter("e1"), letter("e2", 1)]))
    asked = await store.act_on_deadletter("e1", "redrive", "cli:ops", T0 + timedelta(hours=1))
    assert asked.requested_by == "cli:ops"
    assert asked.requested_at == T0 + timedelta(hours=1)
    assert [h["action"] for h in asked.history] == ["redrive_requested"]
    assert [d.event_id for d in await store.fetch_redrives(10)] == ["e1"]

    event = StoredEvent("e1", "hooks", "/orders", T0, {"id": "e1"}, {}, {}, (), T0)
    done = DeadLetterOutcome("e1", "redriven", asked.error, {"action": "redriven", "by": "x"})
    await apply(store, Changes(events=[event], deadletter_outcomes=[done]))
    after = await store.get_deadletter("e1")
    assert after is not None
    assert after.status == "redriven"
    assert after.requested_by is None
    assert [h["action"] for h in after.history] == ["redrive_requested", "redriven"]
    assert await store.fetch_redrives(10) == []
    assert [e.id for e in await store.get_events(["e1"])] == ["e1"]

    other = StoredEvent("other", "hooks", None, T0, {"id": "o"}, {}, {}, (), T0)
    with pytest.raises(StoreConflict):
        await apply(store, Changes(events=[other], deadletter_outcomes=[done]))
    assert await store.get_events(["other"]) == []  # the whole batch rolled back


async def test_a_failed_redrive_keeps_it_open_with_the_new_error(store: Store) -> None:
    """A redrive that fails again leaves the dead letter open, records the new error, and
    lets it be requested again."""
    await apply(store, Changes(deadletters=[letter("e1")]))
    await store.act_on_deadletter("e1", "redrive", "api:alice", T0)
    failed = DeadLetterOutcome("e1", "open", "still bad", {"action": "redrive_failed"})
    await apply(store, Changes(deadletter_outcomes=[failed]))
    d = await store.get_deadletter("e1")
    assert d is not None
    assert (d.status, d.error, d.requested_at) == ("open", "still bad", None)
    again = await store.act_on_deadletter("e1", "redrive", "api:alice", T0)
    assert len(again.history) == 3


async def test_discarded_dead_letters_are_kept_and_filtered_by_status(store: Store) -> None:
    """A discard withdraws a pending redrive, is audited, lists only by its status, and
    leaves the count of dead letters to act on."""
    await apply(store, Changes(deadletters=[letter("e1"), letter("e2", 1), letter("e3", 2)]))
    await store.act_on_deadletter("e2", "redrive", "cli:ops", T0)
    gone = await store.act_on_deadletter("e2", "discard", "cli:ops", T0 + timedelta(minutes=5))
    assert gone.status == "discarded"
    assert gone.requested_at is None
    assert [h["action"] for h in gone.history] == ["redrive_requested", "discarded"]
    assert await store.fetch_redrives(10) == []
    open_ = await store.list_deadletters(status="open")
    assert [d.event_id for d in open_] == ["e3", "e1"]
    assert await store.count_deadletters(status="open") == 2
    assert [d.event_id for d in await store.list_deadletters(status="discarded")] == ["e2"]
    assert await store.count_deadletters() == 3
    assert (await store.counts())["deadletters"] == 2  # status's figure: those to act on
    page = await store.list_deadletters(1, status="open", after="e3")
    assert [d.event_id for d in page] == ["e1"]


async def test_actions_that_do_not_apply_are_refused_and_change_nothing(store: Store) -> None:
    """No such dead letter, one already discarded, one without its message, and a second
    request while one is pending are refused with a reason."""
    await apply(store, Changes(deadletters=[letter("e1"), letter("bare", 1, message=None)]))
    with pytest.raises(DeadLetterRefused, match="no dead letter 'nope'"):
        await store.act_on_deadletter("nope", "redrive", "cli:ops", T0)
    with pytest.raises(DeadLetterRefused, match="kept only an excerpt"):
        await store.act_on_deadletter("bare", "redrive", "cli:ops", T0)
    await store.act_on_deadletter("e1", "redrive", "cli:ops", T0)
    with pytest.raises(DeadLetterRefused, match="already requested"):
        await store.act_on_deadletter("e1", "redrive", "cli:ops", T0)
    await store.act_on_deadletter("e1", "discard", "cli:ops", T0)
    with pytest.raises(DeadLetterRefused, match="is discarded"):
        await store.act_on_deadletter("e1", "discard", "cli:ops", T0)
    d = await store.get_deadletter("e1")
    assert d is not None
    assert len(d.history) == 2
    assert replace(d, history=()) == replace(letter("e1"), status="discarded")
