"""An example eventflow plugin: a sensor, a publisher and a task runner.

- ``sequence`` sensor: emits ``count`` observations keyed ``PREFIX/n=N`` and remembers in its
  cursor how far it got, so a restart goes on where the last commit left it.
- ``jsonl`` publisher: appends completion events to a file, one CloudEvents JSON per line.
- ``touch`` task: writes the run id into a file whose path is a template.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from eventflow.plugin import (
    ClosedError,
    Event,
    Observation,
    PluginEnv,
    PublisherConfig,
    Resource,
    RunContext,
    SensorConfig,
    SensorContext,
    TaskResult,
    render,
)


class SequenceConfig(SensorConfig):
    """`{type: sequence, count: N, prefix: TEXT}`."""

    count: int = Field(ge=0, description="How many observations to emit.")
    prefix: str = Field(default="seq", description="Key prefix: keys are `PREFIX/n=N`.")


class SequenceSensor:
    """Emits ``count`` observations, then waits until cancelled."""

    config_model: ClassVar[type[BaseModel]] = SequenceConfig

    def __init__(self, name: str, config: SequenceConfig, env: PluginEnv) -> None:
        self.name = name
        self.config = config

    async def run(self, ctx: SensorContext) -> None:
        cursor = await ctx.load_cursor()
        start = cursor.get("next", 0)
        assert isinstance(start, int)
        ctx.set_health(True)
        for n in range(start, self.config.count):
            await ctx.emit(
                Observation(
                    sensor=ctx.name,
                    position={"n": n},
                    key=f"{self.config.prefix}/n={n}",
                    payload={"n": n},
                    cursor=("next", n + 1),
                )
            )
        await asyncio.Event().wait()


class JsonLinesConfig(PublisherConfig):
    """`{type: jsonl, path: FILE}`."""

    path: str = Field(description="File the events are appended to; relative to the pipeline.")


class JsonLinesPublisher(Resource):
    """Appends each event as one JSON line (``open`` opens the file, ``close`` closes it)."""

    config_model: ClassVar[type[BaseModel]] = JsonLinesConfig

    def __init__(self, name: str, config: JsonLinesConfig, env: PluginEnv) -> None:
        self.name = name
        self.path = env.base_dir / config.path
        self._file: Any = None
        self._closed = False

    async def open(self) -> None:
        if self._closed:
            raise ClosedError(f"publisher {self.name!r} is closed")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    async def publish(self, events: Sequence[Event]) -> None:
        if self._file is None:
            raise ClosedError(f"publisher {self.name!r} is not open")
        self._file.write("".join(e.to_json() + "\n" for e in events))
        self._file.flush()

    async def close(self) -> None:
        self._closed = True
        if self._file is not None:
            self._file.close()
            self._file = None


class TouchConfig(BaseModel):
    """`run: {touch: PATH}`: PATH is a template of the run's variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    touch: str = Field(description="File to write the run id into, e.g. `out/{n}.done`.")


class TouchTask:
    """Writes the run id into the file ``touch`` names."""

    config_model: ClassVar[type[BaseModel]] = TouchConfig

    def __init__(self, config: TouchConfig, env: PluginEnv) -> None:
        self.config = config
        self.env = env

    async def run(self, ctx: RunContext) -> TaskResult:
        path = self.env.base_dir / Path(render(self.config.touch, ctx.variables))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(ctx.run_id)
        return TaskResult(ok=True, output={"path": str(path)})

    async def close(self) -> None:
        """Nothing to release."""
