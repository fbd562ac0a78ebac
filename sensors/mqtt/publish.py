"""MQTT publishing: completion events (the ``mqtt`` publisher) and the ``publish`` task's
sender, both through a :class:`~eventflow_sensors.mqtt.client.Link` that waits for the broker's
acknowledgement."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from eventflow.plugin import (
    JSON,
    ClosedError,
    Event,
    OutgoingMessage,
    PluginEnv,
    Resource,
    placeholders,
    render,
)

from .client import Link
from .config import MqttPublisherConfig, MqttSenderConfig


class MqttPublisher(Resource):
    """Publishes completion events, one MQTT message per event at ``qos``, to a topic
    rendered from the event (see ``MqttPublisherConfig.topic``). ``publish`` returns once
    the broker acknowledged every message (QoS 1/2), so the outbox deletes only delivered
    events; after a failure it sends the batch again and consumers dedupe by ``id``."""

    config_model: ClassVar[type[BaseModel]] = MqttPublisherConfig

    def __init__(self, name: str, config: Any, env: PluginEnv) -> None:
        if not isinstance(config, MqttPublisherConfig):
            config = MqttPublisherConfig.model_validate(config)
        self.name = name
        self.config = config
        self.env = env
        self._link = Link(config, env.base_dir, f"MQTT publisher {name!r}")
        self._variables = placeholders(config.topic)
        self._closed = False

    async def open(self) -> None:
        if self._closed:
            raise ClosedError(f"MQTT publisher {self.name!r} is closed")
        await self._link.connect()

    async def publish(self, events: Sequence[Event]) -> None:
        if self._closed:
            raise ClosedError(f"MQTT publisher {self.name!r} is closed; it cannot publish")
        cfg = self.config
        sends = [
            self._link.publish(
                self.topic_of(event), event.to_json().encode(), qos=cfg.qos, retain=cfg.retain
            )
            for event in events
        ]
        results = await asyncio.gather(*sends, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def topic_of(self, event: Event) -> str:
        """The event's topic: the template with its variables, `-` for missing ones."""
        data = event.data
        prefix, _, status = event.type.rpartition(".")
        values: dict[str, object] = {
            "type": event.type,
            "kind": prefix.rpartition(".")[2],
            "status": status,
            "pipeline": self.env.pipeline,
        }
        for name in ("rule", "dataset", "run_id"):
            if isinstance(data.get(name), str):
                values[name] = data[name]
        partition = data.get("partition")
        if isinstance(partition, dict):
            values = {**partition, **values}
        filled = {v: _level(str(values.get(v, "-"))) for v in self._variables}
        return render(self.config.topic, filled)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._link.close()


def _level(text: str) -> str:
    """A value made safe for one topic level (no ``/``, ``+``, ``#``)."""
    return text.replace("/", "_").replace("+", "_").replace("#", "_") or "-"


# --- the ``publish`` task's sender ------------------------------------------------------------


class MqttSender(Resource):
    """Sends ``publish`` task messages (``run: {publish: {mqtt: {...}, topic, payload}}``).

    Headers become MQTT 5 user properties (3.1.1 has none: they are dropped); the key has
    no MQTT equivalent and is sent as the user property ``key``."""

    config_model: ClassVar[type[BaseModel]] = MqttSenderConfig

    def __init__(self, config: Any, env: PluginEnv) -> None:
        if not isinstance(config, MqttSenderConfig):
            config = MqttSenderConfig.model_validate(config)
        self.config = config
        self._link = Link(config, env.base_dir, "MQTT publish task")
        self._closed = False

    async def open(self) -> None:
        if self._closed:
            raise ClosedError("this MQTT sender is closed")
        await self._link.connect()

    async def send(self, message: OutgoingMessage) -> dict[str, JSON]:
        if self._closed:
            raise ClosedError("this MQTT sender is closed; it cannot send")
        headers = list(message.headers)
        if message.key is not None:
            headers.append(("key", message.key))
        await self._link.publish(
            message.topic,
            message.value,
            qos=self.config.qos,
            retain=self.config.retain,
            headers=headers,
        )
        return {"qos": self.config.qos, "retain": self.config.retain, "bytes": len(message.value)}

    async def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            await self._link.close()
