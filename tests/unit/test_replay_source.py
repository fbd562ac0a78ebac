"""``replay --from-source``: a sensor that can re-read its source feeds the replay."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from eventflow.config.loader import load_pipeline
from eventflow.events import Observation
from eventflow.pipeline import CompiledPipeline
from eventflow.replay import ReplayError, replay
from eventflow.store.memory import MemoryStore
from eventflow.types import PluginEnv, ReplayableSensor

PIPELINE = """
name: source
state: memory://
sensors:
  feed: {type: directory, path: .}
datasets:
  orders: {sensor: feed, key: "orders/{dt}"}
rules:
  load:
    when: {any: [orders]}
    run: {command: ["true"]}
"""
T0 = datetime(2024, 5, 1, tzinfo=UTC)


class TopicLike:
    """Re-reads a 'topic' from a time: three messages, one of them before ``since``."""

    config_model: ClassVar[type[BaseModel]] = BaseModel
    seen_since: ClassVar[list[datetime | None]] = []

    def __init__(self, name: str, config: Any, env: PluginEnv) -> None:
        self.name = name

    async def run(self, ctx: Any) -> None:  # pragma: no cover - not used by replay
        raise NotImplementedError

    async def replay_observations(self, since: datetime | None) -> AsyncIterator[Observation]:
        TopicLike.seen_since.append(since)
        for offset, dt in enumerate(["2024-05-01", "2024-05-02", "2024-05-02"]):
            yield Observation("feed", {"offset": offset}, key=f"orders/{dt}", time=T0)


@pytest.fixture
def pipeline(tmp_path: Path) -> CompiledPipeline:
    (tmp_path / "p.yaml").write_text(PIPELINE)
    loaded = load_pipeline(tmp_path / "p.yaml")
    spec = dataclasses.replace(loaded.sensors["feed"], plugin=TopicLike)
    return dataclasses.replace(loaded, sensors={"feed": spec})


async def test_a_replayable_sensor_is_re_read_from_the_time_given(
    pipeline: CompiledPipeline,
) -> None:
    """The sensor gets ``since``; what it yields fires each partition once and is logged,
    and a second replay from the source fires nothing (same positions, same ids)."""
    assert issubclass(TopicLike, ReplayableSensor)
    async with MemoryStore() as store:
        report = await replay(pipeline, store, since=T0, sensors=["feed"], from_source=True)
        assert TopicLike.seen_since[-1] == T0
        assert report.events == 3
        # The third message updates 2024-05-02, which this replay fired: once is enough.
        fired = sorted((r.partition["dt"], r.generation) for r in report.fired)
        assert fired == [("2024-05-01", 1), ("2024-05-02", 1)]
        assert (await store.counts())["events"] == 3  # logged: they came from the source
        again = await replay(pipeline, store, since=T0, sensors=["feed"], from_source=True)
        assert again.fired == []


async def test_a_sensor_that_cannot_re_read_is_refused(tmp_path: Path) -> None:
    """The directory sensor has no source to re-read from a time: a clear error."""
    (tmp_path / "p.yaml").write_text(PIPELINE)
    plain = load_pipeline(tmp_path / "p.yaml")
    async with MemoryStore() as store:
        with pytest.raises(ReplayError, match="cannot re-read its source"):
            await replay(plain, store, since=T0, sensors=["feed"], from_source=True)
