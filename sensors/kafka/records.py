"""Kafka records as observations: decoding, attributes, positions and event times.

Pure functions of a record; the sensor calls them for every record on the hot path, so they
build only what an observation needs (one dict for the position, one for the attributes).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from eventflow.plugin import JSON, Observation

EXCERPT = 1024
"""Characters of an undecodable value kept in its dead letter."""


class Record(Protocol):
    """What the sensor reads of an aiokafka ``ConsumerRecord``."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


Decoder = Callable[[bytes], JSON]


def _utf8(value: bytes) -> JSON:
    return value.decode()


def _base64(value: bytes) -> JSON:
    return base64.b64encode(value).decode("ascii")


DECODERS: dict[str, Decoder] = {"json": orjson.loads, "utf-8": _utf8, "bytes": _base64}


def text(data: bytes | None) -> str | None:
    """Keys and header values as text; bytes that are not UTF-8 are escaped, not refused."""
    return None if data is None else data.decode("utf-8", "backslashreplace")


def position(record: Record, epoch: int = 0) -> dict[str, JSON]:
    """Topic, partition, offset; and the partition's epoch once its log was replaced (see
    :mod:`.checkpoint`), so that ids of records of older logs never change."""
    where: dict[str, JSON] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
    }
    if epoch:
        where["epoch"] = epoch
    return where


def observe(
    sensor: str,
    record: Record,
    decode: Decoder,
    fmt: str,
    cursor: tuple[str, JSON] | None,
    on_commit: Callable[[], None] | None,
    epoch: int = 0,
) -> Observation:
    """The observation of one record; a value that does not decode becomes a dead letter."""
    headers = record.headers
    attributes: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "headers": {k: text(v) for k, v in headers} if headers else {},
    }
    value = record.value
    error = None
    payload: JSON = None
    if value is not None:
        try:
            payload = decode(value)
        except ValueError as exc:  # orjson.JSONDecodeError and UnicodeDecodeError are both
            error = (
                f"{fmt} value does not decode at {record.topic}/{record.partition}"
                f"@{record.offset}: {exc}"
            )
            payload = value[:EXCERPT].decode("utf-8", "backslashreplace")
    return Observation(
        sensor,
        position(record, epoch),
        text(record.key),
        datetime.fromtimestamp(record.timestamp / 1000, UTC),
        payload,
        attributes,
        cursor,
        on_commit,
        error,
    )


def event_time_reader(path: str) -> Callable[[Record], int | None]:
    """A function giving a record's event time in epoch milliseconds (None: no usable time).

    ``timestamp`` is the record's own timestamp; ``payload.a.b`` a field of the JSON value,
    as epoch milliseconds or ISO-8601 text (a time without a zone is UTC).
    """
    if path == "timestamp":
        return _record_timestamp
    keys = path.split(".")[1:]

    def read(record: Record) -> int | None:
        if record.value is None:
            return None
        try:
            node: Any = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            return None
        for k in keys:
            if not isinstance(node, dict):
                return None
            node = node.get(k)
        return epoch_millis(node)

    return read


def _record_timestamp(record: Record) -> int | None:
    return record.timestamp if record.timestamp >= 0 else None


def epoch_millis(value: object) -> int | None:
    """Epoch milliseconds from an int/float (milliseconds) or ISO-8601 text; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return int(when.timestamp() * 1000)
    return None


def iso(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat().replace("+00:00", "Z")
