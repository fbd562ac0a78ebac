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
from dataclasses import field, replace
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


MAX_KEY_CHARS = 4096
"""Longest ``key`` an observation may have (S3 allows 1,024 bytes, paths rarely pass 4,096)."""
MAX_PARTITION_BYTES = 1024
"""Longest partition key (its canonical JSON, in UTF-8 bytes). It is part of the primary key
of several tables; PostgreSQL refuses index entries of more than about 2,700 bytes."""


def observation_problem(obs: Observation, *, stored: bool = True) -> str | None:
    """Why ``obs`` cannot be stored as it is (text that is not Unicode, a NUL in its key, an
    overlong key), or None. The engine dead-letters such an observation (:func:`quarantine`)
    instead of failing on it: one bad file name or message never stops the others.

    ``stored=False``: the observation announces nothing, so only its cursor is written and
    only the cursor is checked (the engine's fast path for observations that match no
    dataset)."""
    if not stored:
        if obs.cursor is None:
            return None
        parts: tuple[tuple[str, Any], ...] = (("cursor", obs.cursor),)
    else:
        key = obs.key
        if key is not None:
            if "\0" in key:
                return "its key holds a NUL character"
            if len(key) > MAX_KEY_CHARS:
                return f"its key is {len(key):,} characters long (at most {MAX_KEY_CHARS:,})"
        parts = (
            ("source position", obs.position),
            ("key", key),
            ("payload", obs.payload),
            ("attributes", obs.attributes),
            ("cursor", obs.cursor),
        )
    try:  # the fast check, on every observation: orjson refuses surrogates (and big ints...)
        orjson.dumps(parts, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        for what, part in parts:
            if not _representable(part):
                return (
                    f"its {what} holds text that is not valid Unicode (bytes that are not"
                    " UTF-8, or a lone surrogate)"
                )
    return None


def _representable(part: JSON) -> bool:
    try:
        canonical_json(dict(part) if isinstance(part, Mapping) else part).encode()
    except (TypeError, ValueError):
        return False
    return True


def partition_problem(partition: Mapping[str, str]) -> str | None:
    """Why a partition key cannot be stored (a NUL character, too long), or None."""
    for name, text in partition.items():
        if "\0" in text:
            return f"partition variable {name!r} holds a NUL character"
    size = len(partition_key(partition).encode("utf-8", "surrogatepass"))
    if size > MAX_PARTITION_BYTES:
        return f"the partition key is {size:,} bytes long (at most {MAX_PARTITION_BYTES:,})"
    return None


def emit_problem(partition: Mapping[str, str], emit_id: str, payload: JSON) -> str | None:
    """Why an emitted event (``eventflow emit``, ``POST /api/events``) cannot be stored."""
    for what, part in (("partition", dict(partition)), ("id", emit_id), ("payload", payload)):
        if not _representable(part):
            return f"its {what} holds text that is not valid Unicode (a lone surrogate)"
    if len(emit_id) > MAX_KEY_CHARS or "\0" in emit_id:
        return f"its id must be at most {MAX_KEY_CHARS:,} characters, without NUL"
    return partition_problem(partition)


def quarantine(obs: Observation, problem: str) -> Observation:
    """``obs`` made storable for its dead letter: every text escaped (an undecodable file-name
    byte becomes ``\\xff``, a lone surrogate ``\\ud800``, a NUL ``\\x00``), overlong text
    cut; with ``problem`` as its error. Deterministic, so the same bad observation always gets
    the same event id and is dead-lettered once."""
    return replace(
        obs,
        position=_escape(dict(obs.position)),
        key=_escape(obs.key),
        payload=_escape(obs.payload),
        attributes={},
        cursor=None if obs.cursor is None else (escape_text(obs.cursor[0]), _escape(obs.cursor[1])),
        error=problem,
    )


def escape_text(text: str, limit: int = MAX_KEY_CHARS) -> str:
    """``text`` as printable, storable Unicode (see :func:`quarantine`), at most ``limit``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")  # undecodable bytes of a file name
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")  # other lone surrogates
    out = raw.decode("utf-8", "backslashreplace").replace("\0", "\\x00")
    if len(out) > limit:
        out = f"{out[:limit]}...({len(out):,} characters)"
    return out


def _escape(value: JSON) -> JSON:
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, Mapping):
        return {_escape(str(k)): _escape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escape(v) for v in value]
    return value


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
    pipelineversion: str | None = None
    """CloudEvents extension attribute: the version of the rule the event is about
    (:mod:`eventflow.versions`); absent on events about no rule."""

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
