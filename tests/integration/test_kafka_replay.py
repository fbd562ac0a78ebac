"""``replay --from-source`` for the Kafka sensor against real brokers: the topic is read
again from its beginning (tansu) or from the offsets at a time (``offsets_for_times``, which
noida-db answers correctly), into a replay of the rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from eventflow.config.loader import load_pipeline
from eventflow.events import Observation
from eventflow.pipeline import CompiledPipeline
from eventflow.replay import replay
from eventflow.store.memory import MemoryStore
from eventflow.testing import RecordingContext, running
from eventflow.types import PluginEnv, ReplayableSensor
from eventflow_sensors.kafka.sensor import KafkaSensor
from tests.services.kafka import KafkaBroker

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def pipeline(tmp_path: Path, broker: KafkaBroker, topic: str) -> CompiledPipeline:
    (tmp_path / "p.yaml").write_text(
        f"""
name: replayed
state: memory://
sensors:
  stream: {{type: kafka, bootstrap_servers: "{broker.bootstrap}", topic: {topic},
            consumer_group: false}}
datasets:
  inventory: {{sensor: stream, partition: {{dt: payload.dt}}}}
rules:
  load:
    when: {{all: [inventory], by: [dt]}}
    run: {{command: ["true"]}}
"""
    )
    return load_pipeline(tmp_path / "p.yaml")


async def produce(broker: KafkaBroker, topic: str, messages: list[tuple[int, str, int]]) -> None:
    """``(partition, dt, timestamp ms)`` messages with ``{"dt": dt}``, acks=all."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        for partition, dt, millis in messages:
            value = json.dumps({"dt": dt}).encode()
            await producer.send_and_wait(topic, value, partition=partition, timestamp_ms=millis)
    finally:
        await producer.stop()


async def replayed(sensor: KafkaSensor, since: datetime | None) -> list[Observation]:
    return [obs async for obs in sensor.replay_observations(since)]


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


async def test_kafka_replays_its_topic_from_the_beginning_with_the_ids_of_the_live_sensor(
    tmp_path: Path, kafka_broker: KafkaBroker
) -> None:
    """Six records on two partitions: the re-read yields them with the positions (so the
    event ids) the running sensor gives them, fires each day once as a replay, and a second
    replay from the source fires nothing."""
    topic = kafka_broker.topic(partitions=2)
    days = ["2024-05-01", "2024-05-02", "2024-05-03"]
    await produce(kafka_broker, topic, [(i % 2, dt, ms(T0)) for i, dt in enumerate(days * 2)])
    p = pipeline(tmp_path, kafka_broker, topic)
    spec = p.sensors["stream"]
    assert issubclass(spec.plugin, ReplayableSensor)
    sensor = KafkaSensor("stream", spec.config, PluginEnv("replayed", tmp_path))
    ctx = RecordingContext("stream")
    async with running(KafkaSensor("stream", spec.config, PluginEnv("replayed", tmp_path)), ctx):
        live = await ctx.take(6, timeout=30, commit=True)
    again = await replayed(sensor, None)
    assert sorted(o.id for o in again) == sorted(o.id for o in live)
    assert all(o.cursor is None and o.on_commit is None for o in again)
    async with MemoryStore() as store:
        report = await replay(p, store, since=None, sensors=["stream"], from_source=True)
        assert report.events == 6
        assert sorted(r.partition["dt"] for r in report.fired) == days
        assert (await store.counts())["events"] == 6
        second = await replay(p, store, since=None, sensors=["stream"], from_source=True)
        assert second.fired == []


async def test_kafka_replays_from_the_offsets_at_a_time(
    tmp_path: Path, durable_kafka: KafkaBroker
) -> None:
    """Records an hour apart: a replay since the second hour seeks each partition with
    ``offsets_for_times`` and yields the records from that time on; one since a time after
    the last record yields nothing, and a re-read stops at the end offsets it began with."""
    topic = durable_kafka.topic(partitions=2)
    hours = [T0 + timedelta(hours=h) for h in range(4)]
    messages = [(h % 2, f"2024-05-0{h + 1}", ms(when)) for h, when in enumerate(hours)]
    await produce(durable_kafka, topic, messages)
    config = pipeline(tmp_path, durable_kafka, topic).sensors["stream"].config
    sensor = KafkaSensor("stream", config, PluginEnv("replayed", tmp_path))
    since = await replayed(sensor, hours[1])
    assert sorted(o.payload["dt"] for o in since) == ["2024-05-02", "2024-05-03", "2024-05-04"]  # type: ignore[index]
    assert await replayed(sensor, hours[3] + timedelta(minutes=1)) == []
    everything: list[Any] = await replayed(sensor, None)
    assert len(everything) == 4
