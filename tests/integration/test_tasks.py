"""Task runners against real processes, real Python modules and a real local HTTP server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest

from eventflow.errors import ClosedError
from eventflow.events import format_partition
from eventflow.tasks._logs import truncation_note
from eventflow.tasks.command import CommandTask, setpriv_path
from eventflow.tasks.http import HttpTask
from eventflow.tasks.python import PythonTask
from eventflow.types import PluginEnv, RunContext, TaskResult

LINUX = sys.platform.startswith("linux")
PARTITION = {"dt": "2024-01-01", "hr": "00"}
REPO = Path(__file__).resolve().parents[2]


def make_ctx(
    base: Path,
    *,
    timeout: float | None = None,
    log_max_bytes: int = 1_048_576,
    run_id: str = "run-1",
    attempt: int = 1,
) -> RunContext:
    folder = base / "runs" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    events = folder / "events.json"
    events.write_text("[]")
    variables = {
        **PARTITION,
        "run_id": run_id,
        "rule": "report",
        "attempt": str(attempt),
        "partition": format_partition(PARTITION),
    }
    return RunContext(
        run_id=run_id,
        rule="report",
        attempt=attempt,
        partition=dict(PARTITION),
        inputs=(),
        events_file=events,
        stdout_path=folder / f"attempt-{attempt}.stdout",
        stderr_path=folder / f"attempt-{attempt}.stderr",
        timeout=timeout,
        log_max_bytes=log_max_bytes,
        variables=variables,
    )


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie counts as dead)."""
    if LINUX:
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            return False
        return stat[stat.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def wait_until_sync(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def read_pid(path: Path) -> int:
    return int(path.read_text().strip())


def kill_if_sleeping(pid: int) -> None:
    """Clean-up for a failed test: kill ``pid`` only if it is still our ``sleep``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"sleep" in cmdline:
        os.kill(pid, signal.SIGKILL)


def command(base: Path, argv: list[str], **fields: Any) -> CommandTask:
    return CommandTask({"command": argv, **fields}, PluginEnv("test", base))


PY = sys.executable


# --- command ----------------------------------------------------------------------------


async def test_command_arguments_are_templated(tmp_path: Path) -> None:
    """``{var}`` in arguments is replaced, JSON-looking text keeps its other braces."""
    task = command(
        tmp_path,
        [
            PY,
            "-c",
            "import json, sys; print(json.dumps(sys.argv[1:]))",
            "--date={dt}",
            '{"dt": "{dt}", "hr": "{hr}"}',
            "{run_id}/{attempt}/{partition}",
            "{unknown}",
            "{{literal}}",
        ],
    )
    ctx = make_ctx(tmp_path, attempt=2)
    result = await task.run(ctx)
    assert result.ok, result.detail
    assert json.loads(ctx.stdout_path.read_text()) == [
        "--date=2024-01-01",
        '{"dt": "2024-01-01", "hr": "00"}',
        "run-1/2/dt=2024-01-01/hr=00",
        "{unknown}",
        "{literal}",
    ]


async def test_command_environment_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The child gets eventflow's environment, the EVENTFLOW_ variables, the configured env
    (templated) and runs in ``cwd`` relative to the pipeline's directory."""
    monkeypatch.setenv("EVENTFLOW_TEST_INHERITED", "yes")
    (tmp_path / "work-2024-01-01").mkdir()
    script = (
        "import json, os; print(json.dumps({'cwd': os.getcwd(), **{k: v for k, v in"
        " os.environ.items() if k.startswith(('EVENTFLOW_', 'MY_'))} }))"  # "} }": see render
    )
    task = command(
        tmp_path,
        [PY, "-c", script],
        cwd="work-{dt}",
        env={"MY_DATE": "{dt}", "MY_THREADS": 4},
    )
    ctx = make_ctx(tmp_path, attempt=3)
    result = await task.run(ctx)
    assert result.ok, result.detail
    seen = json.loads(ctx.stdout_path.read_text())
    assert seen == {
        "cwd": str(tmp_path / "work-2024-01-01"),
        "EVENTFLOW_TEST_INHERITED": "yes",
        "EVENTFLOW_RUN_ID": "run-1",
        "EVENTFLOW_RULE": "report",
        "EVENTFLOW_ATTEMPT": "3",
        "EVENTFLOW_PARTITION": '{"dt":"2024-01-01","hr":"00"}',
        "EVENTFLOW_EVENTS": str(ctx.events_file),
        "EVENTFLOW_VAR_DT": "2024-01-01",
        "EVENTFLOW_VAR_HR": "00",
        "MY_DATE": "2024-01-01",
        "MY_THREADS": "4",
    }


@pytest.mark.parametrize(
    ("script", "ok", "detail", "output"),
    [
        ("exit 0", True, "", {"exit_code": 0}),
        ("exit 3", False, "exit code 3", {"exit_code": 3}),
        (
            "kill -TERM $$",
            False,
            "killed by signal SIGTERM",
            {"exit_code": -15, "signal": "SIGTERM"},
        ),
    ],
)
async def test_command_exit_status(
    tmp_path: Path, script: str, ok: bool, detail: str, output: dict[str, Any]
) -> None:
    """Exit code 0 succeeds; another code or a signal fails and says which."""
    result = await command(tmp_path, ["sh", "-c", script]).run(make_ctx(tmp_path))
    assert (result.ok, result.detail) == (ok, detail)
    assert isinstance(result.output["pid"], int)
    assert {k: v for k, v in result.output.items() if k != "pid"} == output


async def test_command_output_is_captured_and_capped(tmp_path: Path) -> None:
    """stdout and stderr go to their files, cut at the cap with a note, while the child's
    larger output is still read to the end so it never blocks."""
    script = (
        "import sys\n"
        "for _ in range(80):\n"
        "    sys.stdout.write('x' * 65536)\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write('a warning\\n')\n"
    )
    ctx = make_ctx(tmp_path, log_max_bytes=1024)
    result = await asyncio.wait_for(command(tmp_path, [PY, "-c", script]).run(ctx), 20)
    assert result.ok, result.detail
    assert ctx.stdout_path.read_bytes() == b"x" * 1024 + truncation_note(1024)
    assert ctx.stdout_path.read_bytes().endswith(
        b"[eventflow: output truncated after 1024 bytes]\n"
    )
    assert ctx.stderr_path.read_text() == "a warning\n"


@pytest.mark.parametrize("ignores_term", [False, True])
async def test_command_timeout_kills_the_process_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ignores_term: bool
) -> None:
    """At the timeout the whole group gets SIGTERM, then SIGKILL after the grace period if it
    ignores TERM; the program and its grandchild are gone and the result says timed out."""
    monkeypatch.setattr(CommandTask, "kill_grace", 0.4 if ignores_term else 30.0)
    trap = 'trap "" TERM; ' if ignores_term else ""
    script = f"{trap}sleep 60 & echo $! > grandchild.pid; echo $$ > child.pid; wait"
    ctx = make_ctx(tmp_path, timeout=0.5)
    started = time.monotonic()
    result = await command(tmp_path, ["sh", "-c", script]).run(ctx)
    elapsed = time.monotonic() - started
    child, grandchild = read_pid(tmp_path / "child.pid"), read_pid(tmp_path / "grandchild.pid")
    try:
        assert not result.ok
        assert result.detail == "timed out after 500ms"
        assert result.output["timed_out"] is True
        assert result.output["pid"] == child
        await wait_until(lambda: not alive(grandchild), timeout=2)
        assert not alive(child)
        assert elapsed < 5  # TERM obeyed: no wait for the 30 s grace; ignored: 0.4 s
    finally:
        kill_if_sleeping(grandchild)


async def test_command_cancellation_kills_the_group_and_reraises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling the attempt (shutdown) stops the whole group, then CancelledError goes on."""
    monkeypatch.setattr(CommandTask, "kill_grace", 2.0)
    script = "sleep 60 & echo $! > grandchild.pid; echo $$ > child.pid; wait"
    attempt = asyncio.create_task(command(tmp_path, ["sh", "-c", script]).run(make_ctx(tmp_path)))
    grandchild_file = tmp_path / "grandchild.pid"
    await wait_until(lambda: (tmp_path / "child.pid").exists() and grandchild_file.exists())
    await asyncio.sleep(0.05)
    child, grandchild = read_pid(tmp_path / "child.pid"), read_pid(grandchild_file)
    try:
        assert alive(child)
        assert alive(grandchild)
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        await wait_until(lambda: not alive(grandchild), timeout=2)
        assert not alive(child)
    finally:
        kill_if_sleeping(grandchild)


async def test_command_leftover_processes_are_stopped(tmp_path: Path) -> None:
    """What the program leaves running in its group when it exits is stopped with it."""
    script = "sleep 60 > /dev/null 2>&1 & echo $! > grandchild.pid"
    result = await command(tmp_path, ["sh", "-c", script]).run(make_ctx(tmp_path))
    grandchild = read_pid(tmp_path / "grandchild.pid")
    try:
        assert result.ok, result.detail
        await wait_until(lambda: not alive(grandchild), timeout=2)
    finally:
        kill_if_sleeping(grandchild)


async def test_command_escaped_process_does_not_hold_the_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that left the group and keeps the output pipe open does not keep the attempt
    waiting past the output grace period."""
    monkeypatch.setattr(CommandTask, "output_grace", 0.2)
    script = (
        f"{PY} -c 'import os, time; os.setsid(); time.sleep(60)' & echo $! > escaped.pid; echo done"
    )
    ctx = make_ctx(tmp_path)
    started = time.monotonic()
    result = await command(tmp_path, ["sh", "-c", script]).run(ctx)
    escaped = read_pid(tmp_path / "escaped.pid")
    try:
        assert result.ok, result.detail
        assert time.monotonic() - started < 3
        assert ctx.stdout_path.read_text() == "done\n"
    finally:
        os.kill(escaped, signal.SIGKILL)


async def test_command_output_files_exist_for_a_silent_program_and_keep_early_output(
    tmp_path: Path,
) -> None:
    """The output files are created just after the spawn: a program that prints nothing
    still leaves both (empty), and what a program writes before eventflow reads its pipe
    is all in its file."""
    silent = make_ctx(tmp_path, run_id="silent")
    assert (await command(tmp_path, ["true"]).run(silent)).ok
    assert silent.stdout_path.read_bytes() == b""
    assert silent.stderr_path.read_bytes() == b""
    early = make_ctx(tmp_path, run_id="early")
    script = "head -c 40000 /dev/zero | tr '\\0' x; echo err >&2"
    assert (await command(tmp_path, ["sh", "-c", script]).run(early)).ok
    assert early.stdout_path.read_bytes() == b"x" * 40000
    assert early.stderr_path.read_text() == "err\n"


async def test_command_missing_or_not_executable_program(tmp_path: Path) -> None:
    """A program that is not found or not executable fails the attempt with a clear detail."""
    not_executable = tmp_path / "script.sh"
    not_executable.write_text("#!/bin/sh\necho hi\n")
    ctx = make_ctx(tmp_path)

    missing = await command(tmp_path, ["no-such-program-eventflow"]).run(ctx)
    assert not missing.ok
    assert (
        missing.detail
        == "program not found: 'no-such-program-eventflow' is not in any PATH directory"
    )
    assert "no-such-program-eventflow" in ctx.stderr_path.read_text()

    relative = await command(tmp_path, ["./script.sh"]).run(ctx)
    assert (relative.ok, relative.detail) == (False, f"program is not executable: {not_executable}")

    absent = await command(tmp_path, ["bin/absent"]).run(ctx)
    assert (absent.ok, absent.detail) == (False, f"program not found: {tmp_path / 'bin/absent'}")

    no_dir = await command(tmp_path, ["true"], cwd="nowhere").run(ctx)
    assert (no_dir.ok, no_dir.detail) == (
        False,
        f"working directory {tmp_path / 'nowhere'} does not exist",
    )


PARENT_SCRIPT = """
import asyncio, sys
from pathlib import Path
from eventflow.tasks.command import CommandTask
from eventflow.types import PluginEnv, RunContext

CommandTask.death_signal = sys.argv[1]
base = Path(sys.argv[2])
task = CommandTask(
    {"command": ["sh", "-c", "echo $$ > child.tmp; mv child.tmp child.pid; exec sleep 60"]},
    PluginEnv("test", base),
)
ctx = RunContext(
    run_id="r", rule="r", attempt=1, partition={}, inputs=(), events_file=base / "e.json",
    stdout_path=base / "out", stderr_path=base / "err", timeout=None, log_max_bytes=1024,
    variables={},
)
asyncio.run(task.run(ctx))
"""


@pytest.mark.skipif(not LINUX, reason="the parent-death signal is a Linux feature")
@pytest.mark.parametrize("mode", ["setpriv", "preexec", "none"])
def test_command_dies_with_eventflow(tmp_path: Path, mode: str) -> None:
    """When the eventflow process is SIGKILLed, the program it started dies too (and, as a
    control, survives when the parent-death signal is off)."""
    if mode == "setpriv":
        # util-linux is on every Linux machine this runs on: the default mode must be tested.
        assert setpriv_path() is not None, "util-linux setpriv with --pdeathsig is missing"
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(PARENT_SCRIPT))
    parent = subprocess.Popen([PY, str(script), mode, str(tmp_path)], cwd=REPO)
    pid_file = tmp_path / "child.pid"
    try:
        wait_until_sync(lambda: pid_file.exists() or parent.poll() is not None)
        assert parent.poll() is None, "the parent process ended early"
        child = read_pid(pid_file)
        wait_until_sync(lambda: b"sleep" in Path(f"/proc/{child}/cmdline").read_bytes())
        parent.kill()
        parent.wait()
        if mode == "none":
            time.sleep(0.3)
            assert alive(child)
        else:
            wait_until_sync(lambda: not alive(child), timeout=5)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if pid_file.exists():
            kill_if_sleeping(read_pid(pid_file))


# --- python -----------------------------------------------------------------------------

MODULE = """
import asyncio
import threading
from datetime import date

from eventflow.types import TaskResult

RELEASE = threading.Event()


async def async_ok(ctx):
    await asyncio.sleep(0)
    return {"dt": ctx.partition["dt"], "attempt": ctx.attempt}


def sync_ok(ctx):
    return {"thread": threading.current_thread().name, "run_id": ctx.run_id}


def returns_none(ctx):
    return None


def returns_number(ctx):
    return 42


def returns_false(ctx):
    return False


def returns_result(ctx):
    return TaskResult(False, "custom detail", {"rows": 0})


def returns_odd_dict(ctx):
    return {"day": date(2024, 1, 1), 1: "one"}


def raises(ctx):
    raise ValueError("bad partition " + ctx.partition["dt"])


async def async_raises(ctx):
    raise KeyError("missing")


def exits(ctx):
    raise SystemExit(3)


async def slow(ctx):
    await asyncio.sleep(30)


def slow_sync(ctx):
    RELEASE.wait(30)
    return True


class Jobs:
    @staticmethod
    def nested(ctx):
        return {"nested": True}


not_callable = 3
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module of task functions in the pipeline directory; sys.path and sys.modules restored."""
    name = f"eventflow_test_tasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield name
    loaded = sys.modules.pop(name, None)
    if loaded is not None:
        loaded.RELEASE.set()


def python(base: Path, target: str) -> PythonTask:
    return PythonTask({"python": target}, PluginEnv("test", base))


async def test_python_async_function_is_awaited(tmp_path: Path, module: str) -> None:
    """A coroutine function is awaited with the run context; its dict is the output."""
    result = await python(tmp_path, f"{module}:async_ok").run(make_ctx(tmp_path, attempt=2))
    assert result == TaskResult(True, "", {"dt": "2024-01-01", "attempt": 2})
    assert sys.path[0] == str(tmp_path)


async def test_python_sync_function_runs_in_a_thread(tmp_path: Path, module: str) -> None:
    """A plain function runs in a thread of its own, not on the event loop."""
    result = await python(tmp_path, f"{module}:sync_ok").run(make_ctx(tmp_path))
    assert result.ok
    assert result.output["run_id"] == "run-1"
    assert str(result.output["thread"]).startswith("eventflow-task-")
    assert result.output["thread"] != threading.current_thread().name


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("returns_none", TaskResult(True)),
        ("returns_number", TaskResult(True)),
        ("returns_false", TaskResult(False, "the function returned False")),
        ("returns_result", TaskResult(False, "custom detail", {"rows": 0})),
        ("returns_odd_dict", TaskResult(True, "", {"day": "2024-01-01", "1": "one"})),
        ("Jobs.nested", TaskResult(True, "", {"nested": True})),
        ("exits", TaskResult(False, "SystemExit: 3")),
    ],
)
async def test_python_return_conventions(
    tmp_path: Path, module: str, function: str, expected: TaskResult
) -> None:
    """None or another value succeeds, False fails, a TaskResult is taken as is, a dict is
    the output (made JSON-safe)."""
    assert await python(tmp_path, f"{module}:{function}").run(make_ctx(tmp_path)) == expected


@pytest.mark.parametrize(
    ("function", "detail", "line"),
    [
        ("raises", "ValueError: bad partition 2024-01-01", 'raise ValueError("bad partition "'),
        ("async_raises", "KeyError: 'missing'", 'raise KeyError("missing")'),
    ],
)
async def test_python_exception_fails_with_traceback(
    tmp_path: Path, module: str, function: str, detail: str, line: str
) -> None:
    """An exception fails the attempt with its type and message; its traceback goes to stderr."""
    ctx = make_ctx(tmp_path)
    result = await python(tmp_path, f"{module}:{function}").run(ctx)
    assert (result.ok, result.detail) == (False, detail)
    traceback_text = ctx.stderr_path.read_text()
    assert traceback_text.startswith("Traceback (most recent call last):")
    assert line in traceback_text


async def test_python_import_errors_fail_the_attempt(tmp_path: Path, module: str) -> None:
    """A module that cannot be imported or a missing attribute fails the attempt, not eventflow."""
    ctx = make_ctx(tmp_path)
    missing = await python(tmp_path, "eventflow_no_such_module:run").run(ctx)
    assert not missing.ok
    assert missing.detail == (
        "cannot import eventflow_no_such_module:run: ModuleNotFoundError:"
        " No module named 'eventflow_no_such_module'"
    )
    assert "ModuleNotFoundError" in ctx.stderr_path.read_text()

    no_attr = await python(tmp_path, f"{module}:nope").run(ctx)
    assert (
        no_attr.detail
        == f"cannot import {module}:nope: ImportError: {module} has no attribute 'nope'"
    )

    not_callable = await python(tmp_path, f"{module}:not_callable").run(ctx)
    assert not_callable.detail == (
        f"cannot import {module}:not_callable: ImportError: {module}:not_callable is not callable"
    )


async def test_python_async_timeout_cancels(tmp_path: Path, module: str) -> None:
    """A coroutine still running at the timeout is cancelled and the attempt is timed out."""
    started = time.monotonic()
    result = await python(tmp_path, f"{module}:slow").run(make_ctx(tmp_path, timeout=0.2))
    assert result == TaskResult(False, "timed out after 200ms", {"timed_out": True})
    assert time.monotonic() - started < 2


async def test_python_sync_timeout_is_reported(tmp_path: Path, module: str) -> None:
    """A plain function past the timeout is reported timed out (its thread runs on)."""
    started = time.monotonic()
    result = await python(tmp_path, f"{module}:slow_sync").run(make_ctx(tmp_path, timeout=0.1))
    assert result == TaskResult(False, "timed out after 100ms", {"timed_out": True})
    assert time.monotonic() - started < 2
    sys.modules[module].RELEASE.set()


# --- http -------------------------------------------------------------------------------


class Server:
    """A local HTTP server that records requests; the path picks the answer."""

    STATUS = {"/fail": 503, "/accepted": 202, "/conflict": 409}

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_request(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                path = self.path.split("?")[0]
                if path == "/slow":
                    outer.release.wait(10)
                status = outer.STATUS.get(path, 200)
                payload = b"y" * 100_000 if path == "/big" else f"answer to {path}".encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            do_GET = do_POST = do_PUT = handle_request

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    srv.thread.start()
    yield srv
    srv.stop()


def http(base: Path, **request: Any) -> HttpTask:
    return HttpTask({"http": request}, PluginEnv("test", base))


async def test_http_sends_the_templated_request(tmp_path: Path, server: Server) -> None:
    """URL, headers and JSON body strings are templated; the run id rides as Idempotency-Key."""
    ctx = make_ctx(tmp_path, attempt=2)
    async with http(
        tmp_path,
        url=server.url + "/dags/{rule}/runs?dt={dt}",
        json={"conf": {"dt": "{dt}", "raw": '{"hr": "{hr}"}'}, "n": 1, "keep": "{other}"},
        headers={"Authorization": "Bearer secret-{dt}"},
    ) as task:
        result = await task.run(ctx)
    assert result == TaskResult(True, "", {"status_code": 200})
    [request] = server.requests
    assert request["method"] == "POST"
    assert request["path"] == "/dags/report/runs?dt=2024-01-01"
    assert json.loads(request["body"]) == {
        "conf": {"dt": "2024-01-01", "raw": '{"hr": "00"}'},
        "n": 1,
        "keep": "{other}",
    }
    headers = request["headers"]
    assert headers["authorization"] == "Bearer secret-2024-01-01"
    assert headers["idempotency-key"] == "run-1"
    assert headers["x-eventflow-run-id"] == "run-1"
    assert headers["x-eventflow-attempt"] == "2"
    assert headers["content-type"] == "application/json"
    assert ctx.stdout_path.read_text() == "answer to /dags/report/runs"


async def test_http_error_status_fails_and_keeps_the_body(tmp_path: Path, server: Server) -> None:
    """A non-2xx answer fails with its status and the start of its body; the body goes to
    the stdout file."""
    ctx = make_ctx(tmp_path)
    async with http(tmp_path, url=server.url + "/fail", method="put") as task:
        result = await task.run(ctx)
    assert result == TaskResult(False, "HTTP 503: answer to /fail", {"status_code": 503})
    assert server.requests[0]["method"] == "PUT"
    assert server.requests[0]["body"] == b""
    assert ctx.stdout_path.read_text() == "answer to /fail"


@pytest.mark.parametrize(
    ("path", "expect", "ok"),
    [
        ("/accepted", None, True),
        ("/accepted", [200], False),
        ("/conflict", [200, 409], True),
        ("/conflict", None, False),
    ],
)
async def test_http_expect(
    tmp_path: Path, server: Server, path: str, expect: list[int] | None, ok: bool
) -> None:
    """``expect`` lists the status codes that mean success; without it any 2xx does."""
    async with http(tmp_path, url=server.url + path, expect=expect) as task:
        result = await task.run(make_ctx(tmp_path))
    assert result.ok is ok
    assert result.detail == ("" if ok else f"HTTP {result.output['status_code']}: answer to {path}")


async def test_http_response_body_is_capped(tmp_path: Path, server: Server) -> None:
    """Only the first 64 KiB of the response body are kept, with the truncation note."""
    ctx = make_ctx(tmp_path)
    async with http(tmp_path, url=server.url + "/big", method="GET") as task:
        result = await task.run(ctx)
    assert result.ok
    assert ctx.stdout_path.read_bytes() == b"y" * 65536 + truncation_note(65536)


async def test_http_connection_refused(tmp_path: Path) -> None:
    """A refused connection fails the attempt; the detail hides the query string."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with http(tmp_path, url=f"http://127.0.0.1:{port}/hook?token=s3cret") as task:
        result = await task.run(make_ctx(tmp_path))
    assert not result.ok
    assert result.detail.startswith(f"POST http://127.0.0.1:{port}/hook failed: ConnectError")
    assert "s3cret" not in result.detail


@pytest.mark.parametrize(("own", "run"), [("200ms", 10.0), ("10s", 0.2), (None, 0.2)])
async def test_http_timeout(
    tmp_path: Path, server: Server, own: str | None, run: float | None
) -> None:
    """The request is limited by the smaller of its own timeout and the run's."""
    started = time.monotonic()
    async with http(tmp_path, url=server.url + "/slow", timeout=own) as task:
        result = await task.run(make_ctx(tmp_path, timeout=run))
    assert result == TaskResult(False, "timed out after 200ms", {"timed_out": True})
    assert time.monotonic() - started < 2


async def test_http_client_is_reused_and_close_is_idempotent(
    tmp_path: Path, server: Server
) -> None:
    """One client serves every attempt; close is idempotent and a closed runner says so."""
    task = http(tmp_path, url=server.url + "/ok")
    assert (await task.run(make_ctx(tmp_path))).ok
    api = task.api()
    assert (await task.run(make_ctx(tmp_path, attempt=2))).ok
    assert task.api() is api
    await task.close()
    await task.close()
    with pytest.raises(ClosedError):
        await task.run(make_ctx(tmp_path))


# --- values from events stay data --------------------------------------------------------

NASTY = "a b 'c' \"d\" ; rm -rf x\n$(touch x) `touch x` | & */?#%"


def nasty_ctx(base: Path) -> RunContext:
    ctx = make_ctx(base)
    return dataclasses.replace(
        ctx,
        partition={"dt": NASTY, "hr": "00"},
        variables={**ctx.variables, "dt": NASTY},
    )


async def test_a_value_stays_one_argument_and_reaches_the_environment(tmp_path: Path) -> None:
    """A value with spaces, quotes, `;`, newlines and `$( )` is one argv element as written,
    and `EVENTFLOW_VAR_DT` holds it; nothing is run."""
    script = (
        "import json, os, sys; print(json.dumps([sys.argv[1:],"
        " os.environ['EVENTFLOW_VAR_DT'], os.environ['EVENTFLOW_VAR_HR']]))"
    )
    task = command(tmp_path, [sys.executable, "-c", script, "--date={dt}", "{dt}"])
    ctx = nasty_ctx(tmp_path)
    result = await task.run(ctx)
    assert result.ok, result.detail
    seen = json.loads(ctx.stdout_path.read_text())
    assert seen == [[f"--date={NASTY}", NASTY], NASTY, "00"]
    assert not (tmp_path / "x").exists()


async def test_url_values_are_percent_encoded_and_the_body_stays_json(
    tmp_path: Path, server: Server
) -> None:
    """A `/`, `?`, `#` or `&` in a value does not add a path segment or end a query value;
    the JSON body carries the value exactly."""
    async with http(
        tmp_path,
        url=server.url + "/dags/{dt}/runs?dt={dt}&hr={hr}",
        json={"conf": {"dt": "{dt}"}},
    ) as task:
        result = await task.run(nasty_ctx(tmp_path))
    assert result.ok, result.detail
    [request] = server.requests
    path, _, query = request["path"].partition("?")
    assert path.count("/") == 3  # /dags/<one segment>/runs
    assert unquote(path.split("/")[2]) == NASTY
    assert parse_qs(query) == {"dt": [NASTY], "hr": ["00"]}
    assert json.loads(request["body"]) == {"conf": {"dt": NASTY}}
