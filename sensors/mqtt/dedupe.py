"""Source positions for MQTT messages, which carry no offset: an id, or a payload digest.

MQTT gives a message no durable position (the packet id is reused as soon as it is
acknowledged), yet QoS 1 redelivers a message that was not acknowledged before a crash,
and the engine recognises a redelivery only by an equal event id. So the position is:

- ``{topic, id}`` when the sensor's ``id`` expression names one: equal ids are the same
  event forever;
- otherwise ``{topic, digest, first_seen}``: the SHA-256 of the payload, plus the time the
  payload was first seen on that topic. :class:`Window` keeps ``first_seen`` per
  ``(topic, digest)`` as a *cursor entry*, written in the same transaction as the event, so
  a redelivery after a crash or restart finds it and gets the same position (a duplicate),
  while the same payload after ``dedupe_window`` gets a new ``first_seen``: a new event.
  Entries older than the window are forgotten (deleted from the store) as time passes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping

from eventflow.plugin import JSON

PRUNE_EVERY = 60.0
"""Seconds between sweeps for cursor entries older than the window."""


def payload_digest(topic: str, payload: bytes) -> tuple[str, str]:
    """``(cursor key, payload digest)`` of a message."""
    body = hashlib.sha256(payload).hexdigest()
    key = hashlib.sha256(topic.encode() + b"\0" + body.encode()).hexdigest()[:32]
    return key, body


class Window:
    """First-seen times of ``(topic, payload)`` pairs within the dedupe window."""

    def __init__(self, window: float, cursor: Mapping[str, JSON]) -> None:
        self.window_ms = int(window * 1000)
        self.first_seen: dict[str, int] = {
            k: int(v) for k, v in cursor.items() if isinstance(v, int)
        }
        self._next_prune = 0.0

    def position(self, topic: str, payload: bytes, now_ms: int) -> tuple[dict[str, JSON], str, int]:
        """The position of a message, and the cursor entry ``(key, first_seen)`` to write."""
        key, body = payload_digest(topic, payload)
        seen = self.first_seen.get(key)
        if seen is None or now_ms - seen >= self.window_ms:
            seen = self.first_seen[key] = now_ms
        return {"topic": topic, "digest": body, "first_seen": seen}, key, seen

    def expired(self, now_ms: int) -> list[str]:
        """Keys older than the window, removed here; the caller forgets them in the store.

        Checked at most every ``PRUNE_EVERY`` seconds. A key that is removed and then seen
        again gets a new ``first_seen``, exactly as it would have from the expired entry.
        """
        mono = time.monotonic()
        if mono < self._next_prune:
            return []
        self._next_prune = mono + PRUNE_EVERY
        old = [k for k, seen in self.first_seen.items() if now_ms - seen >= self.window_ms]
        for k in old:
            del self.first_seen[k]
        return old
