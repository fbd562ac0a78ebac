"""Config models of the MQTT sensor, publisher and ``publish`` sender.

One connection model (:class:`MqttConnection`) is shared by all three, so a broker is
described the same way wherever it appears. Credentials come from the environment through
``${VAR}`` interpolation; the password is a secret that never shows in a repr or a log.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from eventflow.plugin import Duration, Model, PublisherConfig, SensorConfig

QoS = Literal[0, 1, 2]


class MqttTls(Model):
    """TLS to the broker: `tls: {}` uses the system's CA certificates."""

    ca_file: str | None = Field(
        default=None, description="CA bundle (PEM) that signs the broker's certificate."
    )
    cert_file: str | None = Field(
        default=None, description="Client certificate (PEM) for mutual TLS."
    )
    key_file: str | None = Field(default=None, description="Key of `cert_file` (PEM).")
    insecure: bool = Field(
        default=False,
        description="Skip checking the broker's host name against its certificate (tests only).",
    )

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("`cert_file` and `key_file` go together (mutual TLS)")
        return self


class MqttConnection(Model):
    """Where the broker is and how to log in (shared by the sensor, publisher and sender)."""

    host: str = Field(default="localhost", description="Broker host name.")
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Broker port; default 1883, or 8883 with `tls`.",
    )
    protocol: Literal["3.1.1", "5"] = Field(
        default="5", description="MQTT protocol version: `5` (default) or `3.1.1`."
    )
    username: str | None = Field(
        default=None, description="User name; e.g. `${MQTT_USERNAME}` from the environment."
    )
    password: SecretStr | None = Field(
        default=None,
        description="Password; write `${MQTT_PASSWORD}` so it comes from the environment."
        " Never logged.",
    )
    tls: MqttTls | None = Field(default=None, description="TLS settings; absent: plain TCP.")
    keepalive: Duration = Field(
        default=timedelta(seconds=30), description="MQTT keep-alive interval."
    )
    client_id: str | None = Field(
        default=None,
        description="Client id. Sensor default: `eventflow-<pipeline>-<sensor>` (the pipeline"
        " name with `.ENV` in an environment other than `default`), stable so"
        " the broker keeps the session (with `share_group`, plus `-<hostname>`: each worker"
        " needs its own; several workers on one host set it, e.g. `ef-${WORKER}`);"
        " publishers and senders default to a random one.",
    )

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 8883 if self.tls is not None else 1883

    @property
    def address(self) -> str:
        return f"{self.host}:{self.effective_port}"


class MqttSensorConfig(SensorConfig, MqttConnection):
    """`{type: mqtt, host: H, topic: FILTER}`: messages on MQTT topics."""

    topic: tuple[str, ...] = Field(
        description="Topic filter(s) to subscribe to; `+` and `#` wildcards, and"
        " `$share/GROUP/filter` for a shared subscription (see `share_group`)."
    )
    qos: QoS = Field(
        default=1,
        description="Subscription QoS. 1 or 2: messages are acknowledged to the broker only"
        " after their effects are committed; 0: they may be lost in a crash.",
    )
    share_group: str | None = Field(
        default=None,
        description="Subscribe as `$share/GROUP/filter`, so the workers of a group split the"
        " messages (MQTT 5 and brokers that support shared subscriptions).",
    )
    session_expiry: Duration = Field(
        default=timedelta(days=1),
        description="How long the broker keeps the session (and queues QoS 1/2 messages)"
        " while eventflow is away. MQTT 5 only; 3.1.1 sessions never expire.",
    )
    clean_start: bool = Field(
        default=False,
        description="Start with an empty session, dropping what the broker queued while"
        " eventflow was away (messages are lost).",
    )
    payload: Literal["json", "text", "bytes"] = Field(
        default="json",
        description="How the payload is decoded: `json` (what `partition`/`where` read),"
        " `text` (UTF-8) or `bytes` (base64 text). A payload that does not decode is"
        " dead-lettered with its topic and message id.",
    )
    id: str | None = Field(
        default=None,
        description="JMESPath over `payload`, `topic`, ... giving a message's stable id"
        " (e.g. `payload.batch_id`): a message with an id seen before is a duplicate,"
        " forever. Without it, see `dedupe_window`.",
    )
    dedupe_window: Duration = Field(
        default=timedelta(hours=1),
        description="Without `id`: the same payload on the same topic within this window of"
        " its first arrival is a duplicate (a QoS 1 redelivery); after it, a new event.",
    )
    retained: Literal["ignore", "data"] = Field(
        default="ignore",
        description="Retained messages the broker replays at subscription: `ignore` them"
        " (acknowledged, not processed) or treat them as `data` (MQTT 5: only when the"
        " subscription is new to the session).",
    )
    receive_maximum: int = Field(
        default=1000,
        ge=1,
        le=65535,
        description="QoS 1/2 messages the broker may have unacknowledged at once (MQTT 5"
        " Receive Maximum; with 3.1.1 the broker's `max_inflight_messages` decides).",
    )
    reconnect_max: Duration = Field(
        default=timedelta(seconds=30),
        description="Longest wait between reconnection attempts (exponential backoff).",
    )

    @field_validator("topic", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("topic")
    @classmethod
    def _filters(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one topic filter; e.g. `topic: plant/+/ready`")
        for f in value:
            check_filter(f)
        return value

    @model_validator(mode="after")
    def _share(self) -> MqttSensorConfig:
        if self.share_group is not None and (
            not self.share_group or any(c in self.share_group for c in "/+#")
        ):
            raise ValueError("`share_group` is a name without `/`, `+` or `#`; e.g. `workers`")
        return self

    @property
    def filters(self) -> tuple[str, ...]:
        """The filters subscribed to, with the ``$share/GROUP/`` prefix where configured."""
        if self.share_group is None:
            return self.topic
        return tuple(
            f if f.startswith("$share/") else f"$share/{self.share_group}/{f}" for f in self.topic
        )


class MqttPublisherConfig(PublisherConfig, MqttConnection):
    """`publish: [{type: mqtt, host: H, topic: TEMPLATE}]`: completion events to MQTT."""

    topic: str = Field(
        default="eventflow/{kind}/{status}",
        description="Topic template: `{type}`, `{kind}` (run, dataset, match), `{status}`"
        " (succeeded, available, ...), `{rule}`, `{dataset}`, `{pipeline}` and partition"
        " variables; a missing one is `-`.",
    )
    qos: QoS = Field(default=1, description="Publish QoS; 1 waits for the broker's PUBACK.")
    retain: bool = Field(
        default=False,
        description="Retain each message, so a late subscriber sees the latest event of each"
        " topic (put the partition in the topic to keep one per partition).",
    )


class MqttSenderConfig(MqttConnection):
    """`run: {publish: {mqtt: {host: H, qos: 1}, topic: T, payload: P}}`: the connection."""

    qos: QoS = Field(default=1, description="Publish QoS; 1 or 2 wait for the broker's ack.")
    retain: bool = Field(default=False, description="Retain the message on its topic.")


def check_filter(f: str) -> None:
    """Raise ValueError if ``f`` is not a valid MQTT topic filter."""
    body = f
    if f.startswith("$share/"):
        parts = f.split("/", 2)
        if len(parts) < 3 or not parts[1] or not parts[2]:
            raise ValueError(f"shared subscription {f!r} must be `$share/GROUP/filter`")
        body = parts[2]
    if not body:
        raise ValueError("an empty topic filter subscribes to nothing")
    levels = body.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"topic filter {f!r}: `#` must be a whole last level")
        if "+" in level and level != "+":
            raise ValueError(f"topic filter {f!r}: `+` must be a whole level")
