"""A Kafka partition's checkpoint: the next offset, the log's epoch, the last record's digest.

The cursor entry ``TOPIC/PARTITION`` was a bare next offset; it is now
``{"offset": N, "epoch": E, "last": DIGEST}`` (a bare integer still reads as epoch 0
without a digest). ``last`` is a digest of the record at ``offset - 1`` (timestamp, key,
value): on assignment the sensor reads that record again and compares, so a topic that was
deleted and recreated, and has grown past the old checkpoint, is told apart from the log
it consumed. ``epoch`` counts the new logs found on the partition: it is part of the
position (hence the event id) of every record read from a new log, so a new record at an
old offset is not taken for the old one. Epoch 0 leaves the position as it always was.

Pure functions; the sensor calls :func:`cursor_value` once per partition per fetch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from eventflow.plugin import JSON

from .records import Record

Reason = Literal["log_shorter", "recreated", "retention"]
"""Why a partition's checkpoint no longer fits its log:

- ``log_shorter``: the log ends before the checkpoint (topic recreated, broker lost its log);
- ``recreated``: the record before the checkpoint is not the one consumed (topic recreated
  and grown past the checkpoint);
- ``retention``: the log begins after the checkpoint (records expired before being read).
"""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    offset: int
    """The next offset to read."""
    epoch: int = 0
    last: str | None = None
    """Digest of the record at ``offset - 1``; None when unknown (an older cursor)."""


def load(value: JSON) -> Checkpoint | None:
    """The checkpoint a cursor entry holds, or None (no entry, or not one of ours)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Checkpoint(value)
    if isinstance(value, dict) and isinstance(value.get("offset"), int):
        epoch, last = value.get("epoch", 0), value.get("last")
        return Checkpoint(
            value["offset"],
            epoch if isinstance(epoch, int) else 0,
            last if isinstance(last, str) else None,
        )
    return None


def cursor_value(offset: int, epoch: int, last: str) -> JSON:
    """The cursor entry after reading the record at ``offset - 1``, whose digest is ``last``."""
    return {"offset": offset, "epoch": epoch, "last": last}


def digest(record: Record) -> str:
    """A short digest of a record's timestamp, key and value (not of its offset)."""
    h = hashlib.blake2b(digest_size=8)
    key, value = record.key, record.value
    for part in (
        str(record.timestamp).encode(),
        b"-" if key is None else b"k%d:" % len(key) + key,
        b"-" if value is None else b"v%d:" % len(value) + value,
    ):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()
