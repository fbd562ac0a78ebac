"""The Kafka sensor when a partition's log no longer holds its checkpoint (tansu): a topic
deleted and recreated, shorter than the checkpoint or grown past it, under each `on_reset`
policy; and an older cursor (a bare offset) still read as it was."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog.testing

from eventflow.errors import SensorError
from eventflow.events import Observation
from eventflow.testing import RecordingContext, running
from tests.integration.test_kafka_sensor import offsets, produce, sensor
from tests.services.kafka import KafkaBroker, recreate_topic


async def recreate(broker: KafkaBroker, topic: str) -> None:
    """Delete the topic and create it again, empty, with one partition."""
    await recreate_topic(broker.bootstrap, topic, 1)


async def produce_one_by_one(broker: KafkaBroker, topic: str, values: list[Any]) -> None:
    """One record per produce request (tansu's end offset is exact only then)."""
    for value in values:
        await produce(broker, topic, [{"value": value}])


async def consumed(broker: KafkaBroker, topic: str, n: int) -> dict[str, Any]:
    """Produce ``n`` records, read them all with a first sensor, return its cursor."""
    await produce(broker, topic, [{"value": {"old": i}} for i in range(n)])
    ctx = RecordingContext("stream")
    async with running(sensor(broker, topic), ctx):
        await ctx.take(n, timeout=10, commit=True)
    return ctx.cursor


def resets(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "kafka_offset_reset"]


async def test_recreated_topic_grown_past_the_checkpoint_is_read_from_its_beginning(
    kafka_broker: KafkaBroker, kafka_topic: Any
) -> None:
    """A topic recreated while eventflow was away, whose new log has more records than the
    checkpoint, is detected by the digest of the record before the checkpoint: with the
    default `reprocess` every new record is observed, under a new epoch (new event ids)."""
    topic = kafka_topic(1)
    cursor = await consumed(kafka_broker, topic, 3)
    await recreate(kafka_broker, topic)
    await produce(kafka_broker, topic, [{"value": {"new": i}} for i in range(5)])
    ctx = RecordingContext("stream", cursor=cursor)
    with structlog.testing.capture_logs() as logs:
        async with running(sensor(kafka_broker, topic), ctx):
            got = await ctx.take(5, timeout=10, commit=True)
            assert await ctx.settle(quiet=0.5) == []
    assert [o.payload for o in got] == [{"new": i} for i in range(5)]
    assert got[0].position == {"topic": topic, "partition": 0, "offset": 0, "epoch": 1}
    (reset,) = resets(logs)
    assert reset["reason"] == "recreated"
    assert (reset["checkpoint"], reset["policy"], reset["epoch"]) == (3, "reprocess", 1)
    assert ctx.cursor[f"{topic}/0"]["epoch"] == 1
    # The new epoch is the checkpoint: a restart reads on, nothing again, nothing reset.
    await produce(kafka_broker, topic, [{"value": {"new": 5}}])
    again = RecordingContext("stream", cursor=ctx.cursor)
    with structlog.testing.capture_logs() as logs:
        async with running(sensor(kafka_broker, topic), again):
            (more,) = await again.take(1, timeout=10, commit=True)
            assert await again.settle(quiet=0.5) == []
    assert more.payload == {"new": 5}
    assert more.position["epoch"] == 1
    assert resets(logs) == []


async def test_log_shorter_than_the_checkpoint_is_read_from_its_beginning(
    kafka_broker: KafkaBroker, kafka_topic: Any
) -> None:
    """A log that ends before the checkpoint (recreated topic, lost log) is read from its
    beginning under `reprocess`, once the broker answers the fetch out of range (Kafka) or,
    on a broker that does not (tansu), once the new log reaches the checkpoint."""
    topic = kafka_topic(1)
    cursor = await consumed(kafka_broker, topic, 5)
    await recreate(kafka_broker, topic)
    await produce_one_by_one(kafka_broker, topic, [{"new": 0}, {"new": 1}])
    ctx = RecordingContext("stream", cursor=cursor)
    with structlog.testing.capture_logs() as logs:
        async with running(sensor(kafka_broker, topic), ctx):
            await asyncio.sleep(0.5)
            await produce_one_by_one(kafka_broker, topic, [{"new": i} for i in range(2, 5)])
            got = await ctx.take(5, timeout=10, commit=True)
            assert await ctx.settle(quiet=0.5) == []
    assert [(o.payload, o.position["epoch"]) for o in got] == [({"new": i}, 1) for i in range(5)]
    (reset,) = resets(logs)
    assert reset["reason"] in {"log_shorter", "recreated"}
    assert (reset["checkpoint"], reset["policy"], reset["skipped"]) == (5, "reprocess", 0)


async def test_skip_policy_jumps_to_the_end_and_says_how_many(
    kafka_broker: KafkaBroker, kafka_topic: Any
) -> None:
    """Under `on_reset: skip` the new log's records are skipped, logged with their count,
    and the records produced afterwards are observed under the new epoch."""
    topic = kafka_topic(1)
    cursor = await consumed(kafka_broker, topic, 3)
    await recreate(kafka_broker, topic)
    await produce_one_by_one(kafka_broker, topic, [{"new": i} for i in range(5)])
    ctx = RecordingContext("stream", cursor=cursor)
    with structlog.testing.capture_logs() as logs:
        async with running(sensor(kafka_broker, topic, on_reset="skip"), ctx):
            async with asyncio.timeout(10):
                while not resets(logs):  # noqa: ASYNC110 (logs have no event to wait on)
                    await asyncio.sleep(0.05)
            await produce(kafka_broker, topic, [{"value": {"new": 5}}])
            (after,) = await ctx.take(1, timeout=10, commit=True)
            assert await ctx.settle(quiet=0.5) == []
    (reset,) = resets(logs)
    assert (reset["reason"], reset["policy"], reset["skipped"]) == ("recreated", "skip", 5)
    assert (reset["checkpoint"], reset["log_start"], reset["log_end"]) == (3, 0, 5)
    assert after.payload == {"new": 5}
    assert after.position == {"topic": topic, "partition": 0, "offset": 5, "epoch": 1}
    assert offsets(ctx.cursor) == {f"{topic}/0": 6}


async def test_fail_policy_stops_the_sensor_naming_partition_checkpoint_and_fix(
    kafka_broker: KafkaBroker, kafka_topic: Any
) -> None:
    """Under `on_reset: fail` the sensor fails with an error naming the partition, the
    checkpoint, the log's range and the settings that fix it; nothing is observed."""
    topic = kafka_topic(1)
    cursor = await consumed(kafka_broker, topic, 4)
    await recreate(kafka_broker, topic)
    await produce_one_by_one(kafka_broker, topic, [{"new": i} for i in range(5)])
    ctx = RecordingContext("stream", cursor=cursor)
    s = sensor(kafka_broker, topic, on_reset="fail")
    with pytest.raises(SensorError) as failed:
        async with running(s, ctx) as task:
            await asyncio.wait_for(asyncio.shield(task), 10)
    message = str(failed.value)
    assert f"partition {topic}/0" in message
    assert "checkpoint 4" in message
    assert "from offset 0 to end offset 5" in message
    assert "on_reset: reprocess" in message
    assert [o for o in ctx.emitted if o.error is None] == []
    assert offsets(ctx.cursor) == {f"{topic}/0": 4}


async def test_a_bare_offset_cursor_is_still_the_checkpoint(
    kafka_broker: KafkaBroker, kafka_topic: Any
) -> None:
    """A cursor written before checkpoints carried a digest (a bare next offset) resumes
    there with the positions it always had; the next checkpoint carries the digest."""
    topic = kafka_topic(1)
    await produce(kafka_broker, topic, [{"value": {"n": i}} for i in range(5)])
    ctx = RecordingContext("stream", cursor={f"{topic}/0": 3})
    with structlog.testing.capture_logs() as logs:
        async with running(sensor(kafka_broker, topic), ctx):
            got: list[Observation] = await ctx.take(2, timeout=10, commit=True)
            assert await ctx.settle(quiet=0.5) == []
    assert [o.payload for o in got] == [{"n": 3}, {"n": 4}]
    assert got[0].position == {"topic": topic, "partition": 0, "offset": 3}
    assert resets(logs) == []
    entry = ctx.cursor[f"{topic}/0"]
    assert (entry["offset"], entry["epoch"]) == (5, 0)
    assert isinstance(entry["last"], str)


async def test_records_delivered_again_after_a_seek_are_not_a_reset(
    kafka_broker: KafkaBroker, kafka_topic: Any
) -> None:
    """Records before the checkpoint that come again (a fetch from before a rebalance's seek:
    a consumer group's join reassigned the partition after the first read) are checked
    against the record consumed, dropped, and never taken for a reset: before, the sensor
    logged `log_shorter`, began a new epoch and fired the same record a second time."""
    from aiokafka import TopicPartition

    topic = kafka_topic(1)
    await produce_one_by_one(kafka_broker, topic, [{"old": i} for i in range(3)])
    ctx = RecordingContext("stream")
    kafka = sensor(kafka_broker, topic)
    with structlog.testing.capture_logs() as logs:
        async with running(kafka, ctx):
            first = await ctx.take(3, timeout=10, commit=True)
            kafka._consumer_.seek(TopicPartition(topic, 0), 0)  # as a stale fetch would
            await produce_one_by_one(kafka_broker, topic, [{"new": 3}])
            (more,) = await ctx.take(1, timeout=10, commit=True)
            assert await ctx.settle(quiet=0.5) == []
    assert [o.payload for o in first] == [{"old": i} for i in range(3)]
    assert more.payload == {"new": 3}
    assert "epoch" not in more.position  # still the first log's epoch, 0
    assert resets(logs) == []
    assert [e for e in logs if e["event"] == "kafka_verify_again"]
