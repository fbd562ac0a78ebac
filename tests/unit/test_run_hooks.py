"""Rule hooks (`on_failure`, `on_missed`): how they compile, the file:line message for each
mistake, and the dispatcher creating the hook run with the failed run's context."""

from __future__ import annotations

import asyncio
import importlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventflow.config.loader import check_file
from eventflow.dispatcher import Dispatcher
from eventflow.engine import Engine
from eventflow.records import RunRecord
from eventflow.run_hooks import failure_hook, hook_params, log_tail
from eventflow.store.memory import MemoryStore
from tests.unit.test_dispatcher import emit, runners, setup, until

HOOK_TASKS = """
seen = []

def broken(ctx):
    raise RuntimeError(f"no warehouse for {ctx.partition['dt']}")

def hook(ctx):
    seen.append((ctx.attempt, dict(ctx.params), ctx.variables["failed_run_id"]))
    return ctx.attempt >= 2          # the hook's own first attempt fails
"""

RULES = """  job:
    when: {any: [ready], by: [dt]}
    run: {python: "MODULE:broken", retries: 1, backoff: {initial: 10ms, jitter: false}}
    on_failure: {python: "MODULE:hook", retries: 1, backoff: {initial: 10ms, jitter: false}}"""


def test_hooks_compile_to_runs_of_their_own_rule(tmp_path: Path) -> None:
    """`on_failure` and `on_missed` become the pseudo-rules `RULE:on_failure` and
    `RULE:on_missed` with their own task type and retries, joined on the rule's variables."""
    pipeline, _ = setup(
        tmp_path,
        """  job:
    when: {any: [ready], by: [dt]}
    expect_by: "{dt}T06:00Z"
    run: {command: ["true"]}
    on_failure: {http: {url: "http://127.0.0.1:9/{failed_rule}"}, retries: 4}
    on_missed: {command: [echo, "{missing}", "{deadline}", "{dt}"]}""",
    )
    failure, missed = pipeline.rules["job:on_failure"], pipeline.rules["job:on_missed"]
    assert (failure.task_type, failure.max_attempts) == ("http", 5)
    assert (missed.task_type, missed.max_attempts) == ("command", 1)
    assert failure.spec.datasets == ()
    assert failure.spec.by == ("dt",)


@pytest.mark.parametrize(
    ("rule", "needle", "message"),
    [
        (
            """    on_failure: {command: [echo, "{deadline}"]}""",
            "on_failure",
            "unknown template variable `{deadline}`",
        ),
        (
            """    on_missed: {command: [echo, "{missing}"]}""",
            "on_missed",
            "`on_missed` runs at a missed deadline, but the rule has no `expect_by`",
        ),
        (
            """    on_failure: {command: [sh, -c, "echo {error}"]}""",
            "on_failure",
            "{error}",
        ),
        (
            """    on_failure: {comand: [echo]}""",
            "on_failure",
            "",
        ),
    ],
    ids=["unknown-variable", "missed-without-deadline", "error-in-shell-code", "no-task-type"],
)
def test_hook_mistakes_are_reported_at_their_line(
    tmp_path: Path, rule: str, needle: str, message: str
) -> None:
    """A hook with an unknown variable, an `on_missed` without `expect_by`, an error
    message spliced into shell code or no task type is reported at the hook's line."""
    text = f"""sensors:
  landing: {{type: directory, path: ./landing}}
datasets:
  ready: {{sensor: landing, key: "{{dt}}"}}
rules:
  job:
    when: {{any: [ready], by: [dt]}}
    run: {{command: ["true"]}}
{rule}
"""
    (tmp_path / "p.yaml").write_text(text)
    found = check_file(tmp_path / "p.yaml", {})
    assert found, "the mistake was not reported"
    line = next(i for i, t in enumerate(text.splitlines(), 1) if needle in t)
    assert any(p.line == line and message in p.message for p in found), found


def test_on_missed_and_an_on_deadline_task_exclude_each_other(tmp_path: Path) -> None:
    """`on_missed` next to `on_deadline: {run: ...}` is refused: both would alert."""
    text = """sensors:
  landing: {type: directory, path: ./landing}
datasets:
  ready: {sensor: landing, key: "{dt}"}
rules:
  job:
    when: {any: [ready], by: [dt]}
    expect_by: "{dt}T06:00Z"
    run: {command: ["true"]}
    on_deadline: {run: {command: ["true"]}}
    on_missed: {command: ["true"]}
"""
    (tmp_path / "p.yaml").write_text(text)
    [problem] = check_file(tmp_path / "p.yaml", {})
    assert "both run a task at a missed deadline" in problem.message
    assert problem.line == 11


async def test_failure_hook_runs_once_after_the_last_attempt_with_its_context(
    tmp_path: Path,
) -> None:
    """The hook run is created with the final failure only (not after the retried attempt),
    gets the failed run's id, attempt and error, is retried by its own retries, and leaves
    the failed run `failed`."""
    pipeline, module = setup(tmp_path, RULES)
    (tmp_path / f"{module}.py").write_text(HOOK_TASKS)
    async with MemoryStore() as store:
        engine = Engine(pipeline, store)
        dispatcher = Dispatcher(pipeline, store, runners(pipeline))
        await emit(store, engine, "d1")
        task = asyncio.create_task(dispatcher.run())
        try:

            async def hooked() -> bool:
                return (await store.counts())["runs_succeeded"] == 1

            await until(hooked)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        runs = {r.rule: r for r in await store.list_runs()}
    assert set(runs) == {"job", "job:on_failure"}
    failed, hook = runs["job"], runs["job:on_failure"]
    assert (failed.status, failed.attempt) == ("failed", 2)
    assert (hook.status, hook.attempt, hook.partition) == ("succeeded", 2, {"dt": "d1"})
    seen = importlib.import_module(module).seen
    assert [attempt for attempt, _, _ in seen] == [1, 2]
    params = seen[-1][1]
    assert params["failed_rule"] == "job"
    assert params["failed_run_id"] == failed.run_id == seen[-1][2]
    assert params["failed_attempt"] == "2"
    assert "no warehouse for d1" in params["error"]
    assert hook_params(hook.notes) == params


def test_log_tail_is_the_end_of_stderr_else_stdout(tmp_path: Path) -> None:
    """`log_tail` is the last bytes of the attempt's stderr, or its stdout when stderr is
    empty, and empty when the attempt wrote neither."""
    assert log_tail(tmp_path, 1) == ""
    (tmp_path / "attempt-1.stdout").write_text("out\n")
    (tmp_path / "attempt-1.stderr").write_text("")
    assert log_tail(tmp_path, 1) == "out\n"
    (tmp_path / "attempt-1.stderr").write_text("x" * 5000 + "the end\n")
    assert log_tail(tmp_path, 1, limit=8) == "the end\n"


def test_a_run_made_before_its_rule_was_renamed_gets_the_renamed_rules_hook(
    tmp_path: Path,
) -> None:
    """A run of `job` that fails after `job` became `report` (`renamed_from: job`) runs
    `report:on_failure`, and the dispatcher limits it by `report`'s concurrency."""
    pipeline, _ = setup(
        tmp_path,
        """  report:
    renamed_from: job
    when: {any: [ready], by: [dt]}
    run: {command: ["false"], concurrency: 2}
    on_failure: {command: [echo, "{failed_rule}"]}""",
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    run = RunRecord("r1", "job", "dt=d1", {"dt": "d1"}, 1, "failed", 1, 1, (), now, now)
    made = failure_hook(pipeline, run, "exit 1", now)
    assert made is not None
    assert made[0].rule == "report:on_failure"
    assert made[1].facts["hook"]["failed_rule"] == "job"  # type: ignore[index,call-overload]
    dispatcher = Dispatcher(pipeline, MemoryStore(), {})
    assert dispatcher._limits == {"report": 2, "job": 2}
