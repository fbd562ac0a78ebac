"""Kafka: the sensor, the completion-event publisher and the ``publish`` task's sender.

The sensor reads topics with aiokafka and acknowledges after commit: a record's offset is
part of eventflow's checkpoint (the sensor cursor, written in the engine's transaction with
the record's effects), and only after that transaction is the same offset committed to the
Kafka consumer group, so Kafka tooling shows the lag. On assignment each partition is
``seek``-ed to its checkpoint; a partition without one starts at the group's committed
offset, else at ``start``.

- **message mode**: every record is an observation (``payload`` decoded as JSON, text or
  bytes; ``key``, ``headers``, ``timestamp``, ``topic``, ``partition`` and ``offset`` for
  JMESPath). The cursor entry ``TOPIC/PARTITION`` is the next offset, written once per
  partition per fetched batch. Workers of a pipeline share the topic through the consumer
  group; a revoke first waits until every record of the revoked partitions handed to the
  engine is committed (their checkpoint, then the group offset) and hands nothing of them
  to the engine afterwards, so the next owner starts exactly where this one stopped.
- **watermark mode**: records only advance the topic's event-time watermark (see
  :mod:`eventflow_sensors.kafka.watermark`); each complete window is one observation (key = the
  topic, payload ``{topic, window_start, window_end, watermark}``) whose position is the
  window, so it fires once however often it is announced. The cursor entry ``TOPIC`` holds
  the offsets, per-partition event times and the last announced window, in one value. The
  sensor reads every partition of its topics itself (no group membership: the watermark
  needs them all).

Backpressure: at most ``max_uncommitted`` records are handed to the engine and not yet
committed; beyond that the partitions are paused (``getmany`` keeps the group session
alive) and resumed at half. Broker outages: aiokafka reconnects by itself, which hides the
outage from ``getmany``, so a probe asks for metadata every ``PROBE_EVERY`` seconds and
marks the sensor unhealthy (``kafka_broker_unreachable``) until a broker answers again
(``kafka_broker_reachable``); a client that cannot start or fails is rebuilt with capped
exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from eventflow.plugin import (
    Observation,
    PluginEnv,
    ScaleOut,
    SensorContext,
    SensorError,
    backoff,
    sensor_gauges,
)

from .checkpoint import Checkpoint, Reason, cursor_value, digest
from .checkpoint import load as load_checkpoint
from .config import (
    KafkaConnection,
    KafkaPublisherConfig,
    KafkaSensorConfig,
    Sasl,
    Tls,
    Watermark,
)
from .publish import KafkaPublisher, KafkaSender
from .records import DECODERS, Record, event_time_reader, iso, observe, position
from .replay import replay_records
from .watermark import TopicWatermark

try:
    from aiokafka import (  # type: ignore[import-untyped]
        AIOKafkaConsumer,
        ConsumerRebalanceListener,
        TopicPartition,
    )
    from aiokafka.errors import (  # type: ignore[import-untyped]
        KafkaConnectionError,
        KafkaError,
        RequestTimedOutError,
    )
    from aiokafka.structs import OffsetAndMetadata  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(f"{exc}; install eventflow[kafka]") from exc

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

__all__ = [
    "KafkaConnection",
    "KafkaPublisher",
    "KafkaPublisherConfig",
    "KafkaSender",
    "KafkaSensor",
    "KafkaSensorConfig",
    "Sasl",
    "Tls",
    "Watermark",
]

BACKOFF_MAX = 30.0
"""Longest wait before rebuilding a failed client (seconds)."""
REVOKE_TIMEOUT = 30.0
"""How long a revoke waits for the engine to commit what it holds of the partitions."""
COMMIT_EVERY = 0.2
"""Offsets acknowledged by the engine are committed to the group at most this often."""
POLL_MS = 200
PROBE_EVERY = 2.0
"""How often a consuming sensor asks the broker for metadata (seconds): aiokafka reconnects
by itself and hides an outage from ``getmany``; the probe makes it visible."""
PROBE_TIMEOUT = 5.0
"""A probe unanswered for this long (a hung broker) counts as unreachable (seconds)."""


class KafkaSensor:
    """Consumes Kafka topics into observations (see the module doc)."""

    config_model: ClassVar[type[BaseModel]] = KafkaSensorConfig
    scale_out: ClassVar[ScaleOut] = "shared"
    """Every worker runs it: the consumer group spreads the partitions. (Watermark mode and
    ``consumer_group: false`` read every partition on each worker; the store's event ids
    make their observations count once.)"""

    def __init__(self, name: str, config: Any, env: PluginEnv) -> None:
        if not isinstance(config, KafkaSensorConfig):
            config = KafkaSensorConfig.model_validate(config)
        self.name = name
        self.config = config
        # Per environment: staging must never join production's group (and take its
        # partitions) because both run the same file against one Kafka cluster.
        self.group_id = config.group_id or env.scoped(f"eventflow.{env.pipeline}.{name}")
        self._decode = DECODERS[config.format]
        self._event_time = event_time_reader(config.watermark.time)
        self._owned: set[TopicPartition] = set()
        self._pending: dict[TopicPartition, int] = defaultdict(int)
        """Records handed to the engine and not yet committed, per partition."""
        self._uncommitted = 0
        self._to_commit: dict[TopicPartition, int] = {}
        """Checkpointed offsets not yet committed to the group."""
        self._last_acked: dict[TopicPartition, int] = {}
        self._acked = asyncio.Event()
        self._emitting = asyncio.Lock()
        self._paused = False
        self._watermarks: dict[str, TopicWatermark] = {}
        self._gauges = sensor_gauges(name)
        self._epoch: dict[TopicPartition, int] = {}
        """The log epoch of each partition (see :mod:`.checkpoint`)."""
        self._next: dict[TopicPartition, int] = {}
        """The offset the next record of a partition should have (absent: any)."""
        self._verify: dict[TopicPartition, Checkpoint] = {}
        self._wait: tuple[str, float] | None = None
        """What the sensor waits for (a group join) and since when (monotonic)."""
        self._lag_at = 0.0
        self._digests: dict[TopicPartition, str] = {}
        """The digest of the last record handed on per partition (the checkpoint's ``last``)."""
        """Partitions seeked to their checkpoint minus one: that record is checked, not read."""

    # --- eventflow replay --from-source ---------------------------------------------------

    def replay_observations(self, since: datetime | None) -> AsyncIterator[Observation]:
        """The topics' records from ``since`` (the earliest retained when None) to their end
        now, as :meth:`run` observes them (see :mod:`.replay`)."""
        return replay_records(self.name, self.config, since)

    # --- running -------------------------------------------------------------------------

    async def run(self, ctx: SensorContext) -> None:
        """Consume until cancelled; rebuilds the client with backoff when it fails."""
        self._ctx = ctx
        self._log: FilteringBoundLogger = ctx.log.bind(sensor=self.name)
        failures = 0
        rng = random.Random()
        while True:
            started = time.monotonic()
            try:
                await self._consume()
            except KafkaError as exc:
                if time.monotonic() - started > 60:
                    failures = 0
                failures += 1
                delay = backoff.delay(failures, first=0.5, cap=BACKOFF_MAX, rng=rng)
                ctx.set_health(False, f"{type(exc).__name__}: {exc}")
                self._log.warning(
                    "kafka_reconnect",
                    error=str(exc),
                    error_type=type(exc).__name__,
                    failures=failures,
                    retry_in=round(delay, 2),
                )
                await asyncio.sleep(delay)

    def _consumer(self) -> AIOKafkaConsumer:
        cfg = self.config
        return AIOKafkaConsumer(
            **cfg.client_options(),
            group_id=self.group_id,
            group_instance_id=cfg.group_instance_id,
            enable_auto_commit=False,
            # Every partition is seeked explicitly (`_seek`); an out-of-range fetch then
            # lands at the log's beginning, and `_checked` sees the offsets go backwards.
            auto_offset_reset="earliest",
            max_poll_records=cfg.max_records,
            session_timeout_ms=int(cfg.session_timeout.total_seconds() * 1000),
            heartbeat_interval_ms=int(cfg.heartbeat_interval.total_seconds() * 1000),
            fetch_max_wait_ms=int(cfg.fetch_max_wait.total_seconds() * 1000),
        )

    async def _consume(self) -> None:
        consumer = self._consumer()
        self._consumer_ = consumer
        helpers: list[asyncio.Task[None]] = []
        try:
            await consumer.start()  # in the try: a failed or cancelled start is stopped too
            self._owned.clear()
            self._verify.clear()
            self._next.clear()
            self._paused = False
            if self.config.mode == "watermark" or not self.config.consumer_group:
                await self._assign_all(consumer)
            elif self.config.pattern:
                consumer.subscribe(pattern=self.config.pattern, listener=_Listener(self))
            else:
                consumer.subscribe(list(self.config.topic_names), listener=_Listener(self))
            if self.config.consumer_group and self.config.mode != "watermark":
                self._waiting("kafka group join")
            self._ctx.set_health(True)
            self._log.info(
                "kafka_consume_started",
                topics=list(self.config.topic_names) or None,
                pattern=self.config.pattern,
                group=self.group_id,
                mode=self.config.mode,
            )
            helpers = [
                asyncio.create_task(self._commit_loop(consumer), name="kafka-commit"),
                asyncio.create_task(self._probe_loop(consumer), name="kafka-probe"),
            ]
            while True:
                batch = await consumer.getmany(
                    timeout_ms=POLL_MS, max_records=self.config.max_records
                )
                for helper in helpers:
                    if helper.done():
                        helper.result()
                async with self._emitting:
                    if self.config.mode == "watermark":
                        await self._emit_watermarks(batch)
                    else:
                        await self._emit_messages(batch)
                self._report_lag(consumer)
                await self._backpressure(consumer)
        finally:
            for helper in helpers:
                helper.cancel()
                with contextlib.suppress(BaseException):
                    await helper
            with contextlib.suppress(Exception):
                await self._commit(consumer)
            await consumer.stop()

    # --- message mode --------------------------------------------------------------------

    async def _emit_messages(self, batch: dict[TopicPartition, list[Any]]) -> None:
        emit, decode, fmt, name = self._ctx.emit, self._decode, self.config.format, self.name
        for tp, records in batch.items():
            if not records or tp not in self._owned:  # revoked while it was being fetched
                continue
            if tp in self._verify or records[0].offset != self._next.get(tp, records[0].offset):
                records = await self._checked(tp, records)
                if not records:
                    continue
            epoch = self._epoch.get(tp, 0)
            self._pending[tp] += len(records)
            self._uncommitted += len(records)
            for record in records[:-1]:
                await emit(observe(name, record, decode, fmt, None, None, epoch))
            last = records[-1]
            nxt = last.offset + 1
            self._next[tp] = nxt
            self._digests[tp] = last_digest = digest(last)
            ack = self._ack_callback(tp, nxt, len(records))
            cursor = (_cursor_key(tp), cursor_value(nxt, epoch, last_digest))
            await emit(observe(name, last, decode, fmt, cursor, ack, epoch))

    def _ack_callback(self, tp: TopicPartition, nxt: int, count: int) -> Callable[[], None]:
        def ack() -> None:
            self._pending[tp] -= count
            self._uncommitted -= count
            self._last_acked[tp] = nxt
            if tp in self._owned:
                self._to_commit[tp] = nxt
            self._acked.set()

        return ack

    # --- watermark mode ------------------------------------------------------------------

    async def _assign_all(self, consumer: AIOKafkaConsumer) -> None:
        """Read every partition of the topics, without group membership."""
        await consumer.topics()  # fetches the metadata of every topic
        tps: list[TopicPartition] = []
        for topic in self.config.topic_names:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                raise SensorError(
                    f"kafka sensor {self.name!r}: topic {topic!r} does not exist",
                    hint="create it, or check the name and the bootstrap servers",
                )
            tps += [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        self._owned = set(tps)
        cursor = await self._ctx.load_cursor()
        if self.config.mode == "message":
            await self._seek(
                consumer, tps, {tp: load_checkpoint(cursor.get(_cursor_key(tp))) for tp in tps}
            )
            return
        wm, now = self.config.watermark, time.monotonic()
        for topic in self.config.topic_names:
            state = TopicWatermark(
                window=int(wm.window.total_seconds() * 1000),
                lateness=int(wm.allowed_lateness.total_seconds() * 1000),
                idle=wm.idle_timeout.total_seconds() if wm.idle_timeout is not None else None,
            )
            state.assign({tp.partition for tp in tps if tp.topic == topic}, now)
            state.load(cursor.get(topic))
            self._watermarks[topic] = state
        offsets = {tp: self._watermarks[tp.topic].offsets.get(tp.partition) for tp in tps}
        await self._seek(consumer, tps, {tp: _point(o) for tp, o in offsets.items()})

    async def _emit_watermarks(self, batch: dict[TopicPartition, list[Any]]) -> None:
        now = time.monotonic()
        read_time = self._event_time
        changed: dict[str, int] = {}
        for tp, records in batch.items():
            if not records:
                continue
            if records[0].offset != self._next.get(tp, records[0].offset):
                records = await self._checked(tp, records)
                if not records:
                    continue
            self._next[tp] = records[-1].offset + 1
            state = self._watermarks[tp.topic]
            for record in records:
                event_ms = read_time(record)
                if event_ms is None:
                    await self._ctx.emit(self._untimed(record))
                state.observe(tp.partition, event_ms, record.offset + 1, now)
            changed[tp.topic] = changed.get(tp.topic, 0) + len(records)
        for topic, state in self._watermarks.items():
            starts = state.due(now)
            if not starts and topic not in changed:
                continue
            for start in starts:
                await self._ctx.emit(self._window(topic, state, start))
            count = changed.get(topic, 0)
            self._uncommitted += count
            cursor = state.to_cursor()
            offsets = {TopicPartition(topic, p): o for p, o in state.offsets.items()}
            await self._ctx.emit(
                Observation(
                    self.name,
                    {"topic": topic, "checkpoint": cursor["offsets"]},
                    cursor=(topic, cursor),
                    on_commit=self._checkpoint_callback(offsets, count),
                )
            )
            self._log.debug("kafka_watermark", topic=topic, windows=len(starts), records=count)

    def _checkpoint_callback(
        self, offsets: dict[TopicPartition, int], count: int
    ) -> Callable[[], None]:
        def ack() -> None:
            self._uncommitted -= count
            self._to_commit.update(offsets)
            self._acked.set()

        return ack

    def _window(self, topic: str, state: TopicWatermark, start: int) -> Observation:
        end = start + state.window
        mark = state.watermark(time.monotonic())
        return Observation(
            self.name,
            {"topic": topic, "window_start": iso(start)},
            key=topic,
            time=datetime.fromtimestamp(end / 1000, UTC),
            payload={
                "topic": topic,
                "window_start": iso(start),
                "window_end": iso(end),
                "watermark": iso(mark) if mark is not None else None,
            },
            attributes={"topic": topic},
        )

    def _untimed(self, record: Record) -> Observation:
        where = f"{record.topic}/{record.partition}@{record.offset}"
        value = record.value or b""
        return Observation(
            self.name,
            position(record),
            payload=value[:1024].decode("utf-8", "backslashreplace"),
            error=f"no event time ({self.config.watermark.time}) in the record at {where}",
        )

    # --- assignment, seeking, revoking ---------------------------------------------------

    async def _assigned(self, consumer: AIOKafkaConsumer, tps: set[TopicPartition]) -> None:
        cursor = await self._ctx.load_cursor()
        stored = {tp: load_checkpoint(cursor.get(_cursor_key(tp))) for tp in tps}
        self._owned |= tps
        await self._seek(consumer, sorted(tps), stored)
        self._log.info("kafka_partitions_assigned", partitions=[_cursor_key(tp) for tp in tps])

    def _waiting(self, what: str) -> None:
        """Say that the sensor waits (a group join or rejoin) and since when."""
        self._wait = (what, time.monotonic())
        self._log.info(
            "sensor_waiting",
            waiting_for=what,
            group=self.group_id,
            session_timeout=self.config.session_timeout.total_seconds(),
            hint="a rebalance waits for every member; a member that died is dropped after"
            " the session timeout (group_instance_id: a restarted member rejoins at once)",
        )

    def _waited(self) -> None:
        """The wait announced by :meth:`_waiting` is over: say how long it took."""
        wait, self._wait = self._wait, None
        if wait is not None:
            seconds = round(time.monotonic() - wait[1], 3)
            self._log.info(
                "sensor_waited", waiting_for=wait[0], group=self.group_id, seconds=seconds
            )

    def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        """End offset minus position of each owned partition (at most once a second)."""
        now = time.monotonic()
        if now - self._lag_at < 1.0:
            return
        self._lag_at = now
        parts: dict[str, float] = {}
        for tp in self._owned:
            end = consumer.highwater(tp)
            position = self._next.get(tp)
            if end is not None and position is not None:
                parts[_cursor_key(tp)] = max(0, end - position)
        self._gauges.polled()
        self._gauges.lag(sum(parts.values()), parts)

    async def _seek(
        self,
        consumer: AIOKafkaConsumer,
        tps: list[TopicPartition],
        stored: dict[TopicPartition, Checkpoint | None],
    ) -> None:
        """Seek each partition to its checkpoint, else the group's offset, else ``start``."""
        fresh = []
        for tp in tps:
            self._verify.pop(tp, None)
            self._next.pop(tp, None)
            point = stored.get(tp)
            if point is None:
                fresh.append(tp)
                continue
            self._epoch[tp] = point.epoch
            self._start_at(consumer, tp, point)
            # The group may lag the checkpoint (a crash before the group commit).
            self._to_commit[tp] = point.offset
            self._acked.set()
        if not fresh:
            return
        committed = {tp: await consumer.committed(tp) for tp in fresh}
        rest = []
        for tp in fresh:
            offset = committed[tp]
            if offset is not None and offset >= 0:
                self._start_at(consumer, tp, Checkpoint(offset))
            else:
                rest.append(tp)
        if not rest:
            return
        start = self.config.start
        if start == "earliest":
            await consumer.seek_to_beginning(*rest)
        elif start == "latest":
            ends = await consumer.end_offsets(rest)
            for tp in rest:
                consumer.seek(tp, ends[tp])
            # Remember where "latest" was, so a restart before any record does not skip.
            await consumer.commit({tp: OffsetAndMetadata(ends[tp], "") for tp in rest})
        else:
            assert isinstance(start, datetime)
            millis = int(start.timestamp() * 1000)
            found = await consumer.offsets_for_times({tp: millis for tp in rest})
            ends = await consumer.end_offsets(rest)
            for tp in rest:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit is not None else ends[tp])

    def _start_at(self, consumer: AIOKafkaConsumer, tp: TopicPartition, point: Checkpoint) -> None:
        """Seek to ``point``; in message mode to the record before it, which `_checked`
        compares with the checkpoint's digest instead of handing it on."""
        if self.config.mode == "message" and point.offset > 0:
            consumer.seek(tp, point.offset - 1)
            self._verify[tp] = point
        else:
            consumer.seek(tp, point.offset)
            self._next[tp] = point.offset

    async def _checked(self, tp: TopicPartition, records: list[Any]) -> list[Any]:
        """The records of ``tp`` to hand on, once it is clear that the log still holds the
        checkpoint; else the reset policy is applied (see `_reset`).

        Records before the checkpoint can come again for harmless reasons (a fetch from before
        a seek or a rebalance), so going back is never taken as a reset by itself: the record
        before the checkpoint is read again and compared with the one consumed there, and
        only a different record (``recreated``) or a log that no longer reaches the
        checkpoint (``log_shorter``) is a reset."""
        first = records[0]
        point = self._verify.pop(tp, None)
        if point is None:
            checkpoint = self._next[tp]
            if first.offset < checkpoint:
                return self._verify_again(tp, checkpoint)
        else:
            checkpoint, before = point.offset, point.offset - 1
            at = next((i for i, r in enumerate(records) if r.offset == before), None)
            if at is not None:
                if point.last is not None and digest(records[at]) != point.last:
                    return await self._reset(tp, checkpoint, "recreated", records)
                return records[at + 1 :]  # up to the last record consumed: read already
            if first.offset < before:
                end = (await self._consumer_.end_offsets([tp]))[tp]
                if end >= checkpoint:  # the log still reaches it: an early fetch, skip it
                    self._verify[tp] = point
                    return []
                return await self._reset(tp, checkpoint, "log_shorter", records)
        # Further on than expected: retention passed the checkpoint, or (compaction,
        # transaction markers) offsets the log simply does not have.
        beginning = (await self._consumer_.beginning_offsets([tp]))[tp]
        if beginning > checkpoint:
            return await self._reset(tp, checkpoint, "retention", records, beginning)
        return records

    def _verify_again(self, tp: TopicPartition, expected: int) -> list[Any]:
        """Seek back to the record before ``expected`` and let `_checked` compare it with
        the digest of the record consumed there; nothing is handed on meanwhile."""
        point = Checkpoint(expected, self._epoch.get(tp, 0), self._digests.get(tp))
        self._log.debug("kafka_verify_again", partition=_cursor_key(tp), checkpoint=expected)
        self._start_at(self._consumer_, tp, point)
        return []

    async def _reset(
        self,
        tp: TopicPartition,
        checkpoint: int,
        reason: Reason,
        records: list[Any],
        beginning: int | None = None,
    ) -> list[Any]:
        """Apply ``on_reset``: log and count the reset, then read the log from its beginning
        (``reprocess``), from its end (``skip``), or fail. A new log (not ``retention``)
        gets a new epoch, so its records' event ids differ from the old log's."""
        consumer, policy = self._consumer_, self.config.on_reset
        if beginning is None:
            beginning = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        lost = beginning - checkpoint if reason == "retention" else 0
        skipped = max(0, end - beginning) if policy == "skip" else 0
        epoch = self._epoch.get(tp, 0)
        if reason != "retention" and policy != "fail":
            epoch = self._epoch[tp] = epoch + 1
        self._gauges.reset(reason, policy, skipped + lost)
        self._log.warning(
            "kafka_offset_reset",
            topic=tp.topic,
            partition=tp.partition,
            checkpoint=checkpoint,
            log_start=beginning,
            log_end=end,
            reason=reason,
            policy=policy,
            skipped=skipped,
            lost=lost,
            epoch=epoch,
        )
        if policy == "fail":
            raise SensorError(
                f"kafka sensor {self.name!r}: partition {_cursor_key(tp)} no longer holds"
                f" checkpoint {checkpoint}: {_WHY[reason]}; the log now runs from offset"
                f" {beginning} to end offset {end}",
                hint=f"set `on_reset: reprocess` (read the partition from its beginning) or"
                f" `on_reset: skip` (from its end) on sensor {self.name!r}, then restart",
            )
        if policy == "skip":
            consumer.seek(tp, end)
            self._next[tp] = end
            return []
        if reason == "retention":  # the client is at the beginning already
            return records
        await consumer.seek_to_beginning(tp)
        self._next.pop(tp, None)
        return []

    async def _revoked(self, consumer: AIOKafkaConsumer, tps: set[TopicPartition]) -> None:
        """Let the engine commit what it holds of ``tps``, commit their offsets, let go."""
        self._log.info("kafka_partitions_revoking", partitions=[_cursor_key(tp) for tp in tps])
        self._waiting("kafka group rejoin")
        async with self._emitting:  # no batch is half handed over
            self._owned -= tps
            deadline = time.monotonic() + REVOKE_TIMEOUT
            while any(self._pending[tp] > 0 for tp in tps):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._log.warning(
                        "kafka_revoke_timeout",
                        partitions=[_cursor_key(tp) for tp in tps if self._pending[tp]],
                    )
                    break
                self._acked.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._acked.wait(), remaining)
            done = {tp: self._last_acked.pop(tp) for tp in tps if tp in self._last_acked}
            for tp in tps:
                self._to_commit.pop(tp, None)
                self._verify.pop(tp, None)
                self._next.pop(tp, None)
            if done:
                with contextlib.suppress(KafkaError):
                    await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in done.items()})
        self._log.info("kafka_partitions_revoked", partitions=[_cursor_key(tp) for tp in tps])

    # --- committing to the group, backpressure -------------------------------------------

    async def _commit_loop(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            await self._acked.wait()
            await asyncio.sleep(COMMIT_EVERY)
            await self._commit(consumer)

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        if not self._to_commit:
            self._acked.clear()
            return
        offsets, self._to_commit = self._to_commit, {}
        self._acked.clear()
        offsets = {tp: o for tp, o in offsets.items() if tp in self._owned}
        if not offsets:
            return
        try:
            await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
        except KafkaError as exc:  # eventflow's checkpoint has them; the group catches up
            for tp, o in offsets.items():
                self._to_commit.setdefault(tp, o)
            self._log.info("kafka_group_commit_failed", error=str(exc))
            if isinstance(exc, KafkaConnectionError | RequestTimedOutError):
                self._ctx.set_health(False, f"broker unreachable: {type(exc).__name__}")
                self._acked.set()  # try again after COMMIT_EVERY
        else:
            self._ctx.set_health(True)

    async def _probe_loop(self, consumer: AIOKafkaConsumer) -> None:
        """Ask for the cluster's metadata every PROBE_EVERY: while no broker answers, the
        sensor is unhealthy and says so once; when one answers again, it is healthy and
        says how long the outage lasted. (aiokafka reconnects meanwhile, with its own
        backoff; nothing is acknowledged while the broker is away, so nothing is lost.)"""
        down_since: float | None = None
        while True:
            await asyncio.sleep(PROBE_EVERY)
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await consumer.topics()
            except (KafkaError, TimeoutError) as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    reason = str(exc) or f"no answer in {PROBE_TIMEOUT:g}s"
                    self._ctx.set_health(False, f"broker unreachable: {reason}")
                    self._log.warning("kafka_broker_unreachable", error=reason,
                                      error_type=type(exc).__name__)  # fmt: skip
                continue
            if down_since is not None:
                self._ctx.set_health(True)
                self._log.info(
                    "kafka_broker_reachable", down_for=round(time.monotonic() - down_since, 1)
                )
                down_since = None

    async def _backpressure(self, consumer: AIOKafkaConsumer) -> None:
        limit = self.config.max_uncommitted
        if not self._paused and self._uncommitted > limit:
            consumer.pause(*consumer.assignment())
            self._paused = True
            self._log.debug("kafka_paused", uncommitted=self._uncommitted)
        elif self._paused and self._uncommitted <= limit // 2:
            consumer.resume(*consumer.assignment())
            self._paused = False
            self._log.debug("kafka_resumed", uncommitted=self._uncommitted)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sensor: KafkaSensor) -> None:
        self.sensor = sensor

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            await self.sensor._revoked(self.sensor._consumer_, set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if assigned:
            await self.sensor._assigned(self.sensor._consumer_, set(assigned))
        self.sensor._waited()  # joined (maybe with no partition: more members than them)


def _cursor_key(tp: TopicPartition) -> str:
    return f"{tp.topic}/{tp.partition}"


def _point(offset: int | None) -> Checkpoint | None:
    return None if offset is None else Checkpoint(offset)


_WHY: dict[Reason, str] = {
    "log_shorter": "the log ends before it (topic recreated, or the broker lost its log)",
    "recreated": "the record before it is not the one consumed (topic recreated, or the"
    " broker lost the end of its log and new records took those offsets)",
    "retention": "records after it expired before they were read (retention)",
}
