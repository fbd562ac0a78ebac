"""Config models of the Kafka plugins: the connection (shared), the sensor, the publisher.

Credentials never appear in a pipeline file: `sasl.username_env`/`password_env` name the
environment variables that hold them, and they are read when the client is built.
"""

from __future__ import annotations

import os
import ssl
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from eventflow.plugin import Duration, Model, PublisherConfig, SensorConfig, SensorError


class Sasl(Model):
    """SASL authentication; the username and password are read from the environment."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="The SASL mechanism."
    )
    username_env: str = Field(
        default="KAFKA_USERNAME", description="Environment variable holding the username."
    )
    password_env: str = Field(
        default="KAFKA_PASSWORD", description="Environment variable holding the password."
    )


class Tls(Model):
    """TLS to the brokers; the system's CA bundle unless `cafile` is given."""

    cafile: str | None = Field(default=None, description="CA bundle (PEM) to verify brokers.")
    certfile: str | None = Field(default=None, description="Client certificate (PEM), for mTLS.")
    keyfile: str | None = Field(default=None, description="Client private key (PEM), for mTLS.")
    check_hostname: bool = Field(default=True, description="Verify the broker's host name.")


class KafkaConnection(Model):
    """How to reach the Kafka cluster: shared by the sensor, the publisher and `publish`."""

    bootstrap_servers: str | tuple[str, ...] = Field(
        description="`host:port` of one or more brokers (a list, or comma-separated)."
    )
    client_id: str | None = Field(
        default=None, description="Client id shown in broker logs; default `eventflow`."
    )
    sasl: Sasl | None = Field(default=None, description="SASL PLAIN/SCRAM authentication.")
    tls: Tls | bool | None = Field(
        default=None, description="`true` (system CAs) or `{cafile, certfile, keyfile}`."
    )

    def client_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments; reads the SASL credentials from the environment."""
        servers = self.bootstrap_servers
        options: dict[str, Any] = {
            "bootstrap_servers": list(servers) if isinstance(servers, tuple) else servers,
            "client_id": self.client_id or "eventflow",
        }
        tls = self.tls if isinstance(self.tls, Tls) else (Tls() if self.tls else None)
        if tls is not None:
            context = ssl.create_default_context(cafile=tls.cafile)
            context.check_hostname = tls.check_hostname
            if tls.certfile:
                context.load_cert_chain(tls.certfile, tls.keyfile)
            options["ssl_context"] = context
        if self.sasl is not None:
            options["security_protocol"] = "SASL_SSL" if tls else "SASL_PLAINTEXT"
            options["sasl_mechanism"] = self.sasl.mechanism
            options["sasl_plain_username"] = _env(self.sasl.username_env)
            options["sasl_plain_password"] = _env(self.sasl.password_env)
        elif tls is not None:
            options["security_protocol"] = "SSL"
        return options


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SensorError(
            f"the Kafka SASL credential variable {name} is not set",
            hint=f"export {name}=... in the environment eventflow runs in",
        )
    return value


class Watermark(Model):
    """Watermark mode: announce time windows once the topic's event time has passed them."""

    time: str = Field(
        default="timestamp",
        description="Event time of a record: `timestamp` (the record's) or a dotted path into"
        " the JSON payload (`payload.window_end`), ISO-8601 text or epoch milliseconds.",
    )
    window: Duration = Field(
        default=timedelta(hours=1), description="Length of the windows announced (aligned to UTC)."
    )
    allowed_lateness: Duration = Field(
        default=timedelta(0),
        description="A window is announced once the watermark is this far past its end.",
    )
    idle_timeout: Duration | None = Field(
        default=timedelta(minutes=1),
        description="A Kafka partition without records for this long (wall clock) stops"
        " holding the watermark back; `null` waits for every partition forever.",
    )

    @field_validator("time")
    @classmethod
    def _time_path(cls, value: str) -> str:
        if value != "timestamp" and not (value.startswith("payload.") and len(value) > 8):
            raise ValueError("write `timestamp` or a payload field, e.g. `payload.window_end`")
        return value

    @field_validator("window")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("the window must be longer than 0s; e.g. `1h`")
        return value


class KafkaSensorConfig(SensorConfig, KafkaConnection):
    """`{type: kafka, bootstrap_servers: HOST:PORT, topic: TOPIC}`: records of Kafka topics."""

    topic: str | None = Field(default=None, description="The topic to consume.")
    topics: tuple[str, ...] | None = Field(default=None, description="Several topics.")
    pattern: str | None = Field(
        default=None, description="A regular expression: every matching topic, as they appear."
    )
    group_id: str | None = Field(
        default=None,
        description="Kafka consumer group; default `eventflow.PIPELINE.SENSOR` (with `.ENV`"
        " appended in an environment other than `default`, so staging never joins production's"
        " group). Workers of one"
        " pipeline share its partitions; offsets are committed to it after eventflow's own"
        " checkpoint, so Kafka tooling shows the lag.",
    )
    group_instance_id: str | None = Field(
        default=None,
        description="Static group membership (KIP-345): a name unique to this worker and kept"
        " across its restarts (e.g. `${HOSTNAME}`), so a restarted worker gets its partitions"
        " back at once instead of after a rebalance and the session timeout. Needs a broker"
        " that supports it (Kafka 2.3+); a static member does not leave the group on"
        " shutdown, so its partitions wait for it up to `session_timeout`.",
    )
    consumer_group: bool = Field(
        default=True,
        description="Join the consumer group, so that several workers share the partitions;"
        " `false` reads every partition of `topic`/`topics` in this process (offsets are"
        " still committed to the group, for lag tooling). Watermark mode never joins.",
    )
    start: Literal["earliest", "latest"] | datetime = Field(
        default="earliest",
        description="Where a new pipeline starts on a partition it has no checkpoint for:"
        " `earliest`, `latest`, or an ISO-8601 time.",
    )
    on_reset: Literal["reprocess", "skip", "fail"] = Field(
        default="reprocess",
        description="What to do when a partition's log no longer holds the checkpoint (topic"
        " recreated, broker lost its log, retention passed unread records): `reprocess`"
        " reads the partition's log from its beginning (a new log's records get new event"
        " ids), `skip` jumps to its end, `fail` stops the sensor with an error. Each reset is"
        " logged (`kafka_offset_reset`) and counted.",
    )
    format: Literal["json", "utf-8", "bytes"] = Field(
        default="json",
        description="How values are decoded into `payload`: JSON, text, or `bytes` (base64"
        " text). A value that does not decode is dead-lettered with its position.",
    )
    mode: Literal["message", "watermark"] = Field(
        default="message",
        description="`message`: every record is an observation; `watermark`: an observation"
        " per window the topic's event time has passed (see `watermark`).",
    )
    watermark: Watermark = Field(
        default_factory=Watermark, description="Event time, window and lateness (watermark mode)."
    )
    max_records: int = Field(
        default=5000, ge=1, description="Most records fetched at once (`getmany`)."
    )
    max_uncommitted: int = Field(
        default=50_000,
        ge=1,
        description="Records handed to the engine but not yet checkpointed before the"
        " partitions are paused (backpressure).",
    )
    fetch_max_wait: Duration = Field(
        default=timedelta(milliseconds=500),
        description="How long the broker may hold a fetch while no record is there. Kafka"
        " answers as soon as a record arrives; brokers that do not (tansu) add up to this"
        " much latency: lower it there.",
    )
    session_timeout: Duration = Field(
        default=timedelta(seconds=10), description="Consumer-group session timeout."
    )
    heartbeat_interval: Duration = Field(
        default=timedelta(seconds=1), description="Consumer-group heartbeat interval."
    )

    @model_validator(mode="after")
    def _one_source(self) -> KafkaSensorConfig:
        given = [k for k in ("topic", "topics", "pattern") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "write exactly one of `topic: NAME`, `topics: [A, B]` or `pattern: REGEX`"
            )
        if self.pattern and (self.mode == "watermark" or not self.consumer_group):
            raise ValueError(
                "a `pattern` needs the consumer group (`consumer_group: true`) and message"
                " mode; name the topics with `topic` or `topics` instead"
            )
        return self

    @property
    def topic_names(self) -> tuple[str, ...]:
        return (self.topic,) if self.topic else (self.topics or ())


class KafkaPublisherConfig(PublisherConfig, KafkaConnection):
    """`publish: [{type: kafka, bootstrap_servers: HOST:PORT, topic: TOPIC}]`."""

    topic: str = Field(description="Topic the CloudEvents are written to.")
    linger: Duration = Field(
        default=timedelta(milliseconds=0), description="How long the producer batches."
    )
