"""MQTT: the sensor (subscriptions acknowledged after commit), the publisher and the sender.

The sensor subscribes to topic filters on a *persistent session*: its client id is stable
(``eventflow-<pipeline>-<sensor>``) and the session outlives the connection (clean session
off / clean start off with ``session_expiry``), so QoS 1/2 messages published while
eventflow is stopped are queued by the broker and delivered when it comes back.

Acknowledgement after commit. Each QoS 1/2 message becomes an observation whose
``on_commit`` sends the PUBACK (QoS 2: the PUBREC) once the engine has committed its
effects; until then the broker holds the message as in flight and resends it on the next
connection of the session. So a crash of eventflow, or a lost connection, loses nothing:
what was committed is redelivered and recognised as a duplicate by its event id (see
:mod:`eventflow_sensors.mqtt.dedupe`), what was not is processed then. Acknowledgements go out in
the order the messages arrived (the engine commits and acknowledges batches in order).
Messages that decode badly are dead-lettered with their topic and packet id, and
acknowledged like the others. QoS 0 messages have no acknowledgement: a crash loses those
still queued.

The broker sends at most ``receive_maximum`` (MQTT 5) or its ``max_inflight_messages``
(3.1.1; mosquitto's default is 20) unacknowledged messages; with acknowledgements held
until a commit, that bounds how many messages one commit can take: raise it for
throughput. MQTT cannot otherwise push back, so this is the sensor's backpressure.
"""

from __future__ import annotations

import asyncio
import base64
import random
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import aiomqtt
import jmespath
import orjson
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import BaseModel

from eventflow.plugin import (
    JSON,
    Observation,
    PluginEnv,
    SensorContext,
    SensorError,
    backoff,
    sensor_gauges,
)

from .ack import Acker, defer_qos2_receipt
from .client import make_client, stable_client_id
from .config import (
    MqttConnection,
    MqttPublisherConfig,
    MqttSenderConfig,
    MqttSensorConfig,
    MqttTls,
)
from .dedupe import Window
from .publish import MqttPublisher, MqttSender
from .reads import buffer_reads

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

__all__ = [
    "MqttConnection",
    "MqttPublisher",
    "MqttPublisherConfig",
    "MqttSender",
    "MqttSenderConfig",
    "MqttSensor",
    "MqttSensorConfig",
    "MqttTls",
]

CONNECTED_RESET = 30.0
"""A connection that lasted this long resets the reconnect backoff."""
EXCERPT = 1024


class MqttSensor:
    """Subscribes to MQTT topics on a persistent session (see the module doc)."""

    config_model: ClassVar[type[BaseModel]] = MqttSensorConfig
    scale_out: str = "shared"
    """With several workers, every worker runs the sensor: with `share_group` the broker
    splits the messages between them. Without one they would share one client id; the
    instance then says ``exclusive`` (honoured where the runtime asks the instance)."""

    def __init__(self, name: str, config: Any, env: PluginEnv) -> None:
        if not isinstance(config, MqttSensorConfig):
            config = MqttSensorConfig.model_validate(config)
        self.name = name
        self.config = config
        self.env = env
        self._gauges = sensor_gauges(name)
        if config.share_group is None:
            self.scale_out = "exclusive"
        # Members of a shared subscription each need a session of their own: by default the
        # host name tells them apart (a pod, a VM); several on one host set `client_id`.
        member = socket.gethostname() if config.share_group else None
        # Per environment too: a second session with production's client id would take over
        # (and end) production's session on the broker.
        pipeline = env.scoped(env.pipeline)
        self.client_id = config.client_id or stable_client_id(pipeline, name, member)
        self._id = jmespath.compile(config.id) if config.id else None

    async def run(self, ctx: SensorContext) -> None:
        """Receive until cancelled, reconnecting with backoff when the connection fails."""
        cfg = self.config
        self._ctx = ctx
        self._log: FilteringBoundLogger = ctx.log.bind(
            sensor=self.name, broker=cfg.address, client_id=self.client_id
        )
        self._window = Window(cfg.dedupe_window.total_seconds(), await ctx.load_cursor())
        loop = asyncio.get_running_loop()
        rng = random.Random()
        failures = 0
        while True:
            started = loop.time()
            try:
                await self._session(loop)
            except (aiomqtt.MqttError, SensorError) as exc:
                # Retried here rather than by the runtime, so that the dedupe window keeps
                # the first-seen times of messages not yet committed.
                if loop.time() - started > CONNECTED_RESET:
                    failures = 0
                failures += 1
                delay = backoff.delay(
                    failures, first=0.1, cap=cfg.reconnect_max.total_seconds(), rng=rng
                )
                ctx.set_health(False, f"MQTT broker {cfg.address}: {_reason(exc)}")
                self._log.warning(
                    "mqtt_disconnected",
                    error=_reason(exc),
                    failures=failures,
                    reconnect_in=round(delay, 2),
                )
                await asyncio.sleep(delay)

    async def _session(self, loop: asyncio.AbstractEventLoop) -> None:
        cfg = self.config
        client = make_client(
            cfg,
            self.env.base_dir,
            self.client_id,
            persistent=not cfg.clean_start,
            session_expiry=cfg.session_expiry.total_seconds(),
            receive_maximum=cfg.receive_maximum,
        )
        paho = client._client
        paho.manual_ack_set(True)
        defer_qos2_receipt(paho)
        buffer_reads(paho)
        acker = Acker(paho, loop)
        try:
            async with client:
                granted = await client.subscribe(self._subscriptions())
                self._check_granted(granted)
                self._ctx.set_health(True)
                self._log.info("mqtt_subscribed", filters=list(cfg.filters), qos=cfg.qos)
                async for message in client.messages:
                    await self._handle(message, acker)
        finally:
            acker.live = False  # acks of this connection's messages are void now

    def _subscriptions(self) -> list[tuple[str, Any]]:
        """The filters at ``qos``. With MQTT 5 the broker replays retained messages only when
        the subscription is new to the session, not at every reconnection."""
        cfg = self.config
        if cfg.protocol != "5":
            return [(f, cfg.qos) for f in cfg.filters]
        options = SubscribeOptions(
            qos=cfg.qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
        )
        return [(f, options) for f in cfg.filters]

    def _check_granted(self, granted: Sequence[Any]) -> None:
        """Raise when the broker refused a filter (reason code 0x80 and above); warn when it
        granted a lower QoS than asked for."""
        cfg = self.config
        for f, code in zip(cfg.filters, granted, strict=False):
            value = int(getattr(code, "value", code))
            if value >= 0x80:
                message = f"MQTT broker {cfg.address} refused the subscription to {f!r}: {code}"
                self._ctx.set_health(False, message)
                raise SensorError(
                    message,
                    hint="check the filter, the client's permissions (ACL) and, for"
                    " `$share/...`, that the broker supports shared subscriptions (MQTT 5)",
                )
            if value < cfg.qos:
                self._log.warning("mqtt_qos_downgraded", filter=f, asked=cfg.qos, granted=value)

    async def _handle(self, message: aiomqtt.Message, acker: Acker) -> None:
        topic = message.topic.value
        raw = _raw(message.payload)
        ack = partial(acker.ack, message.mid, message.qos) if message.qos else None
        if ack is not None:
            acker.received += 1
        gauges = self._gauges
        gauges.polled()
        gauges.lag(acker.inflight)
        if message.retain and self.config.retained == "ignore":
            self._log.debug("mqtt_retained_ignored", topic=topic, mid=message.mid)
            if ack is not None:
                ack()
            return
        now = datetime.now(UTC)
        now_ms = int(now.timestamp() * 1000)
        expired = self._window.expired(now_ms)
        if expired:
            await self._ctx.forget(expired)
        await self._ctx.emit(self._observation(message, topic, raw, now, now_ms, ack))

    def _observation(
        self,
        message: aiomqtt.Message,
        topic: str,
        raw: bytes,
        now: datetime,
        now_ms: int,
        ack: Any,
    ) -> Observation:
        attributes: dict[str, JSON] = {
            "topic": topic,
            "qos": message.qos,
            "retain": message.retain,
            "mid": message.mid,
            "size": len(raw),
            "properties": _properties(message),
        }
        payload, error = self._decode(raw)
        cursor = None
        position: dict[str, JSON] | None = None
        if error is None and self._id is not None:
            context = {**attributes, "payload": payload, "key": topic, "sensor": self.name}
            try:
                found = self._id.search(context)
            except jmespath.exceptions.JMESPathError as exc:
                found, error = None, f"`id` ({self.config.id}) failed: {exc}"
            if found is None or isinstance(found, dict | list):
                error = error or f"`id` ({self.config.id}) gave {found!r}, not a value"
            else:
                position = {"topic": topic, "id": found}
        if position is None:
            position, key, seen = self._window.position(topic, raw, now_ms)
            cursor = (key, seen)
        if error is not None:
            error = f"MQTT message on {topic} (mid {message.mid}): {error}"
            payload = raw[:EXCERPT].decode("utf-8", "replace")
        return Observation(
            sensor=self.name,
            position=position,
            key=topic,
            time=now,
            payload=payload,
            attributes=attributes,
            cursor=cursor,
            on_commit=ack,
            error=error,
        )

    def _decode(self, raw: bytes) -> tuple[JSON, str | None]:
        mode = self.config.payload
        if mode == "bytes":
            return base64.b64encode(raw).decode(), None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"payload is not UTF-8 ({exc.reason} at byte {exc.start})"
        if mode == "text":
            return text, None
        try:
            return orjson.loads(raw), None
        except orjson.JSONDecodeError as exc:
            return None, f"payload is not JSON ({exc})"


def _reason(exc: BaseException) -> str:
    """The error with the broker's reason under aiomqtt's, where it gave one."""
    text = str(exc)
    cause = exc.__cause__
    return f"{text}: {cause}" if cause is not None and str(cause) not in text else text


def _raw(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode()


def _properties(message: aiomqtt.Message) -> dict[str, JSON]:
    """MQTT 5 properties a dataset may read: user properties and the content type."""
    props = message.properties
    if props is None:
        return {}
    out: dict[str, JSON] = {}
    user = getattr(props, "UserProperty", None)
    if user:
        out["user"] = dict(user)
    content_type = getattr(props, "ContentType", None)
    if content_type:
        out["content_type"] = content_type
    return out
