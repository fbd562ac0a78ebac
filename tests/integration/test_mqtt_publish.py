"""The MQTT publisher (completion events) and the `publish` task's MQTT sender against a real
mosquitto."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from eventflow.errors import ClosedError, PublishError
from eventflow.events import Event
from eventflow.types import MessageSender, OutgoingMessage, PluginEnv, Publisher
from eventflow_sensors.mqtt.sensor import MqttPublisher, MqttSender
from tests.services.mqtt import Broker

_ids = itertools.count()
ENV = PluginEnv("pubtest", Path("."))


def run_event(rule: str, status: str, partition: dict[str, str]) -> Event:
    return Event(
        id=f"ev-{next(_ids)}",
        source=f"/eventflow/p/rules/{rule}",
        type=f"eventflow.run.{status}",
        time=datetime.now(UTC),
        data={"rule": rule, "partition": partition, "run_id": "r1"},
    )


async def collect(broker: Broker, topic_filter: str, n: int, timeout: float = 5) -> list[Any]:
    """Subscribe, then return the first ``n`` messages (retained ones included)."""
    out: list[Any] = []
    async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as c:
        await c.subscribe(topic_filter, qos=1)
        async with asyncio.timeout(timeout):
            async for message in c.messages:
                out.append(message)
                if len(out) == n:
                    return out
    return out


async def test_publisher_renders_topic_templates_and_retains(mqtt_broker: Broker) -> None:
    """Events go to the rendered topic as CloudEvents JSON at QoS 1; with `retain` a late
    subscriber sees the latest event of each partition's topic."""
    root = f"ef{next(_ids)}"
    publisher = MqttPublisher(
        "mqtt",
        {
            "type": "mqtt",
            "host": mqtt_broker.host,
            "port": mqtt_broker.port,
            "topic": root + "/{rule}/{plant}/{status}",
            "retain": True,
        },
        ENV,
    )
    assert isinstance(publisher, Publisher)
    await publisher.open()
    first = run_event("report", "started", {"plant": "p1"})
    latest = run_event("report", "succeeded", {"plant": "p1"})
    other = run_event("report", "succeeded", {"plant": "a/b"})
    await publisher.publish([first, latest, other])
    await publisher.close()
    await publisher.close()  # idempotent
    with pytest.raises(ClosedError):
        await publisher.publish([first])
    got = await collect(mqtt_broker, f"{root}/report/+/succeeded", 2)  # late subscriber
    by_topic = {m.topic.value: json.loads(m.payload) for m in got}
    assert by_topic[f"{root}/report/p1/succeeded"]["id"] == latest.id
    assert by_topic[f"{root}/report/a_b/succeeded"]["id"] == other.id, "`/` is kept in a level"
    assert all(m.retain for m in got)


def test_missing_template_variables_become_a_dash() -> None:
    """A variable the event does not have (a dataset event has no rule) renders as `-`."""
    publisher = MqttPublisher("m", {"type": "mqtt", "topic": "ef/{rule}/{kind}/{status}"}, ENV)
    event = Event(
        id="x",
        source="/s",
        type="eventflow.dataset.available",
        time=datetime.now(UTC),
        data={"dataset": "orders", "partition": {}},
    )
    assert publisher.topic_of(event) == "ef/-/dataset/available"


async def test_publisher_raises_publish_error_when_the_broker_is_unreachable() -> None:
    """An unreachable broker is a PublishError naming the broker (the outbox keeps events)."""
    from tests.services._process import free_port

    publisher = MqttPublisher("m", {"type": "mqtt", "host": "127.0.0.1", "port": free_port()}, ENV)
    with pytest.raises(PublishError, match=r"MQTT broker 127\.0\.0\.1"):
        await publisher.publish([run_event("r", "failed", {})])


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_sender_publishes_with_headers_as_user_properties(
    mqtt_broker: Broker, protocol: str
) -> None:
    """`send` returns after the broker's ack; headers and the key become MQTT 5 user
    properties (3.1.1 has none)."""
    topic = f"send{next(_ids)}/x"
    sender = MqttSender(
        {"host": mqtt_broker.host, "port": mqtt_broker.port, "protocol": protocol, "qos": 1}, ENV
    )
    assert isinstance(sender, MessageSender)
    receiver = asyncio.create_task(collect(mqtt_broker, topic, 1))
    await asyncio.sleep(0.3)  # subscribed
    await sender.open()
    facts = await sender.send(
        OutgoingMessage(topic, b'{"go": 1}', key=b"k1", headers=(("eventflow-run-id", b"r9"),))
    )
    await sender.close()
    [message] = await receiver
    assert facts == {"qos": 1, "retain": False, "bytes": 9}
    assert json.loads(message.payload) == {"go": 1}
    props = dict(getattr(message.properties, "UserProperty", []) or [])
    if protocol == "5":
        assert props == {"eventflow-run-id": "r9", "key": "k1"}
    with pytest.raises(ClosedError):
        await sender.send(OutgoingMessage(topic, b""))
