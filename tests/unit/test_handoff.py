"""The hand-off loop (``eventflow.tasks.handoff``) against a scripted stand-in system.

The real systems (Airflow, Dagster, Prefect) are tested in ``tests/handoff/``; here the loop's
decisions are pinned down: adopt, submit or re-run; poll to a terminal state; cancel at the
timeout; retry what is retriable for ``retry_for`` and no longer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from eventflow.events import JSON
from eventflow.tasks.handoff import (
    DownstreamRun,
    Handoff,
    HandoffError,
    HandoffSettings,
    HandoffTask,
    downstream_key,
)
from eventflow.types import OPERATOR_CANCEL, PluginEnv, RunContext

ENV = PluginEnv(pipeline="demo", base_dir=Path("."))


class Scripted:
    """A downstream system whose polls answer the given states in turn (the last repeats)."""

    system: ClassVar[str] = "scripted"

    def __init__(self, states: list[str], existing: DownstreamRun | None = None) -> None:
        self.states = states
        self.existing = existing
        self.calls: list[str] = []
        self.errors: list[HandoffError] = []
        self.polls = 0

    def _run(self, state: str, run_id: str = "d-1") -> DownstreamRun:
        outcome: Any = {"ok": "succeeded", "bad": "failed", "stop": "cancelled"}.get(
            state, "running"
        )
        return DownstreamRun(
            run_id, f"http://ui/{run_id}", state, outcome, "boom" * (state == "bad")
        )

    def _maybe_fail(self) -> None:
        if self.errors:
            raise self.errors.pop(0)

    async def find(self, ctx: RunContext) -> DownstreamRun | None:
        self.calls.append("find")
        self._maybe_fail()
        return self.existing

    async def submit(self, ctx: RunContext) -> DownstreamRun:
        self.calls.append(f"submit {downstream_key(ctx)}")
        self._maybe_fail()
        return self._run("queued")

    async def rerun(self, run: DownstreamRun, ctx: RunContext) -> DownstreamRun:
        self.calls.append(f"rerun {run.id}")
        return replace(run, state="queued", outcome="running")

    async def poll(self, run: DownstreamRun) -> DownstreamRun:
        self.calls.append("poll")
        self._maybe_fail()
        state = self.states[min(self.polls, len(self.states) - 1)]
        self.polls += 1
        return self._run(state, run.id)

    async def cancel(self, run: DownstreamRun) -> None:
        self.calls.append(f"cancel {run.id}")
        self.states = ["stop"]

    async def close(self) -> None:
        self.calls.append("close")


class Options(HandoffSettings):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Config(BaseModel):
    scripted: Options = Options(poll="10ms", poll_max="20ms", retry_for="1s")  # type: ignore[arg-type]


class ScriptedTask(HandoffTask):
    config_model: ClassVar[type[BaseModel]] = Config
    system: Scripted

    def build(self) -> Handoff:
        return self.system

    def settings(self) -> HandoffSettings:
        assert isinstance(self.config, Config)
        return self.config.scripted


def task(system: Scripted) -> ScriptedTask:
    runner = ScriptedTask({}, ENV)
    runner.system = system
    return runner


class Notes:
    def __init__(self) -> None:
        self.seen: list[Mapping[str, JSON]] = []

    async def __call__(self, facts: Mapping[str, JSON]) -> None:
        self.seen.append(dict(facts))


def context(tmp_path: Path, notes: Notes, *, timeout: float | None = None) -> RunContext:
    return RunContext(
        run_id="run_abc",
        rule="report",
        attempt=1,
        partition={"dt": "2024-01-01"},
        inputs=(),
        events_file=tmp_path / "events.json",
        stdout_path=tmp_path / "out",
        stderr_path=tmp_path / "err",
        timeout=timeout,
        log_max_bytes=4096,
        variables={"dt": "2024-01-01"},
        pipeline="sales daily/eu",
        note=notes,
    )


def test_the_downstream_key_is_the_pipeline_and_run_id_in_safe_characters(
    tmp_path: Path,
) -> None:
    """Without a store identity (a store never started), the key is pipeline and run id."""
    assert downstream_key(context(tmp_path, Notes())) == "eventflow__sales-daily-eu__run_abc"


STORE_A, STORE_B = "0123456789abcdef" * 2, "fedcba9876543210" * 2


def test_the_downstream_key_holds_the_store_so_environments_never_collide(
    tmp_path: Path,
) -> None:
    """Two stores (staging, production) with the same pipeline and run id give two keys."""
    a = replace(context(tmp_path, Notes()), store_id=STORE_A)
    b = replace(context(tmp_path, Notes()), store_id=STORE_B)
    assert downstream_key(a) == "eventflow__sales-daily-eu__0123456789ab__run_abc"
    assert downstream_key(b) == "eventflow__sales-daily-eu__fedcba987654__run_abc"


def test_a_run_handed_off_before_the_upgrade_keeps_its_key(tmp_path: Path) -> None:
    """A downstream note without a key (written before keys held the store) keeps the
    earlier key; a noted key is kept as it is, whatever the store's identity now."""
    legacy = {"system": "scripted", "id": "d-1", "url": None, "state": "running"}
    old = replace(context(tmp_path, Notes()), store_id=STORE_A, notes={"downstream": legacy})
    assert downstream_key(old) == "eventflow__sales-daily-eu__run_abc"
    keyed = {**legacy, "key": "eventflow__sales-daily-eu__fedcba987654__run_abc"}
    new = replace(context(tmp_path, Notes()), store_id=STORE_A, notes={"downstream": keyed})
    assert downstream_key(new) == keyed["key"]


async def test_each_note_holds_the_key_the_run_handed_off_under(tmp_path: Path) -> None:
    """The downstream note names the key, so every later attempt uses the same one; an
    attempt after the upgrade of a run noted without one notes the earlier key."""
    system = Scripted(["ok"])
    notes = Notes()
    ctx = replace(context(tmp_path, notes), store_id=STORE_A)
    assert (await task(system).run(ctx)).ok
    assert system.calls[1] == "submit eventflow__sales-daily-eu__0123456789ab__run_abc"
    assert {n["downstream"]["key"] for n in notes.seen} == {  # type: ignore[index]
        "eventflow__sales-daily-eu__0123456789ab__run_abc"
    }
    legacy = {"system": "scripted", "id": "d-1", "url": None, "state": "running"}
    found = DownstreamRun("d-1", None, "running", "running")
    system, notes = Scripted(["ok"], existing=found), Notes()
    ctx = replace(context(tmp_path, notes), store_id=STORE_A, notes={"downstream": legacy})
    assert (await task(system).run(ctx)).ok
    assert system.calls[0] == "find"
    assert {n["downstream"]["key"] for n in notes.seen} == {  # type: ignore[index]
        "eventflow__sales-daily-eu__run_abc"
    }


async def test_submits_notes_and_succeeds_only_when_the_downstream_run_did(tmp_path: Path) -> None:
    """Nothing found: submit, note the downstream run at once, poll until it succeeded; each
    change of state is noted, and the result names the downstream run."""
    system = Scripted(["queued", "running", "running", "ok"])
    notes = Notes()
    result = await task(system).run(context(tmp_path, notes))
    assert result.ok, result.detail
    assert system.calls[:2] == ["find", "submit eventflow__sales-daily-eu__run_abc"]
    assert system.calls.count("poll") == 4
    assert [n["downstream"]["state"] for n in notes.seen] == ["queued", "running", "ok"]  # type: ignore[index]
    assert result.output["downstream"] == {
        "system": "scripted",
        "id": "d-1",
        "url": "http://ui/d-1",
        "state": "ok",
        "outcome": "succeeded",
    }


async def test_adopts_a_run_an_earlier_attempt_started(tmp_path: Path) -> None:
    """A run found under the key (an attempt before a crash started it) is waited for, not
    started again; one that already succeeded succeeds without a poll."""
    running = DownstreamRun("d-7", None, "running", "running")
    system = Scripted(["ok"], existing=running)
    assert (await task(system).run(context(tmp_path, Notes()))).ok
    assert system.calls == ["find", "poll"]

    done = Scripted(["ok"], existing=replace(running, state="ok", outcome="succeeded"))
    assert (await task(done).run(context(tmp_path, Notes()))).ok
    assert done.calls == ["find"]


async def test_a_failed_downstream_run_fails_the_attempt_and_the_next_one_reruns_it(
    tmp_path: Path,
) -> None:
    system = Scripted(["bad"])
    result = await task(system).run(context(tmp_path, Notes()))
    assert not result.ok
    assert result.detail == "scripted run d-1 ended bad: boom"

    again = Scripted(["ok"], existing=DownstreamRun("d-1", None, "bad", "failed"))
    assert (await task(again).run(context(tmp_path, Notes()))).ok
    assert again.calls == ["find", "rerun d-1", "poll"]


async def test_the_timeout_cancels_the_downstream_run(tmp_path: Path) -> None:
    system = Scripted(["running"])
    notes = Notes()
    result = await task(system).run(context(tmp_path, notes, timeout=0.2))
    assert not result.ok
    assert result.detail == "timed out after 200ms"
    assert result.output["timed_out"] is True
    assert "cancel d-1" in system.calls
    assert notes.seen[-1]["downstream"]["outcome"] == "cancelled"  # type: ignore[index]


async def test_retriable_errors_are_retried_and_others_fail_the_attempt(tmp_path: Path) -> None:
    system = Scripted(["ok"])
    system.errors = [HandoffError("HTTP 503", retriable=True)] * 2
    assert (await task(system).run(context(tmp_path, Notes()))).ok
    assert system.calls[:3] == ["find", "find", "find"]

    refused = Scripted(["ok"])
    refused.errors = [HandoffError("find: GET http://x/ answered HTTP 404", retriable=False)]
    result = await task(refused).run(context(tmp_path, Notes()))
    assert (result.ok, result.detail) == (False, "find: GET http://x/ answered HTTP 404")


async def test_a_system_unreachable_for_longer_than_retry_for_fails_the_attempt(
    tmp_path: Path,
) -> None:
    system = Scripted(["ok"])
    system.errors = [HandoffError("connection refused", retriable=True)] * 100
    runner = task(system)
    runner.config = Config(scripted=Options(retry_for="0s"))  # type: ignore[arg-type]
    result = await runner.run(context(tmp_path, Notes()))
    assert (result.ok, result.detail) == (False, "connection refused")


async def test_close_closes_the_adapter_once(tmp_path: Path) -> None:
    system = Scripted(["ok"])
    runner = task(system)
    await runner.run(context(tmp_path, Notes()))
    await runner.close()
    await runner.close()
    assert system.calls.count("close") == 1


@pytest.mark.parametrize("state", ["ok", "bad"])
async def test_every_result_carries_the_downstream_run(tmp_path: Path, state: str) -> None:
    result = await task(Scripted([state])).run(context(tmp_path, Notes()))
    assert result.output["downstream"]["id"] == "d-1"  # type: ignore[index]


async def test_an_operator_cancel_cancels_the_downstream_run_and_a_shutdown_does_not(
    tmp_path: Path,
) -> None:
    for message, cancels in ((OPERATOR_CANCEL, True), (None, False)):
        system = Scripted(["running"])
        runner = task(system)
        attempt = asyncio.create_task(runner.run(context(tmp_path, Notes())))
        for _ in range(500):  # until the attempt is waiting for the downstream run
            if "poll" in system.calls:
                break
            await asyncio.sleep(0.01)
        attempt.cancel(message)
        with pytest.raises(asyncio.CancelledError):
            await attempt
        assert ("cancel d-1" in system.calls) is cancels
