"""The store's identity and pipeline starts: alike in the memory, SQLite and PostgreSQL stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventflow.records import Changes, NewRun, Timer
from eventflow.rules.core import EXPIRY, MatchState
from eventflow.store.memory import MemoryStore
from eventflow.store.postgres import PostgresStore
from eventflow.store.sqlite import SQLiteStore
from eventflow.types import Store
from eventflow.version_records import StoreIdentity, VersionStart

T0 = datetime(2024, 1, 1, tzinfo=UTC)


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


def start(version: str, minutes: int, **kw: object) -> VersionStart:
    return VersionStart(
        version=version,
        pipeline="p",
        environment="production",
        worker="host:1",
        started_at=T0 + timedelta(minutes=minutes),
        rules={"daily": version[:4]},
        definition={"rules": {"daily": {"when": {"all": ["orders"]}}}},
        **kw,  # type: ignore[arg-type]
    )


async def test_the_first_identity_is_kept(store: Store) -> None:
    """The identity claimed first stays; a later claim gets it back unchanged."""
    assert await store.store_identity() is None
    first = StoreIdentity("a" * 32, "production", "p", T0)
    assert await store.claim_identity(first) == first
    again = await store.claim_identity(StoreIdentity("b" * 32, "staging", "p", T0))
    assert again == first
    assert await store.store_identity() == first


async def test_starts_are_listed_newest_first_with_their_definition(store: Store) -> None:
    """Each recorded start comes back whole (definition, git, accepted lines), newest first."""
    await store.record_start(start("aaaa11112222", 0))
    accepted = ({"id": "rules.daily", "accepted_by": "--accept rules.daily"},)
    await store.record_start(
        start("bbbb11112222", 5, git_commit="c0ffee", git_dirty=True, accepted=accepted)
    )
    newest, oldest = await store.list_starts()
    assert (newest.version, oldest.version) == ("bbbb11112222", "aaaa11112222")
    assert newest.seq is not None
    assert oldest.seq is not None
    assert newest.seq > oldest.seq
    assert newest.git_commit == "c0ffee"
    assert newest.git_dirty is True
    assert oldest.git_commit is None
    assert oldest.git_dirty is None
    assert newest.accepted == accepted
    assert newest.definition == {"rules": {"daily": {"when": {"all": ["orders"]}}}}
    assert newest.started_at == T0 + timedelta(minutes=5)
    assert [s.version for s in await store.list_starts(1)] == ["bbbb11112222"]


async def test_a_run_keeps_the_version_of_the_rule_that_fired_it(store: Store) -> None:
    """The pipeline_version given to a new run is read back with it."""
    run = NewRun("run_1", "daily", "k", {"dt": "d"}, 1, (), 1, T0, pipeline_version="abcd12345678")
    old = NewRun("run_2", "daily", "k2", {"dt": "e"}, 1, (), 1, T0)
    async with store.transaction() as tx:
        await tx.apply(Changes(runs=[run, old]))
    got = await store.get_run("run_1")
    assert got is not None
    assert got.pipeline_version == "abcd12345678"
    assert got.to_dict()["pipeline_version"] == "abcd12345678"
    older = await store.get_run("run_2")
    assert older is not None
    assert older.pipeline_version is None


async def test_starts_page_back_by_seq_and_are_counted(store: Store) -> None:
    """``before`` lists only older starts (the next page), ``count_starts`` all of them."""
    for i in range(5):
        await store.record_start(start(f"v{i}" + "0" * 10, i))
    assert await store.count_starts() == 5
    newest = await store.list_starts(2)
    assert [s.version[:2] for s in newest] == ["v4", "v3"]
    assert newest[-1].seq is not None
    rest = await store.list_starts(10, before=newest[-1].seq)
    assert [s.version[:2] for s in rest] == ["v2", "v1", "v0"]
    assert rest[-1].seq is not None
    assert await store.list_starts(10, before=rest[-1].seq) == []


async def test_a_start_commits_with_the_changes_of_its_transaction(store: Store) -> None:
    """A start in ``Changes.starts`` is written by the transaction that holds the timers it
    moved, and not at all when that transaction fails."""
    moved = Timer(EXPIRY, "daily", "k", 1, T0 + timedelta(minutes=30))
    async with store.transaction() as tx:
        await tx.apply(Changes(timers_add=[moved], starts=[start("aaaa11112222", 0)]))
    assert [s.version for s in await store.list_starts()] == ["aaaa11112222"]
    assert await store.due_timers(T0 + timedelta(hours=1), 10) == [moved]
    undone = Changes(timers_delete=[(EXPIRY, "daily", "k", 1)], starts=[start("bbbb11112222", 1)])

    async def fail_before_commit() -> None:
        async with store.transaction() as tx:
            await tx.apply(undone)
            raise RuntimeError("killed before the commit")

    with pytest.raises(RuntimeError):
        await fail_before_commit()
    assert [s.version for s in await store.list_starts()] == ["aaaa11112222"]
    assert await store.due_timers(T0 + timedelta(hours=1), 10) == [moved]


async def test_a_match_keeps_the_version_it_opened_under(store: Store) -> None:
    """The version on a match is read back; a match written before versions has none."""
    opened = MatchState("daily", "k", {"dt": "d"}, opened_at=T0, version="abcd12345678")
    older = MatchState("daily", "k2", {"dt": "e"}, opened_at=T0)
    async with store.transaction() as tx:
        await tx.apply(Changes(matches={("daily", "k"): opened, ("daily", "k2"): older}))
    got = await store.get_match("daily", "k")
    assert got is not None
    assert got.version == "abcd12345678"
    old = await store.get_match("daily", "k2")
    assert old is not None
    assert old.version is None
