"""The pause action, the runtime's pause watch and what the views and the page show of a
pause, on the in-memory store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from eventflow.cli.render import paused_text
from eventflow.config.loader import load_pipeline
from eventflow.pause_watch import PauseWatch
from eventflow.pauses import REASON_MAX, UnknownTarget, act
from eventflow.pipeline import CompiledPipeline
from eventflow.server.page_pauses import pause_rows
from eventflow.store.memory import MemoryStore
from eventflow.views.pauses import pauses, with_pause

PIPELINE = """
name: p
state: memory://
sensors:
  landing: {type: directory, path: ./landing}
datasets:
  a: {sensor: landing, key: "a/{dt}.csv"}
rules:
  job:
    when: {all: [a], by: [dt]}
    expect_by: "{dt}T06:00Z"
    on_deadline: {run: {command: [echo, late]}}
    run: {command: [echo, "{dt}"]}
"""


@pytest.fixture
def pipeline(tmp_path: Path) -> CompiledPipeline:
    (tmp_path / "p.yaml").write_text(PIPELINE)
    return load_pipeline(tmp_path / "p.yaml")


class Health:
    def __init__(self) -> None:
        self.seen: list[tuple[bool, str]] = []

    def set_health(self, ok: bool, detail: str = "") -> None:
        self.seen.append((ok, detail))


async def test_act_audits_in_the_log_and_refuses_unknown_names(
    pipeline: CompiledPipeline,
) -> None:
    """A pause is logged under rule_paused with who and why; an unknown rule, a sensor
    named as a rule and a deadline alert (`job:on_deadline`) are refused, naming those
    there are; a long reason is cut."""
    async with MemoryStore() as store:
        with capture_logs() as logs:
            done = await act(pipeline, store, "rule", "job", "pause", "cli:ana", " x" * 400)
        assert done.changed
        assert done.reason is not None
        assert len(done.reason) == REASON_MAX
        [line] = [entry for entry in logs if entry["event"] == "rule_paused"]
        assert (line["rule"], line["by"], line["changed"]) == ("job", "cli:ana", True)
        for kind, name in (("rule", "nope"), ("rule", "landing"), ("rule", "job:on_deadline")):
            with pytest.raises(UnknownTarget, match=r"rules: job$"):
                await act(pipeline, store, kind, name, "pause", "cli:ana")  # type: ignore[arg-type]
        with pytest.raises(UnknownTarget, match="sensors: landing"):
            await act(pipeline, store, "sensor", "job", "resume", "cli:ana")
        assert len(await store.pause_actions()) == 1


async def test_the_watch_stops_a_paused_sensor_and_lets_it_start_again(
    pipeline: CompiledPipeline,
) -> None:
    """A running sensor is cancelled when its pause is read; the next start waits for the
    resume, which also calls on_rule_resumed only when a rule was resumed."""
    async with MemoryStore() as store:
        watch = PauseWatch(store, poll=60)
        resumed: list[bool] = []
        watch.on_rule_resumed = lambda: resumed.append(True)
        await watch.refresh()
        stopped = asyncio.Event()

        async def sensor() -> None:
            try:
                await asyncio.sleep(3600)
            finally:
                stopped.set()

        running = asyncio.create_task(watch.until_paused("landing", sensor()))
        await asyncio.sleep(0)
        await act(pipeline, store, "sensor", "landing", "pause", "api:ops")
        await watch.refresh()
        assert await asyncio.wait_for(running, 5) is False
        assert stopped.is_set()
        health = Health()
        waiting = asyncio.create_task(watch.wait_resumed("landing", health))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        assert health.seen == [(True, "paused by api:ops")]
        await act(pipeline, store, "sensor", "landing", "resume", "api:ops")
        await watch.refresh()
        await asyncio.wait_for(waiting, 5)
        assert resumed == []
        await act(pipeline, store, "rule", "job", "pause", "api:ops")
        await watch.refresh()
        await act(pipeline, store, "rule", "job", "resume", "api:ops")
        await watch.refresh()
        assert resumed == [True]


async def test_a_sensor_that_ends_by_itself_is_not_taken_for_paused() -> None:
    """until_paused returns True when the sensor returns, and passes its failure on."""
    async with MemoryStore() as store:
        watch = PauseWatch(store, poll=60)

        async def ends() -> None:
            return None

        async def fails() -> None:
            raise RuntimeError("broker gone")

        assert await watch.until_paused("s", ends()) is True
        with pytest.raises(RuntimeError, match="broker gone"):
            await watch.until_paused("s", fails())


async def test_views_and_page_show_who_since_and_what_is_held(
    pipeline: CompiledPipeline,
) -> None:
    """A paused rule's view counts its pending runs; the page row of an operator has the
    resume button, a reader's has none; the CLI line says who and how much is held."""
    async with MemoryStore() as store:
        await act(pipeline, store, "rule", "job", "pause", "cli:ana", "db")
        [view] = await pauses(store)
        assert view.held == 0
        item = with_pause({"rule": "job"}, view)
        assert item["paused"]["by"] == "cli:ana"
        assert "kind" not in item["paused"]
        assert with_pause({"rule": "x"}, None)["paused"] is None
        rows = dict(pause_rows(pipeline, [view], operator=True))
        assert set(rows) == {"rule job", "sensor landing"}
        assert 'data-action="resume"' in rows["rule job"][-1]
        assert 'data-action="pause"' in rows["sensor landing"][-1]
        assert all(not cells[-1] for cells in dict(pause_rows(pipeline, [view], False)).values())
        text = paused_text(view.to_dict())
        assert text.startswith("rule job paused by cli:ana since ")
        assert text.endswith("(db): 0 runs held until `eventflow resume`")
