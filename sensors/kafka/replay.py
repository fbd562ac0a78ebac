"""``eventflow replay --from-source`` for a Kafka sensor: the topics again from a time.

A consumer without a group is assigned every partition of the sensor's topics (or of the
topics its ``pattern`` matches), seeks each to the first offset whose timestamp is at or
after ``since`` (``offsets_for_times``; a partition with nothing that new is skipped) or,
with no ``since``, to the earliest retained offset, and reads up to the end offsets taken
when it started, then stops. The records become the observations the running sensor makes
of them (same topic, partition and offset, so the same event ids), which the replay feeds
through the rules as replayed events. Nothing is committed to the sensor's consumer group
and the sensor's checkpoint is not touched: the live pipeline goes on where it was.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventflow.plugin import Observation, SensorError

from .records import DECODERS, observe

if TYPE_CHECKING:
    from .config import KafkaSensorConfig

POLL_MS = 500
IDLE_POLLS = 20
"""Empty polls in a row after which a partition short of its end offset is given up (the
records between were deleted or compacted away)."""


async def replay_records(
    name: str, config: KafkaSensorConfig, since: datetime | None
) -> AsyncIterator[Observation]:
    """The observations of every record from ``since`` to the end offsets at the start."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]

    if config.mode == "watermark":
        raise SensorError(
            f"kafka sensor {name!r} is in watermark mode: its windows cannot be re-read",
            hint="replay it from the event log (leave out --from-source)",
        )
    consumer = AIOKafkaConsumer(
        **config.client_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=config.max_records,
    )
    await consumer.start()
    try:
        tps = await _partitions(name, config, consumer, TopicPartition)
        if not tps:
            return
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        if since is not None:
            millis = int(since.timestamp() * 1000)
            found = await consumer.offsets_for_times({tp: millis for tp in tps})
            starts = {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in tps}
        todo = {tp for tp in tps if starts[tp] < ends[tp]}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        decode, fmt = DECODERS[config.format], config.format
        idle = 0
        while todo:
            batch: dict[Any, list[Any]] = await consumer.getmany(
                *todo, timeout_ms=POLL_MS, max_records=config.max_records
            )
            idle = 0 if any(batch.values()) else idle + 1
            if idle >= IDLE_POLLS:
                return
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    yield observe(name, record, decode, fmt, None, None)
                if records and records[-1].offset + 1 >= ends[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()


async def _partitions(
    name: str, config: KafkaSensorConfig, consumer: Any, tp_type: Any
) -> list[Any]:
    every = await consumer.topics()  # fetches the metadata of every topic
    if config.pattern:
        topics = sorted(t for t in every if re.match(config.pattern, t) and not t.startswith("__"))
    else:
        topics = list(config.topic_names)
    found = []
    for topic in topics:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise SensorError(
                f"kafka sensor {name!r}: topic {topic!r} does not exist",
                hint="create it, or check the name and the bootstrap servers",
            )
        found += [tp_type(topic, p) for p in sorted(partitions)]
    return found
