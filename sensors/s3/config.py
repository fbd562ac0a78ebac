"""Config models of the S3 sensor (`sensors.NAME: {type: s3, ...}`) and the s3 publisher."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, model_validator

from eventflow.plugin import Duration, Model, PublisherConfig, SensorConfig

from ..kafka.config import KafkaConnection
from ..mqtt.config import MqttConnection

_STRFTIME = re.compile(r"%[A-Za-z%]")


class Connection(Model):
    """Where the bucket is and how to reach it; credentials come from boto3's default chain."""

    bucket: str = Field(description="The bucket's name.")
    region: str | None = Field(
        default=None, description="AWS region; default: boto3's (`AWS_REGION`, profile)."
    )
    endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible store (MinIO, Ceph, moto), e.g."
        " `http://localhost:9000`; default: AWS.",
    )
    path_style: bool = Field(
        default=False,
        description="Address buckets as `ENDPOINT/BUCKET/KEY` instead of `BUCKET.ENDPOINT/KEY`"
        " (most S3-compatible stores want this).",
    )
    request_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="How long one S3 or SQS request may go unanswered before it fails and"
        " is retried (3 attempts): an endpoint that hangs is reported after about three"
        " times this. SQS long polls wait `notifications.wait_time` on top.",
    )
    profile: str | None = Field(
        default=None,
        description="A named profile of `~/.aws/config` to take credentials from; default:"
        " boto3's chain (environment, profile, container or instance role). Credentials"
        " never appear in the pipeline file or the logs.",
    )


class S3Readiness(Model):
    """When an object is complete. Without any key an object is complete once listed: an
    S3 PUT (or a completed multipart upload) becomes visible all at once."""

    marker: str | None = Field(
        default=None,
        description="Objects of a prefix (`.../dt=D/`) are held until it holds this object"
        " (`_SUCCESS`, as Spark and Flink write); then they are emitted, the marker last."
        " A rewritten marker is emitted again (a partition update).",
    )
    manifest: str | None = Field(
        default=None,
        description="Like `marker`, but the object is a JSON manifest listing the parts"
        " (a list of keys, or `{entries: [{url: ...}]}` as Redshift writes, or"
        " `{files: [...]}`); the prefix is complete once every listed part exists.",
    )
    stable: bool = Field(
        default=False,
        description="Emit an object only once two consecutive listings saw the same size"
        " and ETag (for stores that show objects while they are written).",
    )

    @model_validator(mode="after")
    def _one_of(self) -> S3Readiness:
        if sum((self.marker is not None, self.manifest is not None, self.stable)) > 1:
            raise ValueError("write at most one of `marker`, `manifest` or `stable: true`")
        for name in (self.marker, self.manifest):
            if name is not None and (not name or "/" in name):
                raise ValueError("`marker`/`manifest` is an object name, e.g. `_SUCCESS`")
        return self

    @property
    def completes(self) -> str | None:
        """The object name that completes a prefix (marker or manifest), if any."""
        return self.marker or self.manifest


class KafkaNotifications(KafkaConnection):
    """MinIO bucket notifications on a Kafka topic (MinIO's Kafka target)."""

    topic: str = Field(description="The topic MinIO publishes the bucket's events to.")
    group_id: str | None = Field(
        default=None,
        description="Kafka consumer group; default `eventflow.PIPELINE.SENSOR`. Offsets are"
        " committed to it after eventflow's own checkpoint.",
    )
    start: Literal["earliest", "latest"] = Field(
        default="latest",
        description="Where a new pipeline starts reading the topic: `latest` (the start-up"
        " listing finds what is already there) or `earliest`.",
    )

    def sensor_config(self) -> dict[str, Any]:
        """The config of the Kafka sensor that reads the topic."""
        connection = {name: getattr(self, name) for name in KafkaConnection.model_fields}
        return {**connection, "type": "kafka", "topic": self.topic, "group_id": self.group_id,
                "start": self.start, "format": "utf-8"}  # fmt: skip


class MqttNotifications(MqttConnection):
    """MinIO bucket notifications on an MQTT topic (MinIO's MQTT target)."""

    topic: str = Field(description="The topic (filter) MinIO publishes the bucket's events to.")
    qos: Literal[1, 2] = Field(
        default=1,
        description="Subscription QoS; a message is acknowledged once what it announced is"
        " committed (publish at QoS 1 from MinIO too).",
    )
    session_expiry: Duration = Field(
        default=timedelta(days=1),
        description="How long the broker queues notifications while eventflow is away"
        " (MQTT 5; 3.1.1 sessions never expire).",
    )

    def sensor_config(self) -> dict[str, Any]:
        """The config of the MQTT sensor that subscribes to the topic."""
        connection = {name: getattr(self, name) for name in MqttConnection.model_fields}
        return {**connection, "type": "mqtt", "topic": self.topic, "qos": self.qos,
                "session_expiry": self.session_expiry, "payload": "text",
                "dedupe_window": timedelta(minutes=1)}  # fmt: skip


class Notifications(Model):
    """Where bucket notifications come from: an SQS queue (S3 event notifications), or a
    Kafka or MQTT topic (MinIO's notification targets). Exactly one."""

    sqs: str | None = Field(
        default=None, description="URL of the SQS queue the bucket's notifications go to."
    )
    kafka: KafkaNotifications | None = Field(
        default=None,
        description="A Kafka topic: `{bootstrap_servers: HOST:PORT, topic: minio.events}`.",
    )
    mqtt: MqttNotifications | None = Field(
        default=None, description="An MQTT topic: `{host: H, port: P, topic: minio/events}`."
    )
    wait_time: Duration = Field(
        default=timedelta(seconds=10),
        description="SQS: long-polling wait of each receive (at most 20s).",
    )
    max_messages: int = Field(default=10, ge=1, le=10, description="SQS: messages per receive.")

    @model_validator(mode="after")
    def _wait(self) -> Notifications:
        if sum(x is not None for x in (self.sqs, self.kafka, self.mqtt)) != 1:
            raise ValueError(
                "write one of `sqs: QUEUE_URL`, `kafka: {bootstrap_servers, topic}` or"
                " `mqtt: {host, topic}`"
            )
        if self.wait_time > timedelta(seconds=20):
            raise ValueError("`wait_time` is at most 20s (SQS's longest long poll)")
        return self

    @property
    def source(self) -> str:
        """``sqs``, ``kafka`` or ``mqtt``."""
        return "sqs" if self.sqs else "kafka" if self.kafka else "mqtt"


class S3SensorConfig(SensorConfig, Connection):
    """`{type: s3, bucket: B, prefix: P}`: objects that land in an S3 bucket."""

    prefix: str = Field(default="", description="Only keys starting with this are observed.")
    partition_prefix: str | None = Field(
        default=None,
        description="The prefixes of time partitions as a strftime template in UTC, e.g."
        " `orders/dt=%Y-%m-%d/`: with `lookback`, each poll lists only the prefixes of the"
        " last `lookback` (a few requests however many old objects the bucket holds).",
    )
    lookback: Duration | None = Field(
        default=None,
        description="How far back partitions can still change (e.g. `3d`); older ones are"
        " not listed and their objects are forgotten from the sensor's record.",
    )
    ready: S3Readiness = Field(
        default_factory=S3Readiness,
        description="When an object is complete: `{marker: _SUCCESS}`, `{manifest: NAME}`"
        " or `{stable: true}`; default: as soon as it is listed.",
    )
    notifications: Notifications | None = Field(
        default=None,
        description="Read bucket notifications (SQS, or a Kafka or MQTT topic) for low"
        " latency; listings then only"
        " reconcile (every `poll_interval`, default 5m).",
    )
    poll_interval: Duration | None = Field(
        default=None,
        description="How often the bucket is listed: default 30s, or 5m with `notifications`"
        " (a reconciliation that catches notifications that never came).",
    )

    @model_validator(mode="after")
    def _window(self) -> S3SensorConfig:
        if (self.partition_prefix is None) != (self.lookback is None):
            raise ValueError(
                "write `partition_prefix` and `lookback` together, e.g."
                " `partition_prefix: orders/dt=%Y-%m-%d/` and `lookback: 3d`"
            )
        if self.partition_prefix is not None:
            if not _STRFTIME.search(self.partition_prefix):
                raise ValueError("`partition_prefix` needs strftime fields, e.g. `dt=%Y-%m-%d/`")
            literal = self.partition_prefix.split("%", 1)[0]
            if not (literal.startswith(self.prefix) or self.prefix.startswith(literal)):
                raise ValueError("`partition_prefix` must lie under `prefix`")
        if self.lookback is not None and not self.lookback:
            raise ValueError("`lookback` must be above 0s")
        if self.poll_interval is not None and not self.poll_interval:
            raise ValueError("`poll_interval` must be above 0s")
        return self

    @property
    def interval(self) -> timedelta:
        """The effective ``poll_interval``."""
        if self.poll_interval is not None:
            return self.poll_interval
        return timedelta(minutes=5) if self.notifications else timedelta(seconds=30)


class S3PublisherConfig(PublisherConfig, Connection):
    """`publish: [{type: s3, bucket: B, keys: {DATASET: KEY}}]`: write a marker (or a
    manifest) object when a dataset partition becomes available, e.g. the `_SUCCESS` of a
    dataset a rule `produces`, for the next system down the line."""

    types: tuple[str, ...] = Field(
        default=("eventflow.dataset.available",),
        description="Event types acted on; only `eventflow.dataset.available` names a"
        " dataset and partition.",
    )
    keys: dict[str, str] = Field(
        description="Dataset name to the key written for each of its partitions, with"
        " `{var}` placeholders: `{report: 'reports/dt={dt}/_SUCCESS'}`. Other datasets are"
        " skipped."
    )
    body: str = Field(
        default="empty",
        pattern="^(empty|event)$",
        description="`empty` (a `_SUCCESS` marker, as Spark writes) or `event`: the"
        " CloudEvents JSON of the event, a manifest naming the partition and its lineage.",
    )
