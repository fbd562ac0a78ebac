"""Bucket notifications from a Kafka or MQTT topic: the Kafka or MQTT sensor, run inside
the S3 sensor.

MinIO publishes bucket notifications to Kafka and MQTT. Rather than a second consumer,
the S3 sensor runs the ordinary
:class:`~eventflow_sensors.kafka.sensor.KafkaSensor` (consumer group,
checkpoint seek, offsets committed after eventflow's commit, reconnects) or
:class:`~eventflow_sensors.mqtt.sensor.MqttSensor` (persistent session, PUBACK after commit) in a
:class:`Relay`: a :class:`~eventflow.types.SensorContext` that hands each message it emits
to the S3 sensor instead of the engine. The S3 sensor decodes the notification, emits the
objects it announces, then the message's checkpoint (its cursor entry and acknowledgement)
once every observation it caused has committed.

The topic sensor's cursor entries live in the S3 sensor's cursor under :data:`NAMESPACE`
(``~notifications/minio.events/0`` for a Kafka partition), apart from the object keys.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any

from eventflow.plugin import JSON, Observation, PluginEnv, Sensor, SensorContext

from .config import Notifications

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

NAMESPACE = "~notifications/"
"""Prefix of the topic sensor's entries in the S3 sensor's cursor."""


def topic_sensor(name: str, notifications: Notifications, env: PluginEnv) -> Sensor | None:
    """The Kafka or MQTT sensor reading the notifications, if they come from a topic."""
    if notifications.kafka is not None:
        from ..kafka.sensor import KafkaSensor

        return KafkaSensor(name, notifications.kafka.sensor_config(), env)
    if notifications.mqtt is not None:
        from ..mqtt.sensor import MqttSensor

        return MqttSensor(name, notifications.mqtt.sensor_config(), env)
    return None


def own_entries(cursor: dict[str, JSON]) -> dict[str, JSON]:
    """The S3 sensor's own part of its cursor (the objects), without the topic's."""
    return {k: v for k, v in cursor.items() if not k.startswith(NAMESPACE)}


class Relay:
    """The context of the topic sensor: its observations go to ``handle``, its cursor
    entries under :data:`NAMESPACE` of the S3 sensor's cursor, its health is the S3
    sensor's (prefixed ``notifications:``)."""

    def __init__(
        self, ctx: SensorContext, source: str, handle: Callable[[Observation], Awaitable[None]]
    ) -> None:
        self._ctx = ctx
        self._source = source
        self._handle = handle
        self.name = ctx.name
        self.log: FilteringBoundLogger = ctx.log.bind(notifications=source)

    async def emit(self, observation: Observation) -> None:
        await self._handle(observation)

    async def load_cursor(self) -> dict[str, JSON]:
        cursor = await self._ctx.load_cursor()
        return {k.removeprefix(NAMESPACE): v for k, v in cursor.items() if k.startswith(NAMESPACE)}

    async def forget(self, keys: Collection[str]) -> None:
        await self._ctx.forget([NAMESPACE + k for k in keys])

    def set_health(self, ok: bool, detail: str = "") -> None:
        self._ctx.set_health(ok, f"{self._source} notifications: {detail}" if detail else "")


def cursor_of(observation: Observation) -> tuple[str, JSON] | None:
    """The topic sensor's cursor change, moved into :data:`NAMESPACE`."""
    if observation.cursor is None:
        return None
    key, value = observation.cursor
    return NAMESPACE + key, value


def text_of(payload: Any) -> str:
    """The message as text (the topic sensors decode it as UTF-8)."""
    return payload if isinstance(payload, str) else ""
