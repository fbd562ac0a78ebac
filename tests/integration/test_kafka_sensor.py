"""The Kafka sensor against a real Kafka-protocol broker (tansu), driven with a recording
context: decoding, positions, cursors, seeking to the checkpoint, watermarks."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
import structlog.testing
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from eventflow.errors import ClosedError, PublishError, SensorError
from eventflow.events import Observation
from eventflow.testing import RecordingContext, running
from eventflow.types import PluginEnv
from eventflow_sensors.kafka.sensor import KafkaPublisher, KafkaSensor, KafkaSensorConfig
from tests.services._process import free_port
from tests.services.kafka import KafkaBroker, create_topic

HOUR = 3_600_000
T0 = int(datetime(2024, 5, 1, tzinfo=UTC).timestamp() * 1000)


def sensor(broker: KafkaBroker, topic: str, name: str = "stream", **config: Any) -> KafkaSensor:
    config = {
        "type": "kafka",
        "bootstrap_servers": broker.bootstrap,
        "topic": topic,
        "consumer_group": False,
        **config,
    }
    return KafkaSensor(name, config, PluginEnv("test", Path(".")))


async def produce(broker: KafkaBroker, topic: str, messages: list[dict[str, Any]]) -> None:
    """Send ``{partition, value, key?, headers?, timestamp_ms?}`` messages, acks=all."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        futures = []
        for m in messages:
            value = m["value"]
            raw = value if isinstance(value, bytes) else json.dumps(value).encode()
            futures.append(
                await producer.send(
                    topic,
                    raw,
                    key=m.get("key"),
                    partition=m.get("partition", 0),
                    headers=m.get("headers"),
                    timestamp_ms=m.get("timestamp_ms"),
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def offsets(cursor: dict[str, Any]) -> dict[str, int]:
    """The next offset per ``TOPIC/PARTITION`` entry of a message-mode cursor."""
    return {key: value["offset"] for key, value in cursor.items()}


def records(obs: list[Observation]) -> list[Observation]:
    """The observations of records (watermark checkpoints and windows left out)."""
    return [o for o in obs if "offset" in o.position]


async def test_records_become_observations_with_positions_and_attributes(
    kafka_broker: KafkaBroker, kafka_topic: Any
) -> None:
    """Every record of a 3-partition topic is one observation with its decoded payload, key,
    headers, timestamp and position; the cursor advances once per partition per fetch."""
    topic = kafka_topic(3)
    await produce(
        kafka_broker,
        topic,
        [
            {
                "partition": i % 3,
                "value": {"dt": f"2024-01-0{i}"},
                "key": b"k%d" % i,
                "headers": [("origin", b"flink")],
                "timestamp_ms": T0 + i,
            }
            for i in range(1, 7)
        ],
    )
    ctx = RecordingContext("stream")
    async with running(sensor(kafka_broker, topic), ctx):
        got = await ctx.take(6, timeout=10, commit=True)
    by_dt = {o.payload["dt"]: o for o in got}
    assert sorted(by_dt) == [f"2024-01-0{i}" for i in range(1, 7)]
    first = by_dt["2024-01-01"]
    assert first.key == "k1"
    assert first.position == {"topic": topic, "partition": 1, "offset": 0}
    assert first.attributes["headers"] == {"origin": "flink"}
    assert first.attributes["timestamp"] == T0 + 1
    assert first.attributes["topic"] == topic
    assert first.attributes["partition"] == 1
    assert first.time == datetime.fromtimestamp((T0 + 1) / 1000, UTC)
    assert offsets(ctx.cursor) == {f"{topic}/0": 2, f"{topic}/1": 2, f"{topic}/2": 2}
    assert sum(o.cursor is not None for o in got) <= 6


async def test_restart_seeks_to_checkpoint_and_commits_group_offsets(
    kafka_broker: KafkaBroker, kafka_topic: Any
) -> None:
    """A restarted sensor resumes at its checkpoint (nothing repeated, nothing skipped) and
    the acknowledged offsets are committed to the consumer group."""
    topic = kafka_topic(1)
    await produce(kafka_broker, topic, [{"value": {"n": i}} for i in range(5)])
    ctx = RecordingContext("stream")
    s = sensor(kafka_broker, topic)
    async with running(s, ctx):
        await ctx.take(5, timeout=10, commit=True)
        await asyncio.sleep(0.5)  # the group commit runs after the acknowledgement
    assert offsets(ctx.cursor) == {f"{topic}/0": 5}
    await produce(kafka_broker, topic, [{"value": {"n": i}} for i in range(5, 8)])
    again = RecordingContext("stream", cursor=ctx.cursor)
    async with running(sensor(kafka_broker, topic), again):
        got = await again.take(3, timeout=10, commit=True)
        assert await again.settle(quiet=0.5) == []
    assert [o.payload["n"] for o in got] == [5, 6, 7]
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=s.group_id)
    await consumer.start()
    try:
        assert await consumer.committed(TopicPartition(topic, 0)) == 8
    finally:
        await consumer.stop()


async def test_poison_message_is_deadlettered_and_the_stream_goes_on(
    kafka_broker: KafkaBroker, kafka_topic: Any
) -> None:
    """A value that is not JSON becomes an observation with an error (the engine dead-letters
    it with its position); the records after it are observed normally."""
    topic = kafka_topic(1)
    await produce(
        kafka_broker,
        topic,
        [{"value": {"n": 1}}, {"value": b"{not json"}, {"value": {"n": 3}}],
    )
    ctx = RecordingContext("stream")
    async with running(sensor(kafka_broker, topic), ctx):
        got = await ctx.take(3, timeout=10, commit=True)
    assert [o.error is None for o in got] == [True, False, True]
    assert got[1].position == {"topic": topic, "partition": 0, "offset": 1}
    assert f"{topic}/0@1" in (got[1].error or "")
    assert got[1].payload == "{not json"
    assert got[2].payload == {"n": 3}
    assert offsets(ctx.cursor) == {f"{topic}/0": 3}


async def test_text_and_bytes_formats(kafka_broker: KafkaBroker, kafka_topic: Any) -> None:
    """`format: utf-8` gives text payloads, `format: bytes` base64 text."""
    topic = kafka_topic(1)
    await produce(kafka_broker, topic, [{"value": b"hello \xff"}, {"value": b"plain"}])
    text = RecordingContext("stream")
    async with running(sensor(kafka_broker, topic, format="utf-8"), text):
        got = await text.take(2, timeout=10)
    assert got[0].error is not None
    assert got[1].payload == "plain"
    raw = RecordingContext("stream")
    async with running(sensor(kafka_broker, topic, format="bytes"), raw):
        got = await raw.take(2, timeout=10)
    assert got[0].payload == "aGVsbG8g/w=="
    assert got[0].error is None


async def test_start_latest_skips_history_but_not_what_comes_while_stopped(
    kafka_broker: KafkaBroker, kafka_topic: Any
) -> None:
    """`start: latest` ignores records from before the first start; records produced while
    the sensor was stopped (before it ever acknowledged anything) are still read."""
    topic = kafka_topic(1)
    await produce(kafka_broker, topic, [{"value": {"n": 0}}])
    ctx = RecordingContext("stream")
    async with running(sensor(kafka_broker, topic, start="latest"), ctx):
        await ctx.wait_healthy(10)
        assert await ctx.settle(quiet=0.5) == []
    await produce(kafka_broker, topic, [{"value": {"n": 1}}])
    async with running(sensor(kafka_broker, topic, start="latest"), ctx):
        got = await ctx.take(1, timeout=10, commit=True)
    assert got[0].payload == {"n": 1}


async def test_watermark_announces_each_window_once_after_every_partition(
    kafka_broker: KafkaBroker, kafka_topic: Any
) -> None:
    """In watermark mode an hour is announced only once every partition is past it (plus
    the allowed lateness), once, and not again after a restart from the checkpoint."""
    topic = kafka_topic(3)
    s = sensor(
        kafka_broker,
        topic,
        mode="watermark",
        watermark={
            "time": "payload.ts",
            "window": "1h",
            "allowed_lateness": "5m",
            "idle_timeout": None,
        },
    )
    ctx = RecordingContext("stream")

    def windows(obs: list[Observation]) -> list[str]:
        return [o.payload["window_start"] for o in obs if o.key == topic]

    async with running(s, ctx):
        # Partitions 0 and 1 reach 02:10, partition 2 only 00:30: nothing is complete.
        await produce(
            kafka_broker,
            topic,
            [
                {"partition": 0, "value": {"ts": T0 + 10 * 60_000}},
                {"partition": 0, "value": {"ts": T0 + 2 * HOUR + 10 * 60_000}},
                {"partition": 1, "value": {"ts": T0 + 2 * HOUR + 10 * 60_000}},
                {"partition": 2, "value": {"ts": T0 + 30 * 60_000}},
            ],
        )
        first = await ctx.settle(quiet=0.8, commit=True)
        assert windows(first) == []
        # Partition 2 reaches 01:04: 00:00-01:00 is past its end but not past 5m lateness.
        await produce(
            kafka_broker, topic, [{"partition": 2, "value": {"ts": T0 + HOUR + 4 * 60_000}}]
        )
        assert windows(await ctx.settle(quiet=0.8, commit=True)) == []
        # 01:06: hour 00 is complete; hour 01 is not.
        await produce(
            kafka_broker, topic, [{"partition": 2, "value": {"ts": T0 + HOUR + 6 * 60_000}}]
        )
        second = await ctx.settle(quiet=0.8, commit=True)
        assert windows(second) == ["2024-05-01T00:00:00Z"]
        window = next(o for o in second if o.key == topic)
        assert window.payload["window_end"] == "2024-05-01T01:00:00Z"
        assert window.position == {"topic": topic, "window_start": "2024-05-01T00:00:00Z"}
    cursor = ctx.cursor[topic]
    assert cursor["offsets"] == {"0": 2, "1": 1, "2": 3}
    # A restart from the checkpoint announces nothing again; new time moves on.
    again = RecordingContext("stream", cursor=ctx.cursor)
    async with running(s.__class__(s.name, s.config, PluginEnv("test", Path("."))), again):
        await produce(kafka_broker, topic, [{"partition": 2, "value": {"ts": T0 + 3 * HOUR}}])
        got = await again.settle(quiet=0.8, commit=True)
    assert windows(got) == ["2024-05-01T01:00:00Z"]
    assert Counter(windows(ctx.emitted + again.emitted)).most_common(1)[0][1] == 1


async def test_idle_partition_stops_blocking_the_watermark(
    kafka_broker: KafkaBroker, kafka_topic: Any
) -> None:
    """A partition that delivers nothing for `idle_timeout` no longer holds windows back."""
    topic = kafka_topic(3)
    s = sensor(
        kafka_broker,
        topic,
        mode="watermark",
        watermark={"time": "timestamp", "window": "1h", "idle_timeout": "1s"},
    )
    ctx = RecordingContext("stream")
    async with running(s, ctx):
        await produce(
            kafka_broker,
            topic,
            [  # partition 2 stays silent
                {"partition": 0, "value": {}, "timestamp_ms": T0 + 1},
                {"partition": 0, "value": {}, "timestamp_ms": T0 + HOUR + 1},
                {"partition": 1, "value": {}, "timestamp_ms": T0 + HOUR + 1},
            ],
        )
        got = await ctx.settle(quiet=0.3, timeout=0.6, commit=True)
        assert [o for o in got if o.key == topic] == []
        later = await ctx.settle(quiet=2.0, timeout=4, commit=True)
    announced = [o.payload["window_start"] for o in later if o.key == topic]
    assert announced == ["2024-05-01T00:00:00Z"]
    assert records(later) == []


async def test_missing_event_time_is_deadlettered(
    kafka_broker: KafkaBroker, kafka_topic: Any
) -> None:
    """In watermark mode a record without a readable event time is dead-lettered."""
    topic = kafka_topic(1)
    await produce(kafka_broker, topic, [{"value": {"other": 1}}, {"value": {"ts": T0}}])
    s = sensor(kafka_broker, topic, mode="watermark", watermark={"time": "payload.ts"})
    ctx = RecordingContext("stream")
    async with running(s, ctx):
        got = await ctx.settle(quiet=0.8, commit=True)
    errors = [o for o in got if o.error]
    assert len(errors) == 1
    assert errors[0].position == {"topic": topic, "partition": 0, "offset": 0}
    assert ctx.cursor[topic]["offsets"] == {"0": 2}


async def test_revoke_waits_for_the_engine_and_hands_over_at_the_checkpoint(
    kafka_broker: KafkaBroker, kafka_topic: Any
) -> None:
    """When a second member joins the group, the first gives up partitions only after the
    records it handed on are committed, hands on nothing more of them, and the new owner
    starts exactly at that checkpoint: every record is observed once over both members."""
    topic = kafka_topic(2)
    group = {"consumer_group": True, "group_id": f"g-{topic}", "heartbeat_interval": "300ms"}
    await produce(kafka_broker, topic, [{"partition": i % 2, "value": {"n": i}} for i in range(20)])
    shared: dict[str, Any] = {}  # one store for both members
    first_ctx = RecordingContext("stream")
    first_ctx.cursor = shared
    second_ctx = RecordingContext("stream")
    second_ctx.cursor = shared
    first = sensor(kafka_broker, topic, "one", **group)
    second = sensor(kafka_broker, topic, "two", **group)
    async with running(first, first_ctx):
        held = await first_ctx.take(20, timeout=15)  # handed to the engine, not committed
        with structlog.testing.capture_logs() as logs:
            async with running(second, second_ctx):
                async with asyncio.timeout(20):
                    while True:
                        if any(e["event"] == "kafka_partitions_revoking" for e in logs):
                            break
                        await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)  # the revoke waits; nobody reads the partitions
                assert second_ctx.emitted == []
                assert not any(e["event"] == "kafka_partitions_revoked" for e in logs), logs
                first_ctx.commit(*held)
            await produce(
                kafka_broker,
                topic,
                [{"partition": i % 2, "value": {"n": i}} for i in range(20, 40)],
            )
            deadline = asyncio.get_running_loop().time() + 20
            seen = [o.payload["n"] for o in held]
            while len(seen) < 40 and asyncio.get_running_loop().time() < deadline:
                for ctx in (first_ctx, second_ctx):
                    seen += [o.payload["n"] for o in ctx.take_nowait(commit=True)]
                await asyncio.sleep(0.1)
    assert sorted(seen) == list(range(40)), "a record was lost or observed twice"
    assert offsets(shared) == {f"{topic}/0": 20, f"{topic}/1": 20}


async def test_sasl_credentials_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SASL settings name environment variables; a missing one is a clear error, and the
    config holds no secret."""
    config = KafkaSensorConfig.model_validate(
        {
            "type": "kafka",
            "bootstrap_servers": "b:9093",
            "topic": "t",
            "sasl": {"mechanism": "SCRAM-SHA-512", "username_env": "KU", "password_env": "KP"},
            "tls": True,
        }
    )
    monkeypatch.delenv("KP", raising=False)
    monkeypatch.setenv("KU", "alice")
    with pytest.raises(SensorError, match="KP is not set"):
        config.client_options()
    monkeypatch.setenv("KP", "s3cret")
    options = config.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("alice", "s3cret")
    assert "s3cret" not in repr(config)


async def test_publisher_reports_an_unreachable_broker() -> None:
    """A publisher that cannot reach its brokers raises PublishError (the outbox keeps the
    events) and the sender a TaskError naming the topic."""
    port = free_port()
    publisher = KafkaPublisher(
        "events",
        {"type": "kafka", "bootstrap_servers": f"127.0.0.1:{port}", "topic": "t"},
        PluginEnv("test", Path(".")),
    )
    with pytest.raises(PublishError, match="cannot deliver to topic 't'"):
        await publisher.open()
    await publisher.close()
    await publisher.close()  # idempotent
    with pytest.raises(ClosedError):
        await publisher.open()


async def test_pattern_subscribes_to_every_matching_topic(kafka_broker: KafkaBroker) -> None:
    """`pattern` consumes every topic whose name matches (through the consumer group)."""
    prefix = f"pat{uuid.uuid4().hex[:6]}"
    topics = (f"{prefix}.a", f"{prefix}.b", f"x{prefix}")
    for topic in topics:
        await create_topic(kafka_broker.bootstrap, topic, 1)
    for topic in topics:
        await produce(kafka_broker, topic, [{"value": {"topic": topic}}])
    config = {
        "type": "kafka",
        "bootstrap_servers": kafka_broker.bootstrap,
        "pattern": f"^{prefix}\\..*",
        "heartbeat_interval": "300ms",
    }
    ctx = RecordingContext("stream")
    async with running(KafkaSensor("stream", config, PluginEnv("test", Path("."))), ctx):
        got = await ctx.take(2, timeout=20, commit=True)
        assert await ctx.settle(quiet=0.5) == []
    assert sorted(o.payload["topic"] for o in got) == [f"{prefix}.a", f"{prefix}.b"]
