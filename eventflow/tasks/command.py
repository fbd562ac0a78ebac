"""The ``command`` task: run a program (an argv list, never a shell) for each attempt.

.. code-block:: yaml

    run:
      command: [dbt, run, --select, report, --vars, '{"dt": "{dt}"}']
      cwd: dbt            # optional, relative to the pipeline file's directory
      env: {DBT_TARGET: prod}   # optional, added to eventflow's environment

``{var}`` in the arguments, ``cwd`` and ``env`` values is replaced by the run's variables.
No shell is involved: a value substituted into one argument stays that one argument,
whatever it holds (spaces, quotes, ``;``, newlines). A shell the command starts itself
(``sh -c SCRIPT``) would parse a value put into its script, so ``eventflow validate``
refuses ``{var}`` there: the script reads ``"$EVENTFLOW_VAR_<NAME>"`` instead, or opts in
to quoting with ``{var!sh}`` (see :mod:`eventflow.tasks.inline` and
``docs/reference/security.md``).

The program runs in a new session (its own process group) with eventflow's environment plus
``EVENTFLOW_RUN_ID``, ``EVENTFLOW_RULE``, ``EVENTFLOW_ATTEMPT``, ``EVENTFLOW_PARTITION``
(compact JSON), ``EVENTFLOW_EVENTS`` (path of the JSON file listing the input events) and
one ``EVENTFLOW_VAR_<NAME>`` per partition variable and param (:mod:`eventflow.tasks.environ`).
Its stdout and stderr go to the attempt's log files, each capped at ``log_max_bytes``.

Stopping: at the timeout, on cancellation (shutdown) and when the program exits leaving
processes behind in its group, the whole group gets SIGTERM, then SIGKILL after
:attr:`CommandTask.kill_grace` seconds. If eventflow itself dies abruptly (SIGKILL, OOM), the
kernel kills the program through the parent-death signal. That signal reaches the program
eventflow started, not the processes it started in turn; those are ended before the next
attempt of the same run starts: each attempt's process group is noted on the run, and what is
left of it is stopped first (:mod:`eventflow.tasks._groups`), so a restarted eventflow never
runs a run beside a survivor of its previous attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from eventflow.events import JSON, canonical_json
from eventflow.lifecycle import Resource
from eventflow.log import get_logger
from eventflow.patterns import render
from eventflow.tasks import Text, timeout_detail
from eventflow.tasks._groups import (
    group_alive,
    group_note,
    leftover_group,
    noted_elsewhere,
    signal_group,
    stop_group,
)
from eventflow.tasks._logs import PipeCapture, write_capped
from eventflow.tasks.environ import partition_environ
from eventflow.types import PluginEnv, RunContext, TaskResult

KILL_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL when an attempt is stopped."""
OUTPUT_GRACE = 1.0
"""Seconds to wait, once the program has exited, for the end of its output; a process that
escaped its group may hold the pipes open forever."""
_POLL = 0.05

DeathSignal = Literal["auto", "setpriv", "preexec", "none"]
"""How the program is made to die with eventflow: ``setpriv`` (util-linux, the fast way),
``preexec`` (``prctl`` in the forked child), ``auto`` (the first that works), ``none``."""


class CommandConfig(BaseModel):
    """``command: [PROGRAM, ARG, ...]`` with optional ``cwd`` and ``env``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: tuple[Text, ...] = Field(
        min_length=1,
        description="The program and its arguments, run without a shell; `{var}` is replaced"
        " by the run's variables, each value staying within its argument. `validate` refuses"
        " `{var}` inside a `sh -c` script or an interpreter's inline code: read"
        " `$EVENTFLOW_VAR_<NAME>` there, or write `{var!sh}` (shell-quoted). A program without"
        " `/` is looked up on PATH.",
    )
    cwd: str | None = Field(
        default=None,
        description="Working directory, relative to the pipeline file's directory (the default).",
    )
    env: dict[str, Text] = Field(
        default_factory=dict,
        description="Environment variables added to eventflow's own; `{var}` is replaced.",
    )

    @field_validator("command")
    @classmethod
    def _program(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value[0].strip():
            raise ValueError("the first item, the program to run, is empty")
        return value

    @field_validator("env")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"{name!r} is not a valid environment variable name")
            if name.startswith("EVENTFLOW_"):
                raise ValueError(f"{name} is set by eventflow; choose another name")
        return value


class CommandTask(Resource):
    """Runs one attempt of a ``command`` task as a child process (see the module docs)."""

    config_model: ClassVar[type[BaseModel]] = CommandConfig
    kill_grace: ClassVar[float] = KILL_GRACE
    output_grace: ClassVar[float] = OUTPUT_GRACE
    death_signal: ClassVar[DeathSignal] = "auto"

    def __init__(self, config: Any, env: PluginEnv) -> None:
        self.config: CommandConfig = (
            config if isinstance(config, CommandConfig) else CommandConfig.model_validate(config)
        )
        self.env = env
        self._prefix, self._use_preexec = _death_signal_plan(self.death_signal)

    async def run(self, ctx: RunContext) -> TaskResult:
        argv = [render(arg, ctx.variables) for arg in self.config.command]
        cwd = self._cwd(ctx)
        environ = self._environ(ctx)
        if cwd.is_dir():
            problem = _check_program(argv[0], cwd, environ)
        else:
            problem = f"working directory {cwd} does not exist"
        if problem is not None:
            write_capped(ctx.stderr_path, f"eventflow: {problem}\n", ctx.log_max_bytes)
            return TaskResult(False, problem)
        await self._stop_leftovers(ctx)
        out = PipeCapture(ctx.stdout_path, ctx.log_max_bytes)
        try:
            err = PipeCapture(ctx.stderr_path, ctx.log_max_bytes)
        except BaseException:
            out.close()
            raise
        try:
            return await self._run(ctx, argv, cwd, environ, out, err)
        finally:
            out.close()
            err.close()

    async def _run(
        self,
        ctx: RunContext,
        argv: list[str],
        cwd: Path,
        environ: dict[str, str],
        out: PipeCapture,
        err: PipeCapture,
    ) -> TaskResult:
        loop = asyncio.get_running_loop()
        preexec = _pdeathsig_preexec(os.getpid()) if self._use_preexec else None
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._prefix,
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=out.write_fd,
                stderr=err.write_fd,
                cwd=cwd,
                env=environ,
                start_new_session=True,  # own process group: stopped as a whole
                preexec_fn=preexec,
            )
        except (OSError, ValueError) as exc:
            detail = f"cannot start {argv[0]!r}: {getattr(exc, 'strerror', None) or exc}"
            out.open()
            err.open().write(f"eventflow: {detail}\n".encode())
            return TaskResult(False, detail)
        try:  # the output files are created now, while the child starts
            out.start(loop)
            err.start(loop)
            # Not waiting for the disk: the group lives no longer than the machine does.
            await ctx.note({"process": group_note(proc.pid, ctx.attempt)}, durable=False)
        except BaseException:
            await self._terminate(proc)
            raise
        timed_out = False
        try:
            async with asyncio.timeout(ctx.timeout):
                returncode = await proc.wait()
        except TimeoutError:
            timed_out = True
            await self._terminate(proc)
            returncode = proc.returncode if proc.returncode is not None else -signal.SIGKILL
        except asyncio.CancelledError:
            await self._terminate(proc)
            raise
        else:
            if group_alive(proc.pid):  # it left processes behind: the attempt is over
                await self._terminate(proc)
        pending = [f for f in (out.done, err.done) if f is not None and not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=self.output_grace)
        return _result(proc.pid, returncode, ctx.timeout if timed_out else None)

    async def _stop_leftovers(self, ctx: RunContext) -> None:
        """End what is left of an earlier attempt's process group (eventflow died during it and
        a process the program started lives on), so this attempt never runs beside it."""
        note = ctx.notes.get("process")
        log = get_logger(component="dispatcher").bind(run_id=ctx.run_id, attempt=ctx.attempt)
        pgid = leftover_group(note)
        if pgid is not None:
            assert isinstance(note, dict)
            log.warning("run_leftover_stopped", pgid=pgid, earlier_attempt=note.get("attempt"))
            await stop_group(pgid, self.kill_grace)
        elif (host := noted_elsewhere(note)) is not None:
            log.warning("run_leftover_elsewhere", host=host)

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM the program's group, SIGKILL what is left after the grace period."""
        pgid = proc.pid
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.kill_grace
        signal_group(pgid, signal.SIGTERM)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), self.kill_grace)
            while loop.time() < deadline:  # then whatever else it started in its group
                if not group_alive(pgid):
                    break
                await asyncio.sleep(_POLL)
        finally:  # also when cancelled again meanwhile: nothing of the attempt survives
            signal_group(pgid, signal.SIGKILL)
        await proc.wait()

    def _cwd(self, ctx: RunContext) -> Path:
        if self.config.cwd is None:
            return self.env.base_dir
        return self.env.base_dir / render(self.config.cwd, ctx.variables)

    def _environ(self, ctx: RunContext) -> dict[str, str]:
        environ = dict(os.environ)
        environ.update(partition_environ({**ctx.partition, **ctx.params}))
        environ["EVENTFLOW_RUN_ID"] = ctx.run_id
        environ["EVENTFLOW_RULE"] = ctx.rule
        environ["EVENTFLOW_ATTEMPT"] = str(ctx.attempt)
        environ["EVENTFLOW_PARTITION"] = canonical_json(dict(ctx.partition))
        environ["EVENTFLOW_EVENTS"] = str(ctx.events_file)
        for name, value in self.config.env.items():
            environ[name] = render(value, ctx.variables)
        return environ


def _result(pid: int, returncode: int, timeout: float | None) -> TaskResult:
    output: dict[str, JSON] = {"pid": pid, "exit_code": returncode}
    if timeout is not None:
        return TaskResult(False, timeout_detail(timeout), {**output, "timed_out": True})
    if returncode == 0:
        return TaskResult(True, "", output)
    if returncode > 0:
        return TaskResult(False, f"exit code {returncode}", output)
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return TaskResult(False, f"killed by signal {name}", {**output, "signal": name})


def _check_program(program: str, cwd: Path, environ: Mapping[str, str]) -> str | None:
    """Why ``program`` cannot be executed, or None: a clear result instead of an exec error."""
    if "/" in program:
        path = cwd / program  # an absolute program stays as it is
        if not path.exists():
            return f"program not found: {path}"
        if path.is_dir() or not os.access(path, os.X_OK):
            return f"program is not executable: {path}"
        return None
    search = environ.get("PATH", os.defpath)
    if shutil.which(program, path=search) is not None:
        return None
    for folder in search.split(os.pathsep):
        candidate = Path(folder or ".") / program
        if candidate.is_file():
            return f"program is not executable: {candidate}"
    return f"program not found: {program!r} is not in any PATH directory"


# --- dying with eventflow -------------------------------------------------------------------
#
# PR_SET_PDEATHSIG makes the kernel send SIGKILL to the child when its parent dies. "Parent"
# is the THREAD that forked it: eventflow spawns from the event-loop thread, which lives as
# long as the process (a loop run in a short-lived thread would kill its children when that
# thread ends). The setting survives execve (except of set-user-ID programs) and is not
# inherited by the program's own children.
#
# Setting it in a preexec_fn forces subprocess to fork() and run Python in the child instead
# of vfork(): it added 3-5 ms per spawn to a small process, 12 ms at 200 MB and 48 ms at
# 1 GB resident (fork copies the page tables), and it is unsafe while other threads hold
# locks. util-linux's `setpriv --pdeathsig KILL -- PROG ...` sets it and execs PROG in place
# (same pid), keeping the vfork path: about 1 ms more until PROG runs, whatever the size of
# eventflow. It is used when present; preexec_fn is the fallback. With setpriv, eventflow
# dying between the fork and the prctl goes unnoticed; the preexec_fn checks for that.

_PR_SET_PDEATHSIG = 1


def _death_signal_plan(mode: DeathSignal) -> tuple[tuple[str, ...], bool]:
    """``(argv prefix, use preexec_fn)`` for ``mode`` on this system."""
    if mode == "none" or not sys.platform.startswith("linux"):
        return (), False
    if mode in ("auto", "setpriv"):
        setpriv = setpriv_path()
        if setpriv is not None:
            return (setpriv, "--pdeathsig", "KILL", "--"), False
        if mode == "setpriv":
            return (), False
    return (), _prctl() is not None


@functools.cache
def setpriv_path() -> str | None:
    """util-linux ``setpriv`` if it is installed and can set the parent-death signal."""
    if not sys.platform.startswith("linux"):
        return None
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        probe = subprocess.run([path, "--help"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if b"--pdeathsig" in probe.stdout else None


@functools.cache
def _prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def _pdeathsig_preexec(parent: int) -> Callable[[], None]:
    prctl = _prctl()
    assert prctl is not None

    def preexec() -> None:  # runs in the forked child, before exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # eventflow died before the prctl: nobody would tell us
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec
