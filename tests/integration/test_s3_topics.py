"""The S3 sensor's notifications from Kafka (tansu) and MQTT (mosquitto) topics, in the JSON
form MinIO publishes, for objects in a real S3 server (moto)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any
from urllib.parse import quote

import orjson

from eventflow.events import Observation
from eventflow.testing import RecordingContext, running
from eventflow_sensors.s3.topics import NAMESPACE
from tests.integration.test_s3_sensor import make, put
from tests.services.kafka import KafkaBroker
from tests.services.mqtt import Broker
from tests.services.s3 import S3Server


def minio_event(server: S3Server, bucket: str, keys: list[str], name: str = "Put") -> bytes:
    """The notification MinIO sends for objects just written (read back for ETag and size),
    keys URL-encoded as MinIO encodes them."""
    client = server.client()
    records = []
    for key in keys:
        head = client.head_object(Bucket=bucket, Key=key)
        records.append({
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": head["LastModified"].isoformat(),
            "eventName": f"s3:ObjectCreated:{name}",
            "userIdentity": {"principalId": "minioadmin"},
            "requestParameters": {"principalId": "minioadmin", "region": "",
                                  "sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": uuid.uuid4().hex.upper()[:16]},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {"name": bucket, "ownerIdentity": {"principalId": "minioadmin"},
                           "arn": f"arn:aws:s3:::{bucket}"},
                "object": {"key": quote(key, safe=""), "size": head["ContentLength"],
                           "eTag": head["ETag"].strip('"'), "contentType": "text/csv",
                           "userMetadata": {"content-type": "text/csv"},
                           "sequencer": f"{time.time_ns():X}"},
            },
            "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64)"},
        })  # fmt: skip
    return orjson.dumps({"EventName": f"s3:ObjectCreated:{name}",
                         "Key": f"{bucket}/{keys[0]}", "Records": records})  # fmt: skip


def objects(got: list[Observation]) -> list[str]:
    """The object keys among the observations (not the topic's checkpoints)."""
    return [o.key for o in got if o.key is not None and o.error is None]


def checkpoint(obs: Observation) -> tuple[str, int] | None:
    """``(cursor key, next offset)`` of a topic checkpoint (the Kafka cursor value is
    ``{offset, epoch, last}``); None for an observation that carries none."""
    if obs.cursor is None or not isinstance(obs.cursor[1], dict):
        return None
    offset = obs.cursor[1].get("offset")
    return (obs.cursor[0], offset) if isinstance(offset, int) else None


async def until(ctx: RecordingContext, cursor: tuple[str, int]) -> list[Observation]:
    """Observations (committed) up to the checkpoint ``cursor`` (records of one fetch
    share the checkpoint of the last)."""
    got = [await ctx.get(timeout=20, commit=True)]
    while checkpoint(got[-1]) != cursor:
        got.append(await ctx.get(timeout=20, commit=True))
    return got


async def group_offset(kafka: KafkaBroker, topic: str, expect: int) -> int | None:
    """The group's committed offset of partition 0, once it is ``expect`` (10 s at most)."""
    deadline = time.monotonic() + 10
    offset = kafka.committed(topic, topic, 1)[0]
    while offset != expect and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        offset = kafka.committed(topic, topic, 1)[0]
    return offset


def via_kafka(
    server: S3Server, bucket: str, kafka: KafkaBroker, topic: str, group: str = "", **config: Any
) -> Any:
    config.setdefault("poll_interval", "1h")
    source = {"bootstrap_servers": kafka.bootstrap, "topic": topic,
              "group_id": group or topic, "start": "earliest"}  # fmt: skip
    return make(server, bucket, notifications={"kafka": source}, **config)


async def test_kafka_notifications_fire_once_and_are_committed_after_their_objects(
    s3_server: S3Server, s3_bucket: str, kafka_broker: KafkaBroker
) -> None:
    """Objects notified on a Kafka topic are emitted from that one message, once each (keys
    decoded); the offset is the sensor's checkpoint, written with (after) the objects and
    committed to the group only after that; a foreign record is dead-lettered at its
    offset and the records after it still fire."""
    topic = kafka_broker.topic()
    ctx = RecordingContext("lake")
    keys = ["k/dt=2024-01-01/part a+1.csv", "k/dt=2024-01-01/part-2.csv"]
    async with running(via_kafka(s3_server, s3_bucket, kafka_broker, topic), ctx):
        await ctx.wait_healthy(timeout=15)
        await put(s3_server, s3_bucket, dict.fromkeys(keys, b"x"))
        event = minio_event(s3_server, s3_bucket, keys)
        started = time.monotonic()
        await asyncio.to_thread(kafka_broker.produce, topic, [(0, event)])
        got = await ctx.take(3, timeout=20)
        assert time.monotonic() - started < 10
        assert objects(got) == keys
        assert all(o.attributes["via"] == "notification" for o in got[:2])
        assert got[2].key is None
        assert checkpoint(got[2]) == (f"{NAMESPACE}{topic}/0", 1)
        await asyncio.sleep(0.5)
        assert kafka_broker.committed(topic, topic, 1)[0] is None  # not before the commit
        ctx.commit(*got)
        assert await group_offset(kafka_broker, topic, 1) == 1
        # The same notification again (a redelivery), a foreign record, a new object.
        await put(s3_server, s3_bucket, {"k/new": b"n"})
        more = [event, b'{"hello": 1}', minio_event(s3_server, s3_bucket, ["k/new"])]
        await asyncio.to_thread(kafka_broker.produce, topic, [(0, m) for m in more])
        got = await until(ctx, (f"{NAMESPACE}{topic}/0", 4))
        assert objects(got) == ["k/new"]
        bad = [o for o in got if o.error]
        assert len(bad) == 1
        assert bad[0].position == {"topic": topic, "partition": 0, "offset": 2}
        assert "not a bucket notification" in (bad[0].error or "")
        assert ctx.cursor[f"{NAMESPACE}{topic}/0"]["offset"] == 4
        assert objects(await ctx.settle(1.0)) == []
    assert keys[0] in ctx.cursor  # the objects' own record is beside the topic's


async def test_kafka_crash_before_commit_redelivers(
    s3_server: S3Server, s3_bucket: str, kafka_broker: KafkaBroker
) -> None:
    """A sensor stopped before its observations committed leaves the offset where it was:
    the next one reads the notification again (its checkpoint comes again, after the
    object); once that committed, a restart reads nothing more."""
    topic = kafka_broker.topic()
    ctx = RecordingContext("lake")
    await put(s3_server, s3_bucket, {"c/1": b"1"})
    await asyncio.to_thread(
        kafka_broker.produce, topic, [(0, minio_event(s3_server, s3_bucket, ["c/1"]))]
    )
    # A group per run (no wait for the last member's session to end): where each run
    # starts is eventflow's checkpoint, not the group's offset.
    config: dict[str, Any] = {"prefix": "c/", "poll_interval": "1h"}
    async with running(
        via_kafka(s3_server, s3_bucket, kafka_broker, topic, f"{topic}-1", **config), ctx
    ):
        lost = await ctx.take(2, timeout=20)  # the object (via the listing) + checkpoint
    ctx.emitted.clear()
    assert objects(lost) == ["c/1"]
    assert ctx.cursor == {}
    async with running(
        via_kafka(s3_server, s3_bucket, kafka_broker, topic, f"{topic}-2", **config), ctx
    ):
        again = await ctx.take(2, timeout=20, commit=True)
        assert objects(again) == ["c/1"]
        assert await ctx.settle(1.0) == []
    assert ctx.cursor[f"{NAMESPACE}{topic}/0"]["offset"] == 1
    async with running(
        via_kafka(s3_server, s3_bucket, kafka_broker, topic, f"{topic}-3", **config), ctx
    ):
        await ctx.wait_healthy(timeout=15)
        assert await ctx.settle(2.0) == []


async def test_an_object_listed_and_notified_on_kafka_is_one_event(
    s3_server: S3Server, s3_bucket: str, kafka_broker: KafkaBroker
) -> None:
    """An object the start-up listing emits and a notification then announces is one
    observation; the notification's checkpoint waits for it."""
    topic = kafka_broker.topic()
    await put(s3_server, s3_bucket, {"b/1": b"1"})
    ctx = RecordingContext("lake")
    sensor = via_kafka(s3_server, s3_bucket, kafka_broker, topic, poll_interval="300ms")
    async with running(sensor, ctx):
        first = await ctx.get(timeout=10)
        assert first.key == "b/1"
        assert first.attributes["via"] == "listing"
        await asyncio.to_thread(
            kafka_broker.produce, topic, [(0, minio_event(s3_server, s3_bucket, ["b/1"]))]
        )
        checkpoint = await ctx.get(timeout=20)
        assert checkpoint.key is None
        assert checkpoint.cursor is not None
        assert objects(await ctx.settle(1.0)) == []
        ctx.commit(checkpoint)
        await asyncio.sleep(0.5)
        assert kafka_broker.committed(topic, topic, 1)[0] is None  # the object is not in yet
        ctx.commit(first)
        assert await group_offset(kafka_broker, topic, 1) == 1


def via_mqtt(server: S3Server, bucket: str, broker: Broker, topic: str, **config: Any) -> Any:
    config.setdefault("poll_interval", "1h")
    source = {"host": broker.host, "port": broker.port, "topic": topic}
    return make(server, bucket, notifications={"mqtt": source}, **config)


async def publish(broker: Broker, topic: str, *payloads: bytes) -> None:
    import aiomqtt

    async with aiomqtt.Client(broker.host, broker.port, identifier=uuid.uuid4().hex) as client:
        for payload in payloads:
            await client.publish(topic, payload, qos=1)


async def test_mqtt_notifications_fire_once_and_a_crash_before_commit_redelivers(
    s3_server: S3Server, s3_bucket: str, mqtt_broker: Broker
) -> None:
    """Objects notified on an MQTT topic are emitted from that message, once; the message
    is acknowledged (PUBACK) only after the commit, so a sensor stopped before it gets
    the message again from its persistent session; a foreign message is dead-lettered."""
    topic = f"minio/{uuid.uuid4().hex[:8]}/events"
    ctx = RecordingContext("lake")
    config = {"prefix": "q/"}
    async with running(via_mqtt(s3_server, s3_bucket, mqtt_broker, topic, **config), ctx):
        await ctx.wait_healthy(timeout=15)  # subscribed: the session queues from now on
        assert await ctx.settle(0.5) == []
    await put(s3_server, s3_bucket, {"q/1": b"1", "q/2": b"2"})
    event = minio_event(s3_server, s3_bucket, ["q/1", "q/2"])
    await publish(mqtt_broker, topic, event)
    async with running(via_mqtt(s3_server, s3_bucket, mqtt_broker, topic, **config), ctx):
        got = await ctx.take(3, timeout=15)  # not committed: no PUBACK
        assert objects(got) == ["q/1", "q/2"]
    async with running(via_mqtt(s3_server, s3_bucket, mqtt_broker, topic, **config), ctx):
        got = await ctx.take(3, timeout=15, commit=True)  # redelivered
        assert objects(got) == ["q/1", "q/2"]
        assert got[2].key is None
        assert str(got[2].cursor[0]).startswith(NAMESPACE)  # type: ignore[index]
        await publish(mqtt_broker, topic, b"not json", event)
        got = await ctx.take(2, timeout=15, commit=True)
        assert [bool(o.error) for o in got] == [True, False]
        assert got[0].position["topic"] == topic
        assert objects(await ctx.settle(1.0)) == []  # the repeated notification: no object
    async with running(via_mqtt(s3_server, s3_bucket, mqtt_broker, topic, **config), ctx):
        await ctx.wait_healthy(timeout=15)
        assert objects(await ctx.settle(1.5)) == []  # acknowledged: nothing comes back
