"""The state-store contract: every Store behaves the same, in memory, in a SQLite file and in
PostgreSQL (a fresh database per test)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from eventflow.errors import ClosedError, StoreError
from eventflow.events import Event, InputRef
from eventflow.records import (
    Changes,
    DeadLetter,
    InboxItem,
    NewRun,
    OutboxItem,
    RunNote,
    RunUpdate,
    StoredEvent,
    Timer,
)
from eventflow.rules.core import MatchState
from eventflow.store import COUNT_KEYS, open_store
from eventflow.store.memory import MemoryStore
from eventflow.store.postgres import PostgresStore
from eventflow.store.sqlite import SQLiteStore
from eventflow.types import Store

T0 = datetime(2024, 1, 1, 6, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store
    if request.param == "memory":
        s = MemoryStore()
    elif request.param == "sqlite":
        s = SQLiteStore(tmp_path / "s.db")
    else:
        s = PostgresStore.from_dsn(request.getfixturevalue("postgres_dsn"), tmp_path)
    async with s:
        yield s


async def apply(store: Store, **changes: Any) -> None:
    async with store.transaction() as tx:
        await tx.apply(Changes(**changes))


def stored_event(eid: str, minutes: float = 0, sensor: str = "lake") -> StoredEvent:
    return StoredEvent(
        id=eid,
        sensor=sensor,
        key=f"orders/dt=2024-01-01/{eid}",
        time=at(minutes),
        position={"bucket": "lake", "key": eid, "etag": "e1"},
        payload={"size": 10, "tags": ["a", "b"], "nested": {"x": None}},
        attributes={"content_type": "text/csv"},
        datasets=(("orders", {"dt": "2024-01-01", "hr": "00"}),),
        received_at=at(minutes + 0.5),
    )


def ref(eid: str, dataset: str = "orders") -> InputRef:
    return InputRef(
        event_id=eid,
        dataset=dataset,
        partition={"dt": "2024-01-01", "hr": "00"},
        sensor="lake",
        position={"bucket": "lake", "key": eid},
        time=at(0).isoformat(),
    )


def match(rule: str, key: str, status: str = "open", generation: int = 1) -> MatchState:
    return MatchState(
        rule=rule,
        key=key,
        partition={"dt": key},
        generation=generation,
        status=status,  # type: ignore[arg-type]
        inputs={"orders": (ref("e1"),), "inventory": (ref("e2", "inventory"),)},
        opened_at=at(0),
        expires_at=at(120),
        fired_at=None,
        updated_at=at(1),
    )


def new_run(run_id: str, rule: str = "report", created: float = 0, attempts: int = 3) -> NewRun:
    return NewRun(
        run_id=run_id,
        rule=rule,
        key='{"dt":"2024-01-01"}',
        partition={"dt": "2024-01-01"},
        generation=1,
        inputs=(ref("e1"), ref("e2", "inventory")),
        max_attempts=attempts,
        created_at=at(created),
    )


def completion(n: int) -> Event:
    return Event(id=f"ce-{n}", source="eventflow/test", type="run.succeeded", time=at(n), data={})


def inbox_item(n: int) -> InboxItem:
    return InboxItem(
        observation_sensor="emit",
        dataset="orders",
        partition={"dt": f"2024-01-0{n}"},
        position={"n": n},
        payload={"by": "test"},
        created_at=at(n),
    )


def deadletter(eid: str, minutes: float = 0) -> DeadLetter:
    return DeadLetter(eid, "lake", {"key": eid}, "bad JSON", "{not json", at(minutes))


async def claim(store: Store, now: datetime, limit: int = 10, **rule_limits: int) -> list[str]:
    async with store.transaction() as tx:
        runs = await tx.claim_runs(now, limit, rule_limits)
    return [r.run_id for r in runs]


# --- events and dedupe -------------------------------------------------------------------


async def test_seen_events_reports_logged_and_deadlettered_ids(store: Store) -> None:
    """seen_events returns the subset of ids already logged as events or as dead letters."""
    await apply(store, events=[stored_event("e1")], deadletters=[deadletter("bad")])
    async with store.transaction() as tx:
        assert await tx.seen_events(["e1", "bad", "new"]) == {"e1", "bad"}
        assert await tx.seen_events([]) == set()


async def test_seen_events_handles_more_ids_than_one_chunk(store: Store) -> None:
    """seen_events answers correctly for a batch larger than the store's query chunk."""
    events = [stored_event(f"e{i}") for i in range(0, 1200, 2)]
    await apply(store, events=events)
    async with store.transaction() as tx:
        seen = await tx.seen_events([f"e{i}" for i in range(1200)])
    assert seen == {e.id for e in events}


async def test_seen_events_sees_events_applied_in_the_same_transaction(store: Store) -> None:
    """A transaction's own writes are visible to its later reads."""
    async with store.transaction() as tx:
        await tx.apply(Changes(events=[stored_event("e1")]))
        assert await tx.seen_events(["e1"]) == {"e1"}


async def test_a_second_event_with_the_same_id_is_ignored(store: Store) -> None:
    """The event log keeps the first event of an id and ignores a replayed one."""
    await apply(store, events=[stored_event("e1", minutes=0)])
    await apply(store, events=[stored_event("e1", minutes=30)])
    [event] = await store.get_events(["e1"])
    assert event.time == at(0)
    assert (await store.counts())["events"] == 1


async def test_get_events_round_trips_stored_events_in_requested_order(store: Store) -> None:
    """get_events returns the logged events as written, in the order asked, skipping unknowns."""
    await apply(store, events=[stored_event("e1"), stored_event("e2", 5)])
    events = await store.get_events(["e2", "missing", "e1", "e2"])
    assert events == [stored_event("e2", 5), stored_event("e1")]
    assert events[0].datasets == (("orders", {"dt": "2024-01-01", "hr": "00"}),)
    assert events[0].time.tzinfo is not None


async def test_list_deadletters_newest_first_and_first_error_kept(store: Store) -> None:
    """Dead letters are listed most recent first; a second one for the same event is ignored."""
    await apply(store, deadletters=[deadletter("d1"), deadletter("d2", 1)])
    await apply(store, deadletters=[replace_error(deadletter("d1"))])
    letters = await store.list_deadletters()
    assert [d.event_id for d in letters] == ["d2", "d1"]
    assert letters[1] == deadletter("d1")
    assert [d.event_id for d in await store.list_deadletters(limit=1)] == ["d2"]


def replace_error(d: DeadLetter) -> DeadLetter:
    return DeadLetter(d.event_id, d.sensor, d.position, "another error", d.excerpt, d.time)


# --- matches -----------------------------------------------------------------------------


async def test_matches_round_trip_with_input_refs_and_datetimes(store: Store) -> None:
    """A MatchState with InputRefs and datetimes reads back equal; unknown keys are absent."""
    state = match("report", '{"dt":"2024-01-01"}')
    await apply(store, matches={("report", state.key): state})
    async with store.transaction() as tx:
        found = await tx.get_matches([("report", state.key), ("report", "nope")])
    assert found == {("report", state.key): state}


async def test_match_upsert_replaces_the_state(store: Store) -> None:
    """Writing a match for an existing (rule, key) replaces its state."""
    await apply(store, matches={("r", "k"): match("r", "k")})
    fired = match("r", "k", status="fired", generation=2)
    await apply(store, matches={("r", "k"): fired})
    async with store.transaction() as tx:
        assert await tx.get_matches([("r", "k")]) == {("r", "k"): fired}
    assert (await store.counts())["matches_fired"] == 1


async def test_list_matches_filters_by_rule_status_and_limit(store: Store) -> None:
    """list_matches filters by rule and status, orders by rule and key, and honours limit."""
    states = [match("a", "k2"), match("a", "k1", "fired"), match("b", "k1", "expired")]
    await apply(store, matches={(m.rule, m.key): m for m in states})
    keys = [(m.rule, m.key) for m in await store.list_matches()]
    assert keys == [("a", "k1"), ("a", "k2"), ("b", "k1")]
    assert [m.key for m in await store.list_matches(rule="a")] == ["k1", "k2"]
    assert [m.rule for m in await store.list_matches(status="expired")] == ["b"]
    assert [m.key for m in await store.list_matches(rule="a", status="open")] == ["k2"]
    assert len(await store.list_matches(limit=2)) == 2
    assert await store.list_matches(limit=0) == []


async def test_list_matches_pages_by_key_with_partition_time_and_partial_filters(
    store: Store,
) -> None:
    """Keyset paging after (rule, key), the partial filter (not fired), a partition key and
    the time of the last change; count_matches counts what the filters select."""
    states = [
        dataclasses.replace(match("a", f"k{n}", "fired" if n == 3 else "open"), updated_at=at(n))
        for n in range(6)
    ] + [dataclasses.replace(match("b", "k0", "missed"), updated_at=at(9))]
    await apply(store, matches={(m.rule, m.key): m for m in states})
    first = await store.list_matches(partial=True, limit=3)
    assert [(m.rule, m.key) for m in first] == [("a", "k0"), ("a", "k1"), ("a", "k2")]
    rest = await store.list_matches(partial=True, after=("a", "k2"), limit=10)
    assert [(m.rule, m.key) for m in rest] == [("a", "k4"), ("a", "k5"), ("b", "k0")]
    assert await store.count_matches(partial=True) == 6
    assert await store.count_matches() == 7
    assert [m.rule for m in await store.list_matches(key="k0")] == ["a", "b"]
    assert await store.count_matches(rule="a", key="k0") == 1
    recent = await store.list_matches(since=at(4), until=at(9), partial=True)
    assert [m.key for m in recent] == ["k4", "k5"]
    assert await store.count_matches(since=at(4)) == 3
    assert await store.count_matches(status="missed") == 1


# --- runs --------------------------------------------------------------------------------


async def test_new_run_with_a_duplicate_run_id_is_ignored(store: Store) -> None:
    """Inserting a run whose run_id exists keeps the first run unchanged."""
    await apply(store, runs=[new_run("r1", attempts=3)])
    await apply(store, runs=[new_run("r1", attempts=9, created=5)])
    run = await store.get_run("r1")
    assert run is not None
    assert (run.max_attempts, run.created_at, run.status, run.attempt) == (3, at(0), "pending", 0)
    assert run.inputs == (ref("e1"), ref("e2", "inventory"))
    assert run.partition == {"dt": "2024-01-01"}
    assert await store.get_run("nope") is None


async def test_claim_runs_honours_limit_oldest_first(store: Store) -> None:
    """claim_runs claims at most limit runs, the oldest first."""
    await apply(store, runs=[new_run("r3", created=3), new_run("r1", created=1)])
    await apply(store, runs=[new_run("r2", created=2)])
    assert await claim(store, at(10), limit=2) == ["r1", "r2"]
    assert await claim(store, at(10), limit=2) == ["r3"]
    assert await claim(store, at(10), limit=2) == []
    assert await claim(store, at(10), limit=0) == []


async def test_claim_runs_respects_rule_limits_counting_running_runs(store: Store) -> None:
    """rule_limits caps running runs per rule, counting those already running; others are free."""
    runs = [new_run(f"a{i}", "a", created=i) for i in range(4)]
    runs += [new_run(f"b{i}", "b", created=10 + i) for i in range(2)]
    await apply(store, runs=runs)
    assert await claim(store, at(60), limit=1, a=2) == ["a0"]
    assert await claim(store, at(60), limit=10, a=2) == ["a1", "b0", "b1"]
    assert await claim(store, at(60), limit=10, a=2) == []
    await apply(store, run_updates=[RunUpdate("a0", "succeeded", 1, at(61), finished_at=at(61))])
    assert await claim(store, at(62), limit=10, a=2) == ["a2"]


async def test_claim_runs_skips_runs_whose_not_before_is_in_the_future(store: Store) -> None:
    """A pending run with not_before later than now is not claimed until then."""
    await apply(store, runs=[new_run("r1"), new_run("r2", created=1)])
    await apply(store, run_updates=[RunUpdate("r1", "pending", 0, at(1), not_before=at(30))])
    assert await claim(store, at(10)) == ["r2"]
    assert (
        await claim(
            store,
            at(
                29,
            ),
        )
        == []
    )
    assert await claim(store, at(30)) == ["r1"]


async def test_claim_runs_increments_attempt_and_sets_started_at(store: Store) -> None:
    """A claimed run is running with attempt + 1 and started_at = now, as returned and stored."""
    await apply(store, runs=[new_run("r1")])
    async with store.transaction() as tx:
        [run] = await tx.claim_runs(at(5), 10, {})
    assert (run.status, run.attempt, run.started_at, run.updated_at) == ("running", 1, at(5), at(5))
    assert await store.get_run("r1") == run
    counts = await store.counts()
    assert (counts["runs_pending"], counts["runs_running"]) == (0, 1)


async def test_apply_run_updates_writes_status_and_result(store: Store) -> None:
    """A RunUpdate sets status, attempt, times, error and output of its run."""
    await apply(store, runs=[new_run("r1")])
    await claim(store, at(1))
    update = RunUpdate(
        "r1", "failed", 1, at(2), finished_at=at(2), error="exit 3", output={"exit_code": 3}
    )
    await apply(store, run_updates=[update, RunUpdate("ghost", "failed", 1, at(2))])
    run = await store.get_run("r1")
    assert run is not None
    assert (run.status, run.attempt, run.updated_at, run.finished_at) == ("failed", 1, at(2), at(2))
    assert (run.error, run.output, run.started_at) == ("exit 3", {"exit_code": 3}, at(1))
    assert await store.get_run("ghost") is None


async def test_recover_running_moves_running_runs_back_to_pending(store: Store) -> None:
    """recover_running returns running runs to pending, keeping their attempt, and lists them."""
    await apply(store, runs=[new_run("r1"), new_run("r2", created=1), new_run("r3", created=2)])
    await claim(store, at(5), limit=2)
    assert await store.recover_running(at(9)) == ["r1", "r2"]
    run = await store.get_run("r1")
    assert run is not None
    assert (run.status, run.attempt, run.updated_at) == ("pending", 1, at(9))
    assert await store.recover_running(at(10)) == []
    assert await claim(store, at(11)) == ["r1", "r2", "r3"]


async def test_retry_run_puts_a_failed_run_back_to_pending(store: Store) -> None:
    """retry_run makes a failed run pending again with one more allowed attempt."""
    await apply(store, runs=[new_run("r1", attempts=1)])
    await claim(store, at(1))
    await apply(store, run_updates=[RunUpdate("r1", "failed", 1, at(2), None, at(2), "boom")])
    run = await store.retry_run("r1", at(3))
    assert (run.status, run.attempt, run.max_attempts) == ("pending", 1, 2)
    assert (run.error, run.finished_at, run.not_before, run.updated_at) == (None, None, None, at(3))
    assert await store.get_run("r1") == run
    assert await claim(store, at(4)) == ["r1"]


async def test_run_notes_merge_by_key_and_outlive_results_and_retries(store: Store) -> None:
    """A note replaces only the keys it names, whole; a run's result and an operator's retry
    keep the notes (the next attempt needs them); an unknown run is ignored."""
    await apply(store, runs=[new_run("r1", attempts=1)])
    await claim(store, at(1))
    await apply(store, run_notes=[RunNote("r1", {"process": {"pgid": 7, "boot": "b"}})])
    await apply(
        store,
        run_notes=[
            RunNote("r1", {"downstream": {"id": "x", "url": None}}),
            RunNote("r1", {"process": {"pgid": 9}}),
            RunNote("ghost", {"process": {"pgid": 1}}),
        ],
    )
    await apply(store, run_updates=[RunUpdate("r1", "failed", 1, at(2), None, at(2), "boom")])
    expected = {"process": {"pgid": 9}, "downstream": {"id": "x", "url": None}}
    assert (await store.get_run("r1")).notes == expected  # type: ignore[union-attr]
    assert (await store.retry_run("r1", at(3))).notes == expected
    assert [r.notes for r in await store.list_runs()] == [expected]


async def test_a_cancel_request_keeps_a_run_from_being_claimed_and_is_listed(
    store: Store,
) -> None:
    """request_cancel marks a pending or running run (the first request is kept); a marked
    pending run is not claimed; cancel_requests lists marked runs until they end."""
    await apply(store, runs=[new_run("r1"), new_run("r2", created=1), new_run("r3", created=2)])
    assert await claim(store, at(1), limit=1) == ["r1"]
    running = await store.request_cancel("r1", "cli:ann", at(2))
    assert (running.status, running.cancel_requested) == (
        "running",
        {"by": "cli:ann", "at": at(2).isoformat()},
    )
    again = await store.request_cancel("r1", "cli:bob", at(3))
    assert again.cancel_requested == running.cancel_requested
    await store.request_cancel("r2", "api:ops", at(2))
    assert await claim(store, at(4)) == ["r3"]
    assert sorted(r.run_id for r in await store.cancel_requests()) == ["r1", "r2"]
    await apply(store, run_updates=[RunUpdate("r2", "cancelled", 0, at(5), None, at(5), "x")])
    assert [r.run_id for r in await store.cancel_requests()] == ["r1"]
    assert (await store.counts())["runs_cancelled"] == 1


async def test_only_pending_and_running_runs_can_be_cancelled_and_a_cancelled_one_retried(
    store: Store,
) -> None:
    await apply(store, runs=[new_run("r1", attempts=1)])
    with pytest.raises(StoreError, match="no run"):
        await store.request_cancel("ghost", "cli:ann", at(1))
    await store.request_cancel("r1", "cli:ann", at(1))
    await apply(store, run_updates=[RunUpdate("r1", "cancelled", 0, at(2), None, at(2), "x")])
    with pytest.raises(StoreError, match="cancelled: only a pending or running run"):
        await store.request_cancel("r1", "cli:ann", at(3))
    retried = await store.retry_run("r1", at(4))
    assert (retried.status, retried.cancel_requested, retried.max_attempts) == ("pending", None, 1)
    assert await claim(store, at(5)) == ["r1"]


def test_a_note_key_must_be_a_name() -> None:
    """Keys become JSON paths in SQLite: only names are accepted."""
    with pytest.raises(ValueError, match="not a name"):
        RunNote("r1", {'a"b': 1})


async def test_retry_run_refuses_runs_that_are_missing_or_not_failed(store: Store) -> None:
    """retry_run raises StoreError for an unknown run and for a run that has not failed."""
    await apply(store, runs=[new_run("r1")])
    with pytest.raises(StoreError, match="pending"):
        await store.retry_run("r1", at(1))
    with pytest.raises(StoreError, match="no run"):
        await store.retry_run("ghost", at(1))


async def test_next_run_due_is_the_earliest_pending_not_before(store: Store) -> None:
    """next_run_due is None without pending runs, else the earliest not_before (min if unset)."""
    assert await store.next_run_due() is None
    await apply(store, runs=[new_run("r1"), new_run("r2", created=1)])
    await apply(
        store,
        run_updates=[
            RunUpdate("r1", "pending", 0, at(1), not_before=at(40)),
            RunUpdate("r2", "pending", 0, at(1), not_before=at(20)),
        ],
    )
    assert await store.next_run_due() == at(20)
    await apply(store, runs=[new_run("r3", created=2)])
    assert await store.next_run_due() == datetime.min.replace(tzinfo=UTC)


async def test_list_runs_newest_first_with_filters(store: Store) -> None:
    """list_runs orders by created_at then run_id, newest first, filtered by rule and status."""
    await apply(store, runs=[new_run("a1", "a", 1), new_run("b1", "b", 2), new_run("a2", "a", 2)])
    await claim(store, at(5), limit=1)
    assert [r.run_id for r in await store.list_runs()] == ["b1", "a2", "a1"]
    assert [r.run_id for r in await store.list_runs(rule="a")] == ["a2", "a1"]
    assert [r.run_id for r in await store.list_runs(status="running")] == ["a1"]
    assert [r.run_id for r in await store.list_runs(rule="b", status="pending")] == ["b1"]
    assert [r.run_id for r in await store.list_runs(limit=1)] == ["b1"]


# --- timers ------------------------------------------------------------------------------


async def test_timers_add_replace_due_next_and_delete(store: Store) -> None:
    """Timers are unique by (kind, rule, key, generation), listed when due, and deletable."""
    assert await store.next_timer_due() is None
    t1, t2 = Timer("expiry", "r", "k1", 1, at(30)), Timer("expiry", "r", "k2", 1, at(10))
    await apply(store, timers_add=[t1, t2, Timer("deadline", "r", "k1", 1, at(50))])
    assert await store.next_timer_due() == at(10)
    assert await store.due_timers(at(9), 10) == []
    assert await store.due_timers(at(30), 10) == [t2, t1]
    assert await store.due_timers(at(30), 1) == [t2]
    moved = Timer("expiry", "r", "k2", 1, at(40))
    await apply(store, timers_add=[moved], timers_delete=[("expiry", "r", "k1", 1)])
    assert await store.due_timers(at(45), 10) == [moved]
    assert (await store.counts())["timers"] == 2


async def test_timers_lists_every_timer_soonest_first(store: Store) -> None:
    """``timers`` reads every timer (due or not), soonest first, up to ``limit``."""
    await apply(
        store,
        timers_add=[Timer("expiry", "r", "k1", 1, at(30)), Timer("deadline", "r", "k2", 1, at(5))],
    )
    assert [t.key for t in await store.timers(10)] == ["k2", "k1"]
    assert len(await store.timers(1)) == 1


async def test_a_timer_added_and_deleted_in_one_batch_is_gone(store: Store) -> None:
    """Within one apply, timers are added before deletes, so schedule-then-cancel leaves none."""
    await apply(
        store,
        timers_add=[Timer("expiry", "r", "k", 1, at(5))],
        timers_delete=[("expiry", "r", "k", 1)],
    )
    assert await store.next_timer_due() is None


async def test_datetimes_in_other_timezones_compare_as_instants(store: Store) -> None:
    """A due time given in another timezone is compared by its instant in UTC."""
    plus2 = timezone(timedelta(hours=2))
    await apply(store, timers_add=[Timer("expiry", "r", "k", 1, at(30).astimezone(plus2))])
    assert await store.due_timers(at(29), 10) == []
    [timer] = await store.due_timers(at(30), 10)
    assert timer.due == at(30)
    assert timer.due.utcoffset() == timedelta(0)


async def test_naive_datetimes_are_refused_and_apply_writes_nothing(store: Store) -> None:
    """apply with a naive datetime raises StoreError and writes none of the batch."""
    naive = Timer("expiry", "r", "k", 1, datetime(2024, 1, 1))
    async with store.transaction() as tx:
        with pytest.raises(StoreError, match="naive"):
            await tx.apply(Changes(events=[stored_event("e1")], timers_add=[naive]))
    assert (await store.counts())["events"] == 0


async def test_values_that_are_not_json_are_refused(store: Store) -> None:
    """A payload or cursor that JSON cannot hold raises StoreError naming what it was."""
    event = dataclasses.replace(stored_event("e1"), payload={"tags": {"a", "b"}})
    with pytest.raises(StoreError, match="payload of event e1"):
        await apply(store, events=[event])
    with pytest.raises(StoreError, match="cursor 'a' of sensor 'lake'"):
        await apply(store, cursors={("lake", "a"): {1, 2}})
    assert await store.counts() == dict.fromkeys(COUNT_KEYS, 0)


# --- outbox, inbox, cursors --------------------------------------------------------------


async def test_outbox_is_per_publisher_oldest_first_and_deletable(store: Store) -> None:
    """fetch_outbox returns one publisher's events oldest first with ids; delete removes them."""
    await apply(
        store, outbox=[OutboxItem("kafka", completion(1)), OutboxItem("file", completion(2))]
    )
    await apply(store, outbox=[OutboxItem("kafka", completion(3))])
    items = await store.fetch_outbox("kafka", 10)
    assert [i.event for i in items] == [completion(1), completion(3)]
    assert all(i.publisher == "kafka" for i in items)
    assert items[0].id < items[1].id
    assert [i.event.id for i in await store.fetch_outbox("kafka", 1)] == ["ce-1"]
    await store.delete_outbox([items[0].id])
    assert [i.event.id for i in await store.fetch_outbox("kafka", 10)] == ["ce-3"]
    assert [i.event.id for i in await store.fetch_outbox("file", 10)] == ["ce-2"]


async def test_inbox_add_fetch_and_delete(store: Store) -> None:
    """Inbox items get increasing ids, are fetched oldest first, and deleted by Changes."""
    first = await store.add_inbox(inbox_item(1))
    await apply(store, inbox_add=[inbox_item(2), inbox_item(3)])
    items = await store.fetch_inbox(10)
    assert items[0].id == first
    assert [i.partition["dt"] for i in items] == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert items[0] == dataclasses.replace(inbox_item(1), id=first)
    assert len(await store.fetch_inbox(2)) == 2
    await apply(store, inbox_delete=[items[0].id, items[2].id])
    assert [i.id for i in await store.fetch_inbox(10)] == [items[1].id]


async def test_inbox_ids_are_not_reused_after_delete(store: Store) -> None:
    """A new inbox item never gets the id of a deleted one."""
    first = await store.add_inbox(inbox_item(1))
    await apply(store, inbox_delete=[first])
    assert await store.add_inbox(inbox_item(2)) > first


async def test_cursors_upsert_load_and_delete_per_sensor(store: Store) -> None:
    """Cursors are upserted by (sensor, key), loaded per sensor, and deleted by key."""
    await apply(store, cursors={("lake", "a"): {"etag": "1"}, ("lake", "b"): 5, ("mqtt", "a"): []})
    await apply(store, cursors={("lake", "a"): {"etag": "2"}})
    assert await store.load_cursors("lake") == {"a": {"etag": "2"}, "b": 5}
    await store.delete_cursors("lake", ["a", "zzz"])
    assert await store.load_cursors("lake") == {"b": 5}
    assert await store.load_cursors("mqtt") == {"a": []}
    assert await store.load_cursors("none") == {}


# --- counts, transactions, lifecycle -----------------------------------------------------


async def test_both_stores_implement_the_store_protocol(store: Store) -> None:
    """Each store is a runtime instance of the Store protocol."""
    assert isinstance(store, Store)


async def test_counts_has_exactly_the_documented_keys(store: Store) -> None:
    """counts() returns every documented key, zero on an empty store and counted after writes."""
    assert await store.counts() == dict.fromkeys(COUNT_KEYS, 0)
    await apply(
        store,
        events=[stored_event("e1")],
        matches={("r", "k"): match("r", "k")},
        runs=[new_run("r1")],
        timers_add=[Timer("expiry", "r", "k", 1, at(5))],
        outbox=[OutboxItem("file", completion(1))],
        inbox_add=[inbox_item(1)],
        deadletters=[deadletter("d1")],
    )
    expected = dict.fromkeys(COUNT_KEYS, 0)
    expected.update(
        events=1, matches_open=1, runs_pending=1, timers=1, outbox=1, inbox=1, deadletters=1
    )
    assert await store.counts() == expected


async def test_a_transaction_body_that_raises_commits_nothing(store: Store) -> None:
    """An exception in the transaction body discards its writes and claims."""
    await apply(store, runs=[new_run("r1")])

    async def crash() -> None:
        async with store.transaction() as tx:
            await tx.claim_runs(at(1), 10, {})
            await tx.apply(
                Changes(
                    events=[stored_event("e1")],
                    cursors={("lake", "a"): 1},
                    matches={("r", "k"): match("r", "k")},
                    timers_add=[Timer("expiry", "r", "k", 1, at(5))],
                    outbox=[OutboxItem("file", completion(1))],
                )
            )
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        await crash()
    expected = dict.fromkeys(COUNT_KEYS, 0)
    expected["runs_pending"] = 1
    assert await store.counts() == expected
    assert await store.load_cursors("lake") == {}
    run = await store.get_run("r1")
    assert run is not None
    assert run.attempt == 0


async def test_a_cancelled_transaction_commits_nothing_and_the_store_stays_usable(
    store: Store,
) -> None:
    """Cancelling a task inside its transaction rolls the transaction back."""
    applied = asyncio.Event()

    async def body() -> None:
        async with store.transaction() as tx:
            await tx.apply(Changes(events=[stored_event("e1")]))
            applied.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(body())
    await applied.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await store.counts())["events"] == 0
    await apply(store, events=[stored_event("e2")])
    assert (await store.counts())["events"] == 1


async def test_transactions_are_serialised(store: Store) -> None:
    """A second transaction starts only after the first has committed."""
    order: list[str] = []
    entered = asyncio.Event()

    async def first() -> None:
        async with store.transaction() as tx:
            entered.set()
            order.append("first begins")
            await asyncio.sleep(0.05)
            await tx.apply(Changes(events=[stored_event("e1")]))
            order.append("first ends")

    async def second() -> None:
        await entered.wait()
        async with store.transaction() as tx:
            order.append("second begins")
            assert await tx.seen_events(["e1"]) == {"e1"}

    await asyncio.gather(first(), second())
    assert order == ["first begins", "first ends", "second begins"]


async def test_store_methods_inside_own_transaction_raise_instead_of_deadlocking(
    store: Store,
) -> None:
    """Calling a store method from the task that holds the open transaction raises StoreError."""
    async with store.transaction():
        with pytest.raises(StoreError, match="transaction"):
            await store.counts()


async def test_a_transaction_cannot_be_used_after_it_ends(store: Store) -> None:
    """Using a Transaction after its block has exited raises ClosedError."""
    async with store.transaction() as tx:
        pass
    with pytest.raises(ClosedError):
        await tx.seen_events(["e1"])


async def test_close_is_idempotent_and_a_closed_store_refuses_use(store: Store) -> None:
    """close() may be called twice; afterwards operations and transactions raise ClosedError."""
    await store.close()
    await store.close()
    with pytest.raises(ClosedError, match="is closed"):
        await store.counts()
    with pytest.raises(ClosedError, match="is closed"):
        async with store.transaction():
            pass
    with pytest.raises(ClosedError):
        await store.open()


async def test_a_store_that_was_never_opened_says_so(tmp_path: Path) -> None:
    """Using a store before open() raises StoreError with a hint to open it."""
    for s in (MemoryStore(), SQLiteStore(tmp_path / "s.db")):
        with pytest.raises(StoreError, match="not open"):
            await s.counts()
        await s.close()


# --- choosing a store by DSN -------------------------------------------------------------


def test_open_store_picks_the_class_by_scheme(tmp_path: Path) -> None:
    """open_store maps memory:// and sqlite:// DSNs to their stores, resolving relative paths."""
    assert isinstance(open_store("memory://", tmp_path), MemoryStore)
    rel = open_store("sqlite:///.eventflow/state.db", tmp_path)
    assert isinstance(rel, SQLiteStore)
    assert rel.path == tmp_path / ".eventflow" / "state.db"
    assert rel.synchronous == "full"
    absolute = open_store("sqlite:////var/lib/ef/state.db?synchronous=normal", tmp_path)
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == Path("/var/lib/ef/state.db")
    assert absolute.synchronous == "normal"


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgres2://db/x", "no state store for the DSN scheme 'postgres2'"),
        ("state.db", "has no scheme"),
        ("sqlite://host/state.db", "bad SQLite state DSN"),
        ("sqlite:///", "names no file"),
        ("sqlite:///s.db?synchronous=sometimes", "synchronous='sometimes'"),
        ("sqlite:///s.db?journal=off", "unknown option"),
        ("memory://x", "bad in-memory store DSN"),
    ],
)
def test_open_store_rejects_bad_dsns_with_a_hint(tmp_path: Path, dsn: str, message: str) -> None:
    """A DSN with an unknown scheme or bad parts raises StoreError that says what to write."""
    with pytest.raises(StoreError, match=message) as info:
        open_store(dsn, tmp_path)
    assert info.value.hint


async def test_get_match_match_counts_and_runs_by_key(store: Store) -> None:
    """get_match reads one rule's state for one key, match_counts counts per rule and
    status, and list_runs filters by partition key."""
    matches = [match("r1", "k1"), match("r1", "k2", "fired"), match("r2", "k1")]
    await apply(store, matches={(m.rule, m.key): m for m in matches})
    found = await store.get_match("r1", "k2")
    assert found is not None
    assert found.key == "k2"
    assert await store.get_match("r1", "nope") is None
    assert found.status == "fired"
    assert await store.match_counts() == {"r1": {"open": 1, "fired": 1}, "r2": {"open": 1}}
    other = dataclasses.replace(new_run("b", rule="r1"), key='{"dt":"2024-01-02"}')
    await apply(store, runs=[new_run("a", rule="r1"), other])
    assert [r.run_id for r in await store.list_runs(rule="r1", key=other.key)] == ["b"]


async def test_committed_reads_see_the_last_commit_without_waiting(store: Store) -> None:
    """committed_seen_events and committed_matches answer from the last commit while a
    transaction is open, without its uncommitted writes and without waiting for it."""
    await apply(store, events=[stored_event("e1")], matches={("r", "k1"): match("r", "k1")})
    async with store.transaction() as tx:
        await tx.apply(
            Changes(events=[stored_event("e2")], matches={("r", "k2"): match("r", "k2")})
        )
        seen = await asyncio.wait_for(store.committed_seen_events(["e1", "e2"]), timeout=5)
        assert seen == {"e1"}
        found = await asyncio.wait_for(store.committed_matches([("r", "k1"), ("r", "k2")]), 5)
        assert set(found) == {("r", "k1")}
    assert await store.committed_seen_events(["e1", "e2"]) == {"e1", "e2"}
