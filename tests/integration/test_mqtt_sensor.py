"""The MQTT sensor against a real mosquitto: subscriptions, acknowledgement after commit,
persistent sessions, dedupe positions, bad payloads, retained messages, shared subscriptions
and reconnection."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from eventflow.testing import RecordingContext, running
from eventflow.types import PluginEnv, Sensor
from eventflow_sensors.mqtt.sensor import MqttSensor
from tests.services.mqtt import Broker, Mosquitto

_ids = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{next(_ids)}-{id(object()):x}"


def make(broker: Broker, pipeline: str, **config: Any) -> MqttSensor:
    config = {"type": "mqtt", "host": broker.host, "port": broker.port, **config}
    config.setdefault("reconnect_max", "1s")
    return MqttSensor("plant", config, PluginEnv(pipeline, Path(".")))


async def publish(
    broker: Broker, *messages: tuple[str, bytes | str], qos: int = 1, retain: bool = False
) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=qos, retain=retain)


@pytest.fixture
def pipeline() -> str:
    return unique("pipe")


def test_the_sensor_satisfies_the_protocol(mqtt_broker: Broker) -> None:
    """MqttSensor is a Sensor plugin."""
    assert isinstance(make(mqtt_broker, "p", topic="a/#"), Sensor)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_wildcards_deliver_decoded_json_with_topic_as_key(
    mqtt_broker: Broker, pipeline: str, protocol: str
) -> None:
    """`+` and `#` filters deliver matching messages with the topic as key, the decoded JSON
    payload and the MQTT attributes; other topics are not delivered."""
    root = unique("t")
    sensor = make(
        mqtt_broker, pipeline, topic=[f"{root}/+/ready", f"{root}/deep/#"], protocol=protocol
    )
    ctx = RecordingContext("plant")
    async with running(sensor, ctx):
        await ctx.wait_healthy()
        await publish(
            mqtt_broker,
            (f"{root}/p1/ready", json.dumps({"batch": 7})),
            (f"{root}/p1/other", "{}"),
            (f"{root}/deep/a/b", "[1, 2]"),
        )
        first, second = await ctx.take(2, commit=True)
        assert not await ctx.settle(quiet=0.3)
    assert first.key == f"{root}/p1/ready"
    assert first.payload == {"batch": 7}
    assert first.error is None
    assert first.attributes["topic"] == first.key
    assert first.attributes["qos"] == 1
    assert first.attributes["retain"] is False
    assert set(first.position) == {"topic", "digest", "first_seen"}
    assert second.key == f"{root}/deep/a/b"
    assert second.payload == [1, 2]


@pytest.mark.parametrize("qos", [1, 2])
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_only_committed_messages_are_acknowledged(
    mqtt_broker: Broker, pipeline: str, qos: int, protocol: str
) -> None:
    """Messages whose commit never happened are delivered again on the next connection of
    the session; committed ones are not."""
    topic = unique("ack/")
    cfg = {"topic": topic, "qos": qos, "protocol": protocol, "payload": "text"}
    ctx = RecordingContext("plant")
    async with running(make(mqtt_broker, pipeline, **cfg), ctx):
        await ctx.wait_healthy()
        await publish(mqtt_broker, *[(topic, f"m{i}") for i in range(5)], qos=qos)
        got = await ctx.take(5)
        ctx.commit(*got[:2])
        await asyncio.sleep(0.2)  # let the acks reach the broker
    assert [o.payload for o in got] == [f"m{i}" for i in range(5)]
    ctx2 = RecordingContext("plant", cursor=ctx.cursor)
    async with running(make(mqtt_broker, pipeline, **cfg), ctx2):
        again = await ctx2.take(3, commit=True)
        assert not await ctx2.settle(quiet=0.5)
    assert [o.payload for o in again] == ["m2", "m3", "m4"]


async def test_acknowledgements_from_another_thread_reach_the_broker(
    mqtt_broker: Broker, pipeline: str
) -> None:
    """`on_commit` may be called from any thread: it hops onto the loop and acknowledges, so
    nothing is delivered again on the next connection."""
    topic = unique("thread/")
    ctx = RecordingContext("plant")
    async with running(make(mqtt_broker, pipeline, topic=topic), ctx):
        await ctx.wait_healthy()
        await publish(mqtt_broker, *[(topic, f'{{"n": {i}}}') for i in range(10)])
        got = await ctx.take(10)
        await asyncio.to_thread(ctx.commit, *got)
        await asyncio.sleep(0.2)
    ctx2 = RecordingContext("plant", cursor=ctx.cursor)
    async with running(make(mqtt_broker, pipeline, topic=topic), ctx2):
        await ctx2.wait_healthy()
        assert not await ctx2.settle(quiet=0.5)


async def test_messages_published_while_stopped_arrive_at_start(
    mqtt_broker: Broker, pipeline: str
) -> None:
    """The persistent session queues QoS 1 messages while the sensor is away."""
    topic = unique("away/")
    ctx = RecordingContext("plant")
    async with running(make(mqtt_broker, pipeline, topic=topic), ctx):
        await ctx.wait_healthy()
    await publish(mqtt_broker, *[(topic, json.dumps({"n": i})) for i in range(20)])
    ctx2 = RecordingContext("plant")
    async with running(make(mqtt_broker, pipeline, topic=topic), ctx2):
        got = await ctx2.take(20, commit=True)
    assert [o.payload["n"] for o in got] == list(range(20))


async def test_same_payload_is_a_duplicate_within_the_window_and_new_after(
    mqtt_broker: Broker, pipeline: str
) -> None:
    """Without `id`, the same payload on the same topic gets the same position (a duplicate)
    within `dedupe_window` of its first arrival, also after a restart (the first-seen time
    is a committed cursor entry), and a new position after the window."""
    topic = unique("dup/")
    ctx = RecordingContext("plant")
    async with running(make(mqtt_broker, pipeline, topic=topic), ctx):
        await ctx.wait_healthy()
        await publish(mqtt_broker, (topic, "{}"), (topic, "{}"), (topic, '{"x": 1}'))
        a, b, c = await ctx.take(3, commit=True)
    assert a.id == b.id != c.id
    assert len(ctx.cursor) == 2
    ctx2 = RecordingContext("plant", cursor=ctx.cursor)
    async with running(make(mqtt_broker, pipeline, topic=topic), ctx2):
        await ctx2.wait_healthy()
        await publish(mqtt_broker, (topic, "{}"))
        [d] = await ctx2.take(1, commit=True)
    assert d.id == a.id
    await asyncio.sleep(max(0.0, (a.position["first_seen"] + 20) / 1000 - time.time()))
    ctx3 = RecordingContext("plant", cursor=ctx.cursor)
    async with running(make(mqtt_broker, pipeline, topic=topic, dedupe_window="10ms"), ctx3):
        await ctx3.wait_healthy()
        await publish(mqtt_broker, (topic, "{}"))
        [e] = await ctx3.take(1, commit=True)
    assert e.id != a.id
    assert ctx3.forgotten, "entries older than the window are forgotten"


async def test_id_expression_gives_the_position_and_a_missing_id_is_dead_lettered(
    mqtt_broker: Broker, pipeline: str
) -> None:
    """With `id: payload.batch_id` the position is topic + id, whatever else the payload
    holds; a message without the id, or whose payload is not JSON, carries an error naming
    the topic and message id (the engine dead-letters it) and is still acknowledged."""
    topic = unique("ids/")
    ctx = RecordingContext("plant")
    cfg = {"topic": topic, "id": "payload.batch_id"}
    async with running(make(mqtt_broker, pipeline, **cfg), ctx):
        await ctx.wait_healthy()
        await publish(
            mqtt_broker,
            (topic, '{"batch_id": "b1", "t": 1}'),
            (topic, '{"batch_id": "b1", "t": 2}'),
            (topic, '{"other": 1}'),
            (topic, b"\xff not json"),
        )
        ok1, ok2, no_id, bad = await ctx.take(4, commit=True)
        await asyncio.sleep(0.2)
    assert ok1.position == ok2.position == {"topic": topic, "id": "b1"}
    assert ok1.cursor is None
    assert no_id.error is not None
    assert "`id`" in no_id.error
    assert topic in no_id.error
    assert bad.error is not None
    assert "not UTF-8" in bad.error
    assert f"mid {bad.attributes['mid']}" in bad.error
    ctx2 = RecordingContext("plant")
    async with running(make(mqtt_broker, pipeline, **cfg), ctx2):
        await ctx2.wait_healthy()
        assert not await ctx2.settle(quiet=0.5), "dead-lettered messages were acknowledged"


@pytest.mark.parametrize(("mode", "expected"), [("ignore", 0), ("data", 1)])
async def test_retained_messages_are_ignored_or_data(
    mqtt_broker: Broker, pipeline: str, mode: str, expected: int
) -> None:
    """A retained message replayed at subscription is skipped with `retained: ignore` and
    observed with `retained: data`; live messages are observed either way."""
    topic = unique("ret/")
    await publish(mqtt_broker, (topic, "{}"), retain=True)
    ctx = RecordingContext("plant")
    async with running(make(mqtt_broker, pipeline, topic=topic, retained=mode), ctx):
        await ctx.wait_healthy()
        replayed = await ctx.settle(quiet=0.5, commit=True)
        await publish(mqtt_broker, (topic, '{"live": 1}'))
        [live] = await ctx.take(1, commit=True)
    assert len(replayed) == expected
    assert live.payload == {"live": 1}
    await publish(mqtt_broker, (topic, ""), retain=True)  # clear it


async def test_retained_data_is_replayed_once_per_mqtt5_session(
    mqtt_broker: Broker, pipeline: str
) -> None:
    """With MQTT 5 the retained message comes at the session's first subscription only, not
    again when the sensor reconnects to its session (3.1.1 brokers replay it every time)."""
    topic = unique("ret5/")
    await publish(mqtt_broker, (topic, '{"r": 1}'), retain=True)
    counts = []
    for _ in range(2):
        ctx = RecordingContext("plant")
        async with running(make(mqtt_broker, pipeline, topic=topic, retained="data"), ctx):
            await ctx.wait_healthy()
            counts.append(len(await ctx.settle(quiet=0.5, commit=True)))
    assert counts == [1, 0]
    await publish(mqtt_broker, (topic, ""), retain=True)


async def test_payload_modes_text_and_bytes(mqtt_broker: Broker, pipeline: str) -> None:
    """`payload: text` gives the UTF-8 text, `payload: bytes` base64 text."""
    topic = unique("modes/")
    results = {}
    for mode in ("text", "bytes"):
        ctx = RecordingContext("plant")
        sensor = make(mqtt_broker, f"{pipeline}-{mode}", topic=topic, payload=mode, qos=0)
        async with running(sensor, ctx):
            await ctx.wait_healthy()
            await publish(mqtt_broker, (topic, b"ab\xc3\xa9"), qos=0)
            [obs] = await ctx.take(1, commit=True)
        results[mode] = obs.payload
    assert results == {"text": "abé", "bytes": "YWLDqQ=="}


async def test_shared_subscription_splits_messages(mqtt_broker: Broker, pipeline: str) -> None:
    """Two sensors in one `share_group` each get part of the messages and together all."""
    topic = unique("shared/")
    cfg = {"topic": topic, "share_group": "workers", "payload": "text"}
    a, b = make(mqtt_broker, pipeline + "a", **cfg), make(mqtt_broker, pipeline + "b", **cfg)
    ca, cb = RecordingContext("plant"), RecordingContext("plant")
    async with running(a, ca), running(b, cb):
        await ca.wait_healthy()
        await cb.wait_healthy()
        await publish(mqtt_broker, *[(topic, f"m{i}") for i in range(40)])
        got_a = await ca.settle(quiet=0.5, commit=True)
        got_b = await cb.settle(quiet=0.1, commit=True)
    assert got_a, "each worker gets a share"
    assert got_b, "each worker gets a share"
    assert sorted(o.payload for o in got_a + got_b) == sorted(f"m{i}" for i in range(40))


async def test_reconnects_after_a_broker_restart_and_loses_nothing(
    mosquitto: Mosquitto, pipeline: str
) -> None:
    """When the broker goes away the sensor reports itself unhealthy and reconnects with
    backoff; messages queued for its session while it was away arrive, once committed."""
    topic = unique("restart/")
    ctx = RecordingContext("plant")
    async with running(make(mosquitto, pipeline, topic=topic, payload="text"), ctx):
        await ctx.wait_healthy()
        await publish(mosquitto, (topic, "before"))
        [before] = await ctx.take(1)  # not committed: the broker must send it again
        mosquitto.restart()
        await publish(mosquitto, (topic, "after"))
        got = await ctx.take(2, timeout=15, commit=True)
        assert False in [ok for ok, _ in ctx.health]
    assert before.payload == "before"
    assert [o.payload for o in got] == ["before", "after"]
    assert got[0].id == before.id
