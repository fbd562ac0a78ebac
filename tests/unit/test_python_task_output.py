"""A python task's print(), sys.stderr writes and logging go to its own run's log files,
also when several python tasks run at once."""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventflow.tasks.python import PythonTask
from eventflow.types import PluginEnv, RunContext

MODULE = """
import asyncio, logging, sys, threading

BARRIER = threading.Barrier(2, timeout=10)


async def chatty_async(ctx):
    for i in range(3):
        print(f"out {ctx.run_id} {i}")
        sys.stderr.write(f"err {ctx.run_id} {i}\\n")
        await asyncio.sleep(0.01)  # the other run writes meanwhile


def chatty_sync(ctx):
    BARRIER.wait()  # both threads are inside their attempt at once
    for i in range(3):
        print(f"out {ctx.run_id} {i}")
        print(f"err {ctx.run_id} {i}", file=sys.stderr)
    BARRIER.wait()


def logs(ctx):
    log = logging.getLogger(ctx.run_id)
    log.addHandler(logging.StreamHandler())  # the default stream: sys.stderr
    log.warning("warned by %s", ctx.run_id)


def fails(ctx):
    print("before the failure")
    raise ValueError("boom")
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"eventflow_test_output_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield name
    sys.modules.pop(name, None)


def ctx(base: Path, run_id: str) -> RunContext:
    folder = base / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / "events.json").write_text("[]")
    return RunContext(
        run_id=run_id,
        rule="report",
        attempt=1,
        partition={},
        inputs=(),
        events_file=folder / "events.json",
        stdout_path=folder / "attempt-1.stdout",
        stderr_path=folder / "attempt-1.stderr",
        timeout=None,
        log_max_bytes=1_000_000,
        variables={},
    )


def logs_of(c: RunContext) -> tuple[list[str], list[str]]:
    return c.stdout_path.read_text().splitlines(), c.stderr_path.read_text().splitlines()


@pytest.mark.parametrize("function", ["chatty_async", "chatty_sync"])
async def test_two_runs_at_once_each_get_their_own_output(
    tmp_path: Path, module: str, function: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two attempts of a python task running at once (coroutines on the loop, or functions
    in threads) each find exactly their own lines in their stdout and stderr files, and
    nothing reaches eventflow's own streams."""
    task = PythonTask({"python": f"{module}:{function}"}, PluginEnv("test", tmp_path))
    a, b = ctx(tmp_path, "run-a"), ctx(tmp_path, "run-b")
    results = await asyncio.gather(task.run(a), task.run(b))
    assert all(r.ok for r in results), results
    for c in (a, b):
        out, err = logs_of(c)
        assert out == [f"out {c.run_id} {i}" for i in range(3)]
        assert err == [f"err {c.run_id} {i}" for i in range(3)]
    captured = capsys.readouterr()
    assert "run-a" not in captured.out + captured.err
    print("outside any run")  # after the attempts, the original stream again
    assert capsys.readouterr().out == "outside any run\n"


async def test_logging_to_stderr_and_a_traceback_share_the_run_s_stderr(
    tmp_path: Path, module: str
) -> None:
    """A logging handler on the default stream writes to the run's stderr; a failing
    function's prints stay in stdout and its traceback follows in stderr."""
    env = PluginEnv("test", tmp_path)
    logged = ctx(tmp_path, "run-log")
    assert (await PythonTask({"python": f"{module}:logs"}, env).run(logged)).ok
    assert logs_of(logged)[1] == ["warned by run-log"]
    failed = ctx(tmp_path, "run-fail")
    result = await PythonTask({"python": f"{module}:fails"}, env).run(failed)
    assert not result.ok
    assert result.detail == "ValueError: boom"
    out, err = logs_of(failed)
    assert out == ["before the failure"]
    assert err[0].startswith("Traceback")
    assert err[-1] == "ValueError: boom"
    logging.getLogger("run-log").handlers.clear()
