"""Decode bucket notifications: S3 event notifications (from SQS, or wrapped by SNS) and the
MinIO notification JSON that MinIO publishes to SQS-like targets, Kafka and MQTT.

:func:`decode` is pure and shared: the SQS path of the S3 sensor uses it, and so can any
code that receives MinIO notifications from a Kafka or MQTT topic. Object keys arrive
URL-encoded (``dt%3D2024-01-01/a+b.csv``); they are decoded with ``unquote_plus``, which
reads both real S3's form (space as ``+``) and moto's and MinIO's (``/`` as ``%2F``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus

import orjson

Kind = Literal["created", "removed", "other"]


class NotificationError(ValueError):
    """A message that is not a bucket notification this decoder understands."""


@dataclass(frozen=True, slots=True)
class Notice:
    """One object event of a notification."""

    bucket: str
    key: str
    kind: Kind
    name: str
    """The event name as sent, e.g. ``ObjectCreated:Put`` or ``s3:ObjectRemoved:Delete``."""
    etag: str | None = None
    size: int | None = None
    version: str | None = None
    sequencer: str | None = None


def decode(body: bytes | str) -> list[Notice]:
    """The object events in a notification message; ``[]`` for ``s3:TestEvent`` (sent when
    a notification configuration is saved). Raises NotificationError on anything else."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NotificationError(f"not JSON: {exc}") from exc
    if isinstance(doc, dict) and doc.get("Type") == "Notification" and "Message" in doc:
        return decode(doc["Message"])  # delivered through SNS
    if not isinstance(doc, dict):
        raise NotificationError("not a JSON object")
    if doc.get("Event") == "s3:TestEvent":
        return []
    records = doc.get("Records")
    if not isinstance(records, list):
        raise NotificationError("no `Records` list: not an S3 or MinIO bucket notification")
    return [_record(r, i) for i, r in enumerate(records)]


def _record(record: Any, index: int) -> Notice:
    try:
        name = str(record["eventName"])
        s3 = record["s3"]
        bucket = str(s3["bucket"]["name"])
        obj = s3["object"]
        key = unquote_plus(str(obj["key"]))
    except (KeyError, TypeError) as exc:
        raise NotificationError(
            f"record {index} lacks {exc} (eventName, s3.bucket, s3.object)"
        ) from exc
    bare = name.removeprefix("s3:")
    kind: Kind = (
        "created"
        if bare.startswith("ObjectCreated:")
        else "removed"
        if bare.startswith("ObjectRemoved:")
        else "other"
    )
    size = obj.get("size")
    etag = obj.get("eTag") or obj.get("etag")
    return Notice(
        bucket=bucket,
        key=key,
        kind=kind,
        name=name,
        etag=str(etag).strip('"') if etag else None,
        size=size if isinstance(size, int) else None,
        version=obj.get("versionId") or None,
        sequencer=obj.get("sequencer") or None,
    )
