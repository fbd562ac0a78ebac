"""Event-time watermarks of Kafka topics: when is a time window of a stream complete?

The watermark of a topic is the smallest, over its partitions, of the largest event time
each partition has delivered: every partition has moved past it. A window
``[start, start + window)`` is complete once the watermark has passed its end plus the
allowed lateness; it is announced once, in order, and the announced position is part of the
checkpoint, written in the same transaction as the offsets. A partition that has delivered
nothing for ``idle_timeout`` (wall clock) stops holding the watermark back, as in Flink's
``withIdleness``; its later records count again. When every partition is idle, the
watermark is the latest event time seen (the stream went quiet; everything sent was read).

Pure: the caller passes the wall clock (monotonic seconds) in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eventflow.plugin import JSON

MAX_WINDOWS_PER_STEP = 1000
"""Windows announced per call at most (a topic read from a year back announces in steps)."""


@dataclass(slots=True)
class TopicWatermark:
    """The watermark state of one topic (its checkpointed part is ``to_cursor``)."""

    window: int
    """Window length in milliseconds."""
    lateness: int
    idle: float | None
    """Seconds without records after which a partition no longer holds the watermark."""
    partitions: set[int] = field(default_factory=set)
    event_time: dict[int, int] = field(default_factory=dict)
    """Largest event time (epoch ms) seen per partition."""
    offsets: dict[int, int] = field(default_factory=dict)
    """Next offset to read per partition."""
    announced: int | None = None
    """End (epoch ms) of the last announced window; None before the first window."""
    earliest: int | None = None
    """The earliest event time seen before the first window: where the windows begin."""
    active: dict[int, float] = field(default_factory=dict)
    """Monotonic time of each partition's last record (or of its assignment)."""

    def assign(self, partitions: set[int], now: float) -> None:
        self.partitions = set(partitions)
        for p in partitions:
            self.active[p] = now

    def observe(self, partition: int, event_ms: int | None, next_offset: int, now: float) -> None:
        self.offsets[partition] = next_offset
        self.active[partition] = now
        if event_ms is None:
            return
        if event_ms > self.event_time.get(partition, -(2**62)):
            self.event_time[partition] = event_ms
        if self.announced is None and (self.earliest is None or event_ms < self.earliest):
            self.earliest = event_ms

    def watermark(self, now: float) -> int | None:
        """The topic's watermark, or None while a partition that holds it back has no time.

        When every partition is idle the stream has gone quiet and all it sent has been
        read: the watermark is then the latest event time seen.
        """
        times = []
        for p in self.partitions:
            if self.idle is not None and now - self.active.get(p, now) >= self.idle:
                continue
            t = self.event_time.get(p)
            if t is None:
                return None
            times.append(t)
        if times:
            return min(times)
        return max(self.event_time.values()) if self.event_time else None

    def due(self, now: float) -> list[int]:
        """Starts of the windows that are complete and not yet announced, oldest first;
        marks them announced."""
        mark = self.watermark(now)
        if mark is None:
            return []
        if self.announced is None:  # the first window: that of the earliest time seen
            first = self.earliest if self.earliest is not None else mark
            self.announced = first - first % self.window
        starts: list[int] = []
        start = self.announced
        while start + self.window + self.lateness <= mark and len(starts) < MAX_WINDOWS_PER_STEP:
            starts.append(start)
            start += self.window
        self.announced = start
        return starts

    # --- the checkpoint ------------------------------------------------------------------

    def to_cursor(self) -> dict[str, JSON]:
        return {
            "offsets": {str(p): o for p, o in self.offsets.items()},
            "event_time": {str(p): t for p, t in self.event_time.items()},
            "announced": self.announced,
            "earliest": self.earliest,
        }

    def load(self, cursor: JSON) -> None:
        if not isinstance(cursor, dict):
            return
        self.offsets = {int(p): int(o) for p, o in cursor.get("offsets", {}).items()}
        self.event_time = {int(p): int(t) for p, t in cursor.get("event_time", {}).items()}
        announced = cursor.get("announced")
        self.announced = int(announced) if announced is not None else None
        earliest = cursor.get("earliest")
        self.earliest = int(earliest) if earliest is not None else None
