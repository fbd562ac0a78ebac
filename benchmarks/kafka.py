"""Kafka: throughput from a pre-filled topic to a committed checkpoint, beside the bare
aiokafka consume rate, and produce -> task process start latency through ``eventflow run``.

The broker is tansu (in memory) on a free loopback port, or ``EVENTFLOW_TEST_KAFKA``.
Throughput scenarios, each on a fresh SQLite store, timed from the sensor's start until the
store's checkpoint holds the end offsets of every partition:

- ``nothing``: message mode, every message matches no dataset (a ``where`` that is false);
- ``watermark``: watermark mode, every message only advances the event-time watermark;
- ``partial``: message mode, every message opens a partial match of an ``all`` join.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.common import as_eventflow_run, eventflow_running, percentiles, wait_starts
from eventflow.config.loader import load_pipeline
from eventflow.engine import Engine
from eventflow.events import Observation
from eventflow.log import configure, get_logger
from eventflow.runtime import SensorHandle
from eventflow.store import open_store
from eventflow.types import PluginEnv
from eventflow_sensors.kafka.sensor import KafkaSensor
from tests.services._process import free_port
from tests.services.kafka import ENV, KafkaBroker, tansu_command

PARTITIONS = 3
T0 = 1_714_521_600_000

PIPELINE = """
name: kbench_{scenario}
state: "sqlite:///state.db"
sensors:
  stream:
    type: kafka
    bootstrap_servers: {bootstrap}
    topic: {topic}
    consumer_group: false
    mode: {mode}
    watermark: {{time: payload.ts, window: 1h, idle_timeout: null}}
datasets:
  a: {{sensor: stream, {dataset}}}
  b: {{sensor: stream, where: "payload.kind == 'never'", partition: {{p: payload.p}}}}
rules:
  join:
    when: {{all: [a, b], by: [p]}}
    run: {{command: ["true"]}}
"""

SCENARIOS = {
    "nothing": ("message", "where: \"payload.kind == 'never'\", partition: {p: payload.p}"),
    "watermark": ("watermark", 'key: "TOPIC", partition: {p: payload.window_start}'),
    "partial": ("message", "partition: {p: payload.p}"),
}


def messages(count: int) -> list[tuple[int, bytes]]:
    return [
        (i % PARTITIONS, json.dumps({"kind": "tick", "p": f"k{i}", "ts": T0 + i * 100}).encode())
        for i in range(count)
    ]


async def bare(bootstrap: str, topic: str, count: int) -> float:
    """Messages per second that a bare aiokafka consumer reads (getmany, 5,000 at a time)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started, seen = time.perf_counter(), 0
        while seen < count:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                seen += len(records)
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


class _AckingContext:
    """A sensor context that acknowledges every observation at once: the sensor alone."""

    name = "stream"

    def __init__(self) -> None:
        self.log = get_logger(sensor="stream")
        self.observed = 0

    async def emit(self, observation: Observation) -> None:
        self.observed += 1
        if observation.on_commit is not None:
            observation.on_commit()

    async def load_cursor(self) -> dict[str, Any]:
        return {}

    async def forget(self, keys: Any) -> None:
        return None

    def set_health(self, ok: bool, detail: str = "") -> None:
        return None


async def sensor_alone(bootstrap: str, topic: str, count: int) -> float:
    """Messages per second through the sensor (decoding, observations) with no engine."""
    config = {
        "type": "kafka",
        "bootstrap_servers": bootstrap,
        "topic": topic,
        "consumer_group": False,
        "group_id": f"alone-{time.time_ns()}",
    }
    sensor = KafkaSensor("stream", config, PluginEnv("kbench", Path(".")))
    ctx = _AckingContext()
    started = time.perf_counter()
    task = asyncio.create_task(sensor.run(ctx))
    try:
        while True:  # the sensor hands over in batches: polling is the measurement
            if ctx.observed >= count:
                break
            await asyncio.sleep(0.005)
        return count / (time.perf_counter() - started)
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def through_engine(bootstrap: str, topic: str, count: int, scenario: str) -> dict[str, Any]:
    mode, dataset = SCENARIOS[scenario]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        text = PIPELINE.format(
            scenario=scenario,
            bootstrap=bootstrap,
            topic=topic,
            mode=mode,
            dataset=dataset.replace("TOPIC", topic),
        )
        (root / "p.yaml").write_text(text)
        pipeline = load_pipeline(root / "p.yaml")
        spec = pipeline.sensors["stream"]
        async with open_store(pipeline.state_dsn, pipeline.base_dir) as store:
            await store.lock_worker()
            engine = Engine(pipeline, store)
            handle = SensorHandle("stream", engine, store)
            sensor = KafkaSensor("stream", spec.config, PluginEnv(pipeline.name, root))
            with as_eventflow_run():
                started = time.perf_counter()
                tasks = [
                    asyncio.create_task(engine.run()),
                    asyncio.create_task(sensor.run(handle)),
                ]
                try:
                    while True:  # poll the store: the checkpoint is what is measured
                        if _checkpointed(await store.load_cursors("stream"), topic) >= count:
                            break
                        await asyncio.sleep(0.02)
                    seconds = time.perf_counter() - started
                finally:
                    engine.stop()
                    for task in tasks:
                        task.cancel()
                    for task in tasks:
                        with contextlib.suppress(BaseException):
                            await task
            counts = await store.counts()
    return {
        "scenario": scenario,
        "messages": count,
        "seconds": seconds,
        "per_second": count / seconds,
        "open_matches": counts.get("matches_open", 0),
    }


def _checkpointed(cursor: dict[str, Any], topic: str) -> int:
    if topic in cursor:  # watermark mode: one entry with every offset
        return sum(cursor[topic]["offsets"].values())
    return sum(v for k, v in cursor.items() if k.startswith(f"{topic}/"))


LATENCY_PIPELINE = """
name: klatency
sensors:
  stream:
    type: kafka
    bootstrap_servers: {bootstrap}
    topic: {topic}
    consumer_group: false
    fetch_max_wait: 10ms  # tansu holds a fetch this long even when records arrive
datasets:
  part: {{sensor: stream, partition: {{n: payload.n}}}}
rules:
  start:
    when: {{any: [part]}}
    run:
      command: [bash, -c, "echo $EVENTFLOW_VAR_N $EPOCHREALTIME >> starts.log"]
engine: {{max_runs: 32, poll_interval: 1s}}
"""


async def _produce_spaced(bootstrap: str, topic: str, count: int, spacing: float) -> dict:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    sent: dict[str, float] = {}
    try:
        for i in range(count):
            sent[str(i)] = time.time()
            await producer.send_and_wait(topic, json.dumps({"n": i}).encode(), partition=i % 3)
            await asyncio.sleep(spacing)
    finally:
        await producer.stop()
    return sent


def latency(broker: KafkaBroker, count: int = 500, spacing: float = 0.01) -> dict[str, Any]:
    topic = broker.topic(PARTITIONS)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pipeline.yaml").write_text(
            LATENCY_PIPELINE.format(bootstrap=broker.bootstrap, topic=topic)
        )
        with eventflow_running(root, startup=3.0):
            sent = asyncio.run(_produce_spaced(broker.bootstrap, topic, count, spacing))
            starts = wait_starts(root / "starts.log", count)
    delays = [starts[n] - sent[n] for n in starts]
    return {"messages": count, "started": len(starts), **percentiles(delays)}


def run(count: int = 100_000) -> dict[str, Any]:
    configure("warning", "console")
    external = os.environ.get(ENV)
    if external:
        broker = KafkaBroker(external)
    else:
        port = free_port()
        broker = KafkaBroker(f"127.0.0.1:{port}", tansu_command(port))
        broker.start()
    try:
        topic = broker.topic(PARTITIONS)
        broker.produce(topic, messages(count))
        result: dict[str, Any] = {"bare": asyncio.run(bare(broker.bootstrap, topic, count))}
        result["sensor"] = asyncio.run(sensor_alone(broker.bootstrap, topic, count))
        result["scenarios"] = [
            asyncio.run(through_engine(broker.bootstrap, topic, count, name)) for name in SCENARIOS
        ]
        result["latency"] = latency(broker)
        return result
    finally:
        broker.stop()


def report(r: dict[str, Any]) -> str:
    lines = [
        f"kafka: bare aiokafka consume {r['bare']:,.0f} msg/s (getmany 5,000, 3 partitions)",
        f"kafka: the sensor alone (JSON decoding, observations, no engine)"
        f" {r['sensor']:,.0f} msg/s",
    ]
    for s in r["scenarios"]:
        lines.append(
            f"kafka -> committed checkpoint, {s['scenario']}: {s['per_second']:,.0f} msg/s"
            f" ({s['messages']:,} in {s['seconds']:.2f} s; open matches {s['open_matches']:,})"
        )
    lat = r["latency"]
    lines.append(
        f"kafka produce -> task process start ({lat['started']}/{lat['messages']}):"
        f" p50 {lat['p50'] * 1000:.1f} ms, p90 {lat['p90'] * 1000:.1f} ms,"
        f" p99 {lat['p99'] * 1000:.1f} ms, max {lat['max'] * 1000:.1f} ms"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)))
