"""Paged runs (the view the CLI, the API and the page read) over every store: the pages of a
few thousand runs cover each exactly once, newest first, with the right totals and filters,
while runs keep arriving."""

from __future__ import annotations

from datetime import timedelta

import pytest

from eventflow.events import partition_key
from eventflow.records import DeadLetter, NewRun, RunRecord, RunUpdate
from eventflow.types import Store
from eventflow.views import paging
from eventflow.views.deadletters import deadletter_page
from eventflow.views.runs import run_page
from tests.integration import test_store_contract as contract
from tests.integration.test_store_contract import apply, at

store = contract.store
"""The fixture of the store contract: memory, SQLite and PostgreSQL."""
RUNS = 3000
RULES = ("hourly", "daily", "backfill")


def new_run(n: int) -> NewRun:
    """Run ``n``: three runs share each creation time (the run id breaks the tie)."""
    partition = {"dt": f"d{n % 10}"}
    return NewRun(
        run_id=f"run_{n:05d}",
        rule=RULES[n % len(RULES)],
        key=partition_key(partition),
        partition=partition,
        generation=n,
        inputs=(),
        max_attempts=1,
        created_at=at(n // 3),
    )


async def fill(store: Store) -> None:
    for start in range(0, RUNS, 500):
        await apply(store, runs=[new_run(n) for n in range(start, min(start + 500, RUNS))])
    failed = [RunUpdate(f"run_{n:05d}", "failed", 1, at(9999)) for n in range(0, RUNS, 7)]
    await apply(store, run_updates=failed)


async def every_page(store: Store, limit: int, **filters: object) -> list[RunRecord]:
    """Every run the filters select, page by page; each page's total is checked."""
    found: list[RunRecord] = []
    cursor = None
    expected = await store.count_runs(**{k: v for k, v in filters.items() if k != "partition"})
    while True:
        page = await run_page(store, limit=limit, cursor=cursor, **filters)
        assert len(page.items) <= limit
        found.extend(page.items)
        if "partition" not in filters:
            assert page.total == expected
        if page.next is None:
            return found
        cursor = page.next


def order(records: list[RunRecord]) -> list[tuple[object, str]]:
    return [(r.created_at, r.run_id) for r in records]


async def test_pages_cover_every_run_once_newest_first(store: Store) -> None:
    """Pages of 97 list all 3,000 runs exactly once in (created_at, run_id) descending order,
    each page with the total; the last page says there is no next."""
    await fill(store)
    found = await every_page(store, 97)
    assert len(found) == RUNS
    assert len({r.run_id for r in found}) == RUNS
    assert order(found) == sorted(order(found), reverse=True)
    first = await run_page(store, limit=50)
    assert first.total == RUNS
    assert [r.run_id for r in first.items] == [r.run_id for r in found[:50]]


async def test_filters_select_what_they_name(store: Store) -> None:
    """Rule, status, partition and the since/until window select exactly the runs they
    name, paged and counted the same way."""
    await fill(store)
    everything = await every_page(store, 1000)
    cases: list[tuple[dict[str, object], object]] = [
        ({"rule": "daily"}, lambda r: r.rule == "daily"),
        ({"status": "failed"}, lambda r: r.status == "failed"),
        ({"partition": {"dt": "d3"}}, lambda r: r.partition == {"dt": "d3"}),
        (
            {"since": at(100), "until": at(200)},
            lambda r: at(100) <= r.created_at < at(200),
        ),
        (
            {"rule": "hourly", "status": "failed", "since": at(500)},
            lambda r: r.rule == "hourly" and r.status == "failed" and r.created_at >= at(500),
        ),
    ]
    for filters, wanted in cases:
        expected = [r.run_id for r in everything if wanted(r)]
        assert expected, filters
        paged = await every_page(store, 61, **filters)
        assert [r.run_id for r in paged] == expected, filters
        assert (await run_page(store, limit=1, **filters)).total == len(expected)


async def test_a_page_stays_right_while_runs_arrive(store: Store) -> None:
    """Runs created after the first page was read do not shift the later pages: no run is
    skipped or listed twice."""
    await apply(store, runs=[new_run(n) for n in range(300)])
    first = await run_page(store, limit=100)
    await apply(store, runs=[new_run(n) for n in range(300, 330)])
    rest = await every_page_from(store, first.next)
    listed = [r.run_id for r in [*first.items, *rest]]
    assert listed == [f"run_{n:05d}" for n in range(299, -1, -1)]


async def every_page_from(store: Store, cursor: str | None) -> list[RunRecord]:
    found: list[RunRecord] = []
    while cursor is not None:
        page = await run_page(store, limit=100, cursor=cursor)
        found.extend(page.items)
        cursor = page.next
    return found


@pytest.mark.parametrize("cursor", ["nope", "bm9wZQ", paging.encode(at(0), "x")[:-3] + "!!"])
async def test_a_cursor_no_page_gave_is_refused(store: Store, cursor: str) -> None:
    """A cursor that is not base64 of a position is a BadCursor that says what to pass."""
    with pytest.raises(paging.BadCursor, match="pass the `next`"):
        await run_page(store, cursor=cursor)


def test_times_are_iso_or_a_duration_ago() -> None:
    """`--since 2h` is two hours before now; a time without an offset is UTC."""
    now = at(600)
    assert paging.parse_time("2h", now) == now - timedelta(hours=2)
    assert paging.parse_time("2024-01-01T06:00:00", now) == at(0)
    assert paging.parse_time("2024-01-01T07:00:00+01:00", now) == at(0)
    with pytest.raises(ValueError, match="ISO 8601"):
        paging.parse_time("yesterday", now)


def dead_letter(n: int) -> DeadLetter:
    return DeadLetter(
        event_id=f"dl_{n:05d}",
        sensor=("lake", "plant")[n % 2],
        position={"offset": n},
        error="not JSON",
        excerpt="{oops",
        time=at(n),
    )


async def test_dead_letter_pages_cover_each_once_with_filters(store: Store) -> None:
    """2,000 dead letters page newest first, each once, with totals; the sensor and the
    since/until window select what they name."""
    for start in range(0, 2000, 500):
        await apply(store, deadletters=[dead_letter(n) for n in range(start, start + 500)])
    cases: list[tuple[dict[str, object], list[int]]] = [
        ({}, list(range(1999, -1, -1))),
        ({"sensor": "plant"}, list(range(1999, -1, -2))),
        ({"since": at(100), "until": at(300)}, list(range(299, 99, -1))),
    ]
    for filters, expected in cases:
        listed: list[str] = []
        cursor = None
        while True:
            page = await deadletter_page(store, limit=83, cursor=cursor, **filters)
            assert page.total == len(expected), filters
            listed += [d.letter.event_id for d in page.items]
            cursor = page.next
            if cursor is None:
                break
        assert listed == [f"dl_{n:05d}" for n in expected], filters
