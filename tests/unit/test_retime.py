"""A new version's `within` or deadline moves the timers of open matches at its first start,
in the transaction that records the start (memory and SQLite stores; the SIGKILL test is in
tests/acceptance/test_versions.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from eventflow.config.loader import load_pipeline
from eventflow.events import InputRef, partition_key
from eventflow.migrate import start_version
from eventflow.pipeline import CompiledPipeline
from eventflow.records import Changes, Timer
from eventflow.rules.core import DEADLINE, EXPIRY, PARTITION_TIMER, MatchState
from eventflow.store.memory import MemoryStore
from eventflow.store.sqlite import SQLiteStore
from eventflow.types import Store

V1 = """
name: shop
sensors: {landing: {type: directory, path: ./landing}}
datasets:
  orders: {sensor: landing, key: "orders/{dt}.csv"}
  stock: {sensor: landing, key: "stock/{dt}.csv"}
rules:
  daily:
    when: {all: [orders, stock], by: [dt], within: 1h}
    expect_by: "{dt}T06:00Z + 1d"
    run: {command: [echo, "{dt}"]}
"""
T0 = datetime(2030, 1, 1, 9, tzinfo=UTC)
DT = "2030-01-01"
KEY = partition_key({"dt": DT})
OLD_DEADLINE = datetime(2030, 1, 2, 6, tzinfo=UTC)
LOG = structlog.get_logger()


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    async with s:
        yield s


def compile_(tmp_path: Path, text: str, name: str) -> CompiledPipeline:
    (tmp_path / "landing").mkdir(exist_ok=True)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return load_pipeline(path, environ={})


async def with_open_match(tmp_path: Path, store: Store) -> CompiledPipeline:
    """v1 started, and one open match of `daily` with its expiry and deadline timers."""
    v1 = compile_(tmp_path, V1, "v1")
    await start_version(v1, store, T0, LOG)
    ref = InputRef("e1", "orders", {"dt": DT}, "landing", {"path": "orders/x"}, T0.isoformat())
    match = MatchState(
        "daily",
        KEY,
        {"dt": DT},
        inputs={"orders": (ref,)},
        opened_at=T0,
        expires_at=T0 + timedelta(hours=1),
        updated_at=T0,
        deadline_at=OLD_DEADLINE,
        deadline="pending",
        version=v1.version.rule("daily"),
    )
    changes = Changes(
        matches={("daily", KEY): match},
        timers_add=[
            Timer(EXPIRY, "daily", KEY, 1, T0 + timedelta(hours=1)),
            Timer(DEADLINE, "daily", KEY, PARTITION_TIMER, OLD_DEADLINE),
        ],
    )
    async with store.transaction() as tx:
        await tx.apply(changes)
    return v1


async def timers(store: Store) -> dict[str, datetime]:
    found = await store.due_timers(datetime(9999, 1, 1, tzinfo=UTC), 100)
    return {t.kind: t.due for t in found if t.rule == "daily"}


async def test_a_shorter_window_and_a_later_deadline_move_the_timers(
    tmp_path: Path, store: Store
) -> None:
    """`within` 1h -> 30m and `expect_by` 06:00 -> 08:00: the expiry timer and the match's
    `expires_at` become opened + 30m, the deadline 08:00, in the start's transaction; the
    match keeps the version it opened under; a second start moves nothing."""
    v1 = await with_open_match(tmp_path, store)
    text = V1.replace("within: 1h", "within: 30m").replace("T06:00Z", "T08:00Z")
    v2 = compile_(tmp_path, text, "v2")
    with capture_logs() as logs:
        started = await start_version(v2, store, T0 + timedelta(minutes=5), LOG)
    kinds = {line.kind for line in started.plan.lines}
    assert {"within_changed", "deadline_changed"} <= kinds
    new_deadline = datetime(2030, 1, 2, 8, tzinfo=UTC)
    assert await timers(store) == {EXPIRY: T0 + timedelta(minutes=30), DEADLINE: new_deadline}
    match = await store.get_match("daily", KEY)
    assert match is not None
    assert match.expires_at == T0 + timedelta(minutes=30)
    assert match.deadline_at == new_deadline
    assert match.version == v1.version.rule("daily")
    [moved] = [e for e in logs if e["event"] == "timers_moved"]
    assert (moved["expiry_timers"], moved["deadline_timers"]) == (1, 1)
    assert [s.version for s in await store.list_starts()] == [v2.version.id, v1.version.id]

    with capture_logs() as logs:
        await start_version(v2, store, T0 + timedelta(minutes=6), LOG)
    assert not [e for e in logs if e["event"] == "timers_moved"]
    assert await timers(store) == {EXPIRY: T0 + timedelta(minutes=30), DEADLINE: new_deadline}


async def test_a_window_or_deadline_removed_deletes_its_timer(tmp_path: Path, store: Store) -> None:
    """No `within` and no `expect_by` any more: the open match no longer expires and has no
    pending deadline, and its timers are gone."""
    await with_open_match(tmp_path, store)
    text = V1.replace(", within: 1h", "").replace('    expect_by: "{dt}T06:00Z + 1d"\n', "")
    await start_version(compile_(tmp_path, text, "v2"), store, T0, LOG)
    assert await timers(store) == {}
    match = await store.get_match("daily", KEY)
    assert match is not None
    assert (match.expires_at, match.deadline_at, match.deadline) == (None, None, None)


async def test_a_renamed_rule_with_a_longer_window_moves_its_timers_once(
    tmp_path: Path, store: Store
) -> None:
    """`renamed_from` and `within` 1h -> 2h in one start: the timer moves to the new name
    and to opened + 2h, and the old name keeps none."""
    await with_open_match(tmp_path, store)
    text = V1.replace("  daily:\n", "  daily_v2:\n    renamed_from: daily\n").replace(
        "within: 1h", "within: 2h"
    )
    await start_version(compile_(tmp_path, text, "v2"), store, T0, LOG)
    found = await store.due_timers(datetime(9999, 1, 1, tzinfo=UTC), 100)
    assert {(t.kind, t.rule, t.due) for t in found} == {
        (EXPIRY, "daily_v2", T0 + timedelta(hours=2)),
        (DEADLINE, "daily_v2", OLD_DEADLINE),
    }
    match = await store.get_match("daily_v2", KEY)
    assert match is not None
    assert match.expires_at == T0 + timedelta(hours=2)


async def test_nothing_of_the_start_is_written_before_its_one_commit(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped just before the start's transaction, the store has the old timers and no new
    start (the moves, the migrations and the start are written by that one commit)."""
    v1 = await with_open_match(tmp_path, store)
    v2 = compile_(tmp_path, V1.replace("within: 1h", "within: 30m"), "v2")

    def fail(name: str) -> None:
        if name == "versions.before_commit":
            raise RuntimeError("killed")

    monkeypatch.setattr("eventflow.migrate.crash_point", fail)
    with pytest.raises(RuntimeError):
        await start_version(v2, store, T0, LOG)
    assert (await timers(store))[EXPIRY] == T0 + timedelta(hours=1)
    assert [s.version for s in await store.list_starts()] == [v1.version.id]
