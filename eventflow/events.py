"""What sensors observe and the one event envelope eventflow builds from it.

A sensor hands the engine an :class:`Observation`: where the data is (its source position),
what it looked like, and the cursor change that acknowledges it. The engine turns it into an
:class:`Event` whose id is a digest of the sensor and the source position, so the same
message, object or file always gets the same id and the store can refuse it a second time.
Completion events that eventflow publishes use the same CloudEvents 1.0 envelope.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
from collections.abc import Callable, Mapping
from dataclasses import field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict

from eventflow.values import value

JSON = Any
"""A value that ``json.dumps`` accepts."""

Partition = Mapping[str, str]
"""A partition key: variable name to value, e.g. ``{"dt": "2024-01-01", "hr": "00"}``."""


def canonical_json(value: JSON) -> str:
    """Compact JSON with sorted keys: the form hashed into ids and stored as keys."""
    try:
        return orjson.dumps(value, option=_CANONICAL).decode()
    except TypeError:  # a type orjson does not take (an int beyond 64 bits, ...)
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
        )


_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def digest(*parts: JSON) -> str:
    """A stable 32-hex-digit id for the given parts."""
    return hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()[:32]


def event_id(sensor: str, position: Mapping[str, JSON]) -> str:
    """The deterministic id of what ``sensor`` observed at ``position``."""
    return digest("event", sensor, position)


def isoformat(when: datetime) -> str:
    """``when.isoformat()``, remembered for the last datetime asked (by identity: a datetime
    does not change). The engine formats each observation's time twice, for the dataset
    expressions and for the input reference; on the hot path of every observation."""
    global _last_iso
    last = _last_iso  # one tuple, read once: a thread that formats too cannot tear the pair
    if last[0] is when:
        return last[1]
    text = when.isoformat()
    _last_iso = (when, text)
    return text


_last_iso: tuple[datetime | None, str] = (None, "")

_encode = json.encoder.encode_basestring  # the C encoder: what json.dumps uses for str


def partition_key(partition: Partition) -> str:
    """The canonical text of a partition key (sorted JSON), used as a storage key.

    Equal to ``canonical_json(dict(partition))``, built directly because it is on the hot
    path of every rule evaluation.
    """
    try:
        parts = [_encode(k) + ":" + _encode(partition[k]) for k in sorted(partition)]
        return "{" + ",".join(parts) + "}"
    except TypeError:  # a value that is not a string
        return canonical_json(dict(partition))


def format_partition(partition: Partition) -> str:
    """``dt=2024-01-01/hr=00``: how people read a partition key."""
    return "/".join(f"{k}={v}" for k, v in partition.items()) or "-"


def utcnow() -> datetime:
    """The current time, tz-aware. The one place outside tests that reads the wall clock."""
    return datetime.now(UTC)


@value
class Observation:
    """Something a sensor saw, with everything needed to process and acknowledge it.

    ``position`` identifies the data at its source (topic/partition/offset, bucket/key/etag,
    path/size/mtime); the event id is derived from it. ``key`` is what dataset ``key``
    patterns match (a relative path, an object key, a topic). ``cursor`` is the sensor's
    checkpoint change written in the same transaction as the effects, and ``on_commit`` is
    called after that transaction has committed (Kafka offset commit, MQTT PUBACK).
    """

    sensor: str
    position: Mapping[str, JSON]
    key: str | None = None
    time: datetime | None = None
    payload: JSON = None
    attributes: Mapping[str, JSON] = field(default_factory=dict)
    cursor: tuple[str, JSON] | None = None
    on_commit: Callable[[], None] | None = None
    error: str | None = None
    """Set by a sensor that could not decode what it received; the engine dead-letters it."""

    @property
    def id(self) -> str:
        return event_id(self.sensor, self.position)


class Event(BaseModel):
    """The CloudEvents 1.0 envelope (JSON format) for observed and completion events."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: str
    subject: str | None = None
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, JSON]

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


@value
class InputRef:
    """One input of a rule: an event that announced a dataset partition, and where it came from."""

    event_id: str
    dataset: str
    partition: Mapping[str, str]
    sensor: str
    position: Mapping[str, JSON]
    time: str
    """ISO-8601 time of the observation at its source."""

    def to_dict(self) -> dict[str, JSON]:
        return {
            "event_id": self.event_id,
            "dataset": self.dataset,
            "partition": dict(self.partition),
            "sensor": self.sensor,
            "position": dict(self.position),
            "time": self.time,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, JSON]) -> InputRef:
        return cls(
            event_id=data["event_id"],
            dataset=data["dataset"],
            partition=dict(data["partition"]),
            sensor=data["sensor"],
            position=dict(data["position"]),
            time=data["time"],
        )
