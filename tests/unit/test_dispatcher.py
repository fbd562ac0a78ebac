"""The dispatcher on the in-memory store: retries with backoff, concurrency limits, produces."""

from __future__ import annotations

import asyncio
import importlib
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from eventflow.config.loader import load_pipeline
from eventflow.config.models import Backoff
from eventflow.dispatcher import Dispatcher, backoff_delay
from eventflow.engine import Engine
from eventflow.events import utcnow
from eventflow.pipeline import EMIT_SENSOR, CompiledPipeline
from eventflow.records import InboxItem
from eventflow.store.memory import MemoryStore
from eventflow.types import PluginEnv, TaskRunner

TASKS = """
import asyncio, os
calls = []
running = 0
peak = 0

def flaky(ctx):
    calls.append(ctx.attempt)
    return ctx.attempt >= 2          # the first attempt fails

async def slow(ctx):
    global running, peak
    running += 1
    peak = max(peak, running)
    await asyncio.sleep(0.05)
    running -= 1
"""


def setup(tmp_path: Path, rules: str, engine: str = "") -> tuple[CompiledPipeline, str]:
    module = f"tasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(TASKS)
    text = f"""
sensors:
  landing: {{type: directory, path: ./landing}}
datasets:
  ready: {{sensor: landing, key: "{{dt}}"}}
rules:
{rules.replace("MODULE", module)}
engine: {{poll_interval: 50ms{engine}}}
"""
    (tmp_path / "p.yaml").write_text(text)
    return load_pipeline(tmp_path / "p.yaml"), module


def runners(pipeline: CompiledPipeline) -> dict[str, TaskRunner]:
    env = PluginEnv(pipeline.name, pipeline.base_dir)
    return {n: r.task_plugin(r.task_config, env) for n, r in pipeline.rules.items()}


async def emit(store: MemoryStore, engine: Engine, *dts: str) -> None:
    for dt in dts:
        await store.add_inbox(
            InboxItem(EMIT_SENSOR, "ready", {"dt": dt}, {"emit_id": dt}, None, utcnow())
        )
    engine.wake()
    await engine.process([])


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    """Poll the store (written by another component) until ``check`` holds."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - the store has no change notification
            await asyncio.sleep(0.01)


async def settle(store: MemoryStore, n: int) -> None:
    async def done() -> bool:
        return (await store.counts())["runs_succeeded"] >= n

    await until(done)


def test_backoff_grows_and_is_capped_with_equal_jitter() -> None:
    """The delay doubles per attempt up to `max`; jitter keeps it between half and all."""
    policy = Backoff(initial=timedelta(seconds=1), max=timedelta(seconds=5), jitter=False)
    assert [backoff_delay(policy, a, random.Random()).total_seconds() for a in (1, 2, 3, 4)] == [
        1,
        2,
        4,
        5,
    ]
    jittered = Backoff(initial=timedelta(seconds=4))
    for seed in range(20):
        assert 2 <= backoff_delay(jittered, 1, random.Random(seed)).total_seconds() <= 4


async def test_failed_attempt_is_retried_after_backoff_with_the_same_run_id(
    tmp_path: Path,
) -> None:
    """A failed attempt makes the run pending with a not_before (a durable timer), publishes
    run.retrying, and the next attempt runs with the same run id and succeeds."""
    rules = """  job:
    when: {any: [ready], by: [dt]}
    run: {python: "MODULE:flaky", retries: 2, backoff: {initial: 200ms, jitter: false}}"""
    pipeline, module = setup(tmp_path, rules)
    async with MemoryStore() as store:
        engine = Engine(pipeline, store)
        dispatcher = Dispatcher(pipeline, store, runners(pipeline))
        await emit(store, engine, "d1")
        task = asyncio.create_task(dispatcher.run())
        try:

            async def retrying() -> bool:
                runs = await store.list_runs(status="pending")
                return bool(runs) and runs[0].attempt == 1

            await until(retrying)
            [waiting] = await store.list_runs()
            assert waiting.error is not None
            assert waiting.not_before is not None
            assert waiting.not_before - waiting.updated_at == timedelta(milliseconds=200)
            await settle(store, 1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        [run] = await store.list_runs()
        assert (run.status, run.attempt, run.run_id) == ("succeeded", 2, waiting.run_id)
        assert importlib.import_module(module).calls == [1, 2]


async def peak_concurrency(tmp_path: Path, run: str, engine: str, dts: str) -> int:
    """Run one `slow` rule for every partition in ``dts``; the most runs seen at once."""
    rules = f"""  slow:
    when: {{any: [ready], by: [dt]}}
    run: {run}"""
    pipeline, module = setup(tmp_path, rules, engine)
    async with MemoryStore() as store:
        await emit(store, Engine(pipeline, store), *dts)
        task = asyncio.create_task(Dispatcher(pipeline, store, runners(pipeline)).run())
        try:
            await settle(store, len(dts))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    peak: int = importlib.import_module(module).peak
    return peak


async def test_per_rule_and_global_concurrency_limits(tmp_path: Path) -> None:
    """A rule's `concurrency` and `engine.max_runs` cap how many runs execute at once."""
    slow = '{python: "MODULE:slow"'
    assert await peak_concurrency(tmp_path, slow + ", concurrency: 1}", ", max_runs: 4", "abc") == 1
    assert await peak_concurrency(tmp_path, slow + "}", ", max_runs: 2", "abcdef") == 2
