"""Pauses in every store (memory, SQLite, PostgreSQL): the pause row and its audit, and the
claim that leaves a paused rule's runs alone until the resume."""

from __future__ import annotations

from eventflow.types import Store
from tests.integration.test_store_contract import apply, at, claim, new_run, store

__all__ = ["store"]


async def test_a_pause_is_kept_with_who_why_and_since_and_audited(store: Store) -> None:
    """Pausing writes the pause (who, why, since) and an audit row; a second pause keeps the
    first and is audited as changing nothing."""
    first = await store.set_pause("rule", "report", "pause", "cli:ana", "late upstream", at(1))
    again = await store.set_pause("rule", "report", "pause", "api:bob", None, at(2))
    assert (first.changed, again.changed) == (True, False)
    [pause] = await store.pauses()
    assert (pause.kind, pause.name, pause.by, pause.reason, pause.since) == (
        "rule",
        "report",
        "cli:ana",
        "late upstream",
        at(1),
    )
    audit = await store.pause_actions()
    assert [(a.by, a.action, a.changed, a.at) for a in audit] == [
        ("api:bob", "pause", False, at(2)),
        ("cli:ana", "pause", True, at(1)),
    ]


async def test_resume_removes_the_pause_and_resuming_what_runs_changes_nothing(
    store: Store,
) -> None:
    """Resume deletes the pause; a second resume is audited with changed False."""
    await store.set_pause("sensor", "lake", "pause", "cli:ana", None, at(1))
    await store.set_pause("rule", "report", "pause", "cli:ana", None, at(1))
    done = await store.set_pause("sensor", "lake", "resume", "cli:ana", None, at(2))
    twice = await store.set_pause("sensor", "lake", "resume", "cli:ana", None, at(3))
    assert (done.changed, twice.changed) == (True, False)
    assert [(p.kind, p.name) for p in await store.pauses()] == [("rule", "report")]
    assert len(await store.pause_actions(limit=2)) == 2
    assert [a.action for a in await store.pause_actions()] == [
        "resume",
        "resume",
        "pause",
        "pause",
    ]


async def test_a_paused_rules_runs_and_its_alerts_are_not_claimed_until_the_resume(
    store: Store,
) -> None:
    """The claim skips the pending runs of a paused rule, of its on_deadline alert and of its
    on_failure and on_missed hooks (and next_run_due does not count them), not those of a rule
    whose name only starts the same; after the resume they are claimed as before."""
    await apply(
        store,
        runs=[
            new_run("r1", rule="report"),
            new_run("a1", rule="report:on_deadline", created=1),
            new_run("h1", rule="report:on_failure", created=2),
            new_run("h2", rule="report:on_missed", created=3),
            new_run("o1", rule="other", created=4),
            new_run("o2", rule="report_daily", created=5),
        ],
    )
    await store.set_pause("rule", "report", "pause", "cli:ana", None, at(6))
    assert await claim(store, at(10)) == ["o1", "o2"]
    assert await store.next_run_due() is None
    await store.set_pause("rule", "report", "resume", "cli:ana", None, at(7))
    assert await store.next_run_due() is not None
    assert await claim(store, at(10)) == ["r1", "a1", "h1", "h2"]


async def test_a_paused_sensor_does_not_hold_any_runs(store: Store) -> None:
    """A sensor's pause leaves every run claimable (only rules hold runs)."""
    await apply(store, runs=[new_run("r1", rule="lake")])
    await store.set_pause("sensor", "lake", "pause", "cli:ana", None, at(1))
    assert await claim(store, at(10)) == ["r1"]
