"""The ``python`` task: call a function in eventflow's own process.

.. code-block:: yaml

    run:
      python: reports.hourly:build      # module:function, the module importable from the
                                        # pipeline file's directory or the environment

The function takes one argument, the :class:`~eventflow.types.RunContext`. A coroutine
function is awaited on eventflow's loop (it must not block it); a plain function runs in a
thread of its own. What it returns decides the attempt:

- ``False``: failed;
- a :class:`~eventflow.types.TaskResult`: that result;
- a dict: succeeded, the dict is the run's ``output`` (values that are not JSON become text);
- anything else (``None`` included): succeeded.

An exception fails the attempt with ``"ValueError: ..."`` and its traceback in the attempt's
stderr file. At the timeout, or when eventflow stops, a coroutine is cancelled; a plain
function cannot be interrupted: the attempt is reported timed out (or stopped) and the
function keeps running in its thread until it returns, its result ignored. Its thread is a
daemon, so it does not hold eventflow's exit. What the function prints (``print()``,
``sys.stdout``/``sys.stderr``, a ``logging`` handler on the default stream) goes to the
attempt's log files, per run also when several run at once (:mod:`eventflow.tasks._redirect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import inspect
import json
import re
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from eventflow.events import JSON
from eventflow.lifecycle import Resource
from eventflow.tasks import timeout_detail
from eventflow.tasks._logs import CappedFile
from eventflow.tasks._redirect import capture
from eventflow.types import PluginEnv, RunContext, TaskResult

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_TARGET = re.compile(rf"^({_DOTTED}):({_DOTTED})$")


class PythonConfig(BaseModel):
    """``python: "package.module:function"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    python: str = Field(
        description="The function to call, as `package.module:function` (the attribute may be"
        " dotted: `module:Class.method`)."
    )

    @field_validator("python")
    @classmethod
    def _target(cls, value: str) -> str:
        value = value.strip()
        if not _TARGET.match(value):
            raise ValueError(f"{value!r} does not name a function; write `package.module:function`")
        return value

    @property
    def module(self) -> str:
        return self.python.partition(":")[0]

    @property
    def attribute(self) -> str:
        return self.python.partition(":")[2]


class PythonTask(Resource):
    """Runs one attempt of a ``python`` task (see the module docs)."""

    config_model: ClassVar[type[BaseModel]] = PythonConfig

    def __init__(self, config: Any, env: PluginEnv) -> None:
        self.config: PythonConfig = (
            config if isinstance(config, PythonConfig) else PythonConfig.model_validate(config)
        )
        self.env = env
        self._function: Callable[[RunContext], Any] | None = None

    async def run(self, ctx: RunContext) -> TaskResult:
        with capture(ctx) as (_, stderr):
            return await self._attempt(ctx, stderr)

    async def _attempt(self, ctx: RunContext, stderr: CappedFile) -> TaskResult:
        function = self._function
        if function is None:
            try:
                # Importing runs module code (maybe a heavy library): not on the loop.
                function = await asyncio.to_thread(self._load)
            except Exception as exc:
                return _failed(stderr, exc, f"cannot import {self.config.python}: ")
            self._function = function
        try:
            async with asyncio.timeout(ctx.timeout) as scope:
                result = await _call(function, ctx)
        except TimeoutError as exc:
            if not scope.expired():
                return _failed(stderr, exc)
            return TaskResult(False, timeout_detail(ctx.timeout or 0), {"timed_out": True})
        except (Exception, SystemExit) as exc:
            return _failed(stderr, exc)
        return _to_result(result)

    def _load(self) -> Callable[[RunContext], Any]:
        """Import the module (the pipeline's directory first on ``sys.path``), get the attribute."""
        base = str(self.env.base_dir)
        if base not in sys.path:
            sys.path.insert(0, base)
        target: Any = importlib.import_module(self.config.module)
        for name in self.config.attribute.split("."):
            try:
                target = getattr(target, name)
            except AttributeError:
                raise ImportError(
                    f"{self.config.module} has no attribute {self.config.attribute!r}"
                ) from None
        if not callable(target):
            raise ImportError(f"{self.config.python} is not callable")
        function: Callable[[RunContext], Any] = target
        return function


async def _call(function: Callable[[RunContext], Any], ctx: RunContext) -> Any:
    if inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - an object with async __call__
    ):
        return await function(ctx)
    result = await _in_daemon_thread(function, ctx)
    if inspect.isawaitable(result):  # a plain function that returned a coroutine
        result = await result
    return result


def _in_daemon_thread(
    function: Callable[[RunContext], Any], ctx: RunContext
) -> asyncio.Future[Any]:
    """Run ``function(ctx)`` in a new daemon thread; a future of its result.

    Not ``asyncio.to_thread``: the default executor's threads are joined at shutdown, so a
    function that never returns would hold eventflow's exit forever.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():  # cancelled: timed out or stopped
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def work() -> None:
        try:
            value = context.run(function, ctx)
        except BaseException as exc:
            outcome: tuple[Any, BaseException | None] = (None, exc)
        else:
            outcome = (value, None)
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=work, name=f"eventflow-task-{ctx.run_id}", daemon=True).start()
    return future


def _to_result(value: Any) -> TaskResult:
    if isinstance(value, TaskResult):
        return value
    if value is False:
        return TaskResult(False, "the function returned False")
    if isinstance(value, dict):
        return TaskResult(True, "", _jsonable(value))
    return TaskResult(True)


def _jsonable(value: dict[Any, Any]) -> dict[str, JSON]:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        converted: dict[str, JSON] = json.loads(json.dumps(value, default=str))
        return converted
    return {str(k): v for k, v in value.items()}


def _failed(stderr: CappedFile, exc: BaseException, prefix: str = "") -> TaskResult:
    text = "".join(traceback.format_exception(exc))
    with contextlib.suppress(ValueError):
        stderr.write(text.encode("utf-8", "replace"))
    message = str(exc)
    detail = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return TaskResult(False, prefix + detail)
