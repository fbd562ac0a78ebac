"""S3 buckets (and S3-compatible stores): the s3 sensor, and the s3 marker publisher.

The sensor turns complete objects under ``prefix`` into observations whose key is the object
key (``orders/dt=2024-01-01/_SUCCESS``) and whose source position is ``(bucket, key, etag,
modified)`` (LastModified in whole seconds: an empty ``_SUCCESS`` rewritten later has the
same ETag, and is still a new event). The position is the same whether a listing or a
notification found the object, so an object seen both ways is one event.

- **Listing** (every ``poll_interval``): ListObjectsV2 of ``prefix``, or with
  ``partition_prefix`` + ``lookback`` of the time partitions that can still change only.
  The cursor records every emitted object (ETag, size, LastModified), written in the
  batch's transaction: objects arriving in any key order are found, an object is emitted
  again only when it changes, and records past the lookback horizon are forgotten.
- **Notifications** (``notifications: {sqs: URL}``): S3 event notifications long-polled
  from SQS. Each notified object is read back (HEAD) for its current state; a message is
  deleted only after every observation it caused is committed (or it caused none). A
  message that is not a notification is dead-lettered with its message id, then deleted.
  The listing goes on as a reconciliation (default every 5 minutes) and at start-up.
- **Readiness** (``ready``): see :mod:`eventflow_sensors.s3.state`.

Errors (access denied, a missing bucket or queue, an endpoint that is down) mark the
sensor unhealthy with a message saying what to do, and the calls are retried with backoff;
nothing is acknowledged meanwhile, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel

from eventflow.plugin import (
    JSON,
    Observation,
    PluginEnv,
    Sensor,
    SensorContext,
    backoff,
    sensor_gauges,
    utcnow,
)

from .client import Bucket, ObjectState, Queue, S3Problem
from .config import Notifications, S3PublisherConfig, S3Readiness, S3SensorConfig
from .listing import complete_objects
from .notify import NotificationError, decode
from .objects import object_sizes
from .publish import S3Publisher
from .state import Decision, Manifest, Mode, Tracker, dir_of, parse_manifest
from .topics import Relay, cursor_of, own_entries, text_of, topic_sensor
from .window import window_prefixes

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

__all__ = [
    "Notifications",
    "S3Publisher",
    "S3PublisherConfig",
    "S3Readiness",
    "S3Sensor",
    "S3SensorConfig",
]

BACKOFF_MAX = 30.0
"""Longest wait between retries of a failing S3 or SQS call (seconds)."""
BACKLOG_EVERY = 5.0
"""Shortest interval between two reads of the SQS backlog (the sensor's lag), seconds."""
T = TypeVar("T")


def _nothing() -> None:
    pass


class _Ack:
    """Deletes one SQS message once every observation it caused has committed."""

    __slots__ = ("_count", "_done")

    def __init__(self, done: Callable[[], None]) -> None:
        self._count = 1  # the handler's own hold, released when it has emitted all
        self._done: Callable[[], None] | None = done

    def hold(self) -> Callable[[], None]:
        self._count += 1
        return self.release

    def release(self) -> None:
        self._count -= 1
        if self._count == 0 and self._done is not None:
            done, self._done = self._done, None
            done()


class S3Sensor:
    """Watches a bucket prefix by listing and, optionally, SQS notifications."""

    config_model: ClassVar[type[BaseModel]] = S3SensorConfig

    def __init__(self, name: str, config: Any, env: PluginEnv) -> None:
        if not isinstance(config, S3SensorConfig):
            config = S3SensorConfig.model_validate(config)
        self.name = name
        self.config = config
        ready = config.ready
        mode: Mode = (
            "marker" if ready.marker else "manifest" if ready.manifest else
            "stable" if ready.stable else "none"
        )  # fmt: skip
        self.tracker = Tracker(mode, ready.completes)
        self._topic: Sensor | None = None
        if config.notifications is not None:
            self._topic = topic_sensor(name, config.notifications, env)
        self.requests = 0
        """S3 and SQS requests made (for benchmarks)."""

    # --- listing (eventflow backfill) -------------------------------------------------

    async def list_observations(self, prefix: str = "") -> list[Observation]:
        """Every complete object now under ``prefix`` (within the sensor's ``prefix``), as
        :meth:`run` would emit it from a listing (same position, so the same event id)."""
        found = await asyncio.to_thread(complete_objects, self.config, self.tracker.mode, prefix)
        return [
            dataclasses.replace(self._observation(k, s, "listing"), on_commit=None)
            for k, s in found
        ]

    # --- objects (the `exists` data-quality check) ---------------------------------------

    def object_url(self, key: str) -> str:
        """The location of ``key`` in the sensor's bucket: ``s3://BUCKET/KEY``."""
        return f"s3://{self.config.bucket}/{key.lstrip('/')}"

    async def object_sizes(self, url: str) -> list[tuple[str, int]]:
        """The objects matching ``url`` (a glob over keys) and their sizes, listed with this
        sensor's endpoint, region and credentials."""
        return await asyncio.to_thread(object_sizes, self.config, url)

    # --- running ---------------------------------------------------------------------

    async def run(self, ctx: SensorContext) -> None:
        """Watch until cancelled; problems with S3 are reported and retried, not raised."""
        try:
            await self.open(ctx)
            self._log.info(
                "s3_watch_started",
                mode=f"{cfg.source} notifications"
                if (cfg := self.config.notifications)
                else "listing",
                ready=self.tracker.mode,
                objects=len(self.tracker.seen),
                poll_interval=self.config.interval.total_seconds(),
            )
            await self._run_tasks()
        finally:
            self.close()

    async def open(self, ctx: SensorContext) -> None:
        """Make the clients and load the cursor (what ``run`` does before it loops; a
        benchmark calls it, then times :meth:`poll`)."""
        self._ctx = ctx
        self._log: FilteringBoundLogger = ctx.log.bind(
            sensor=self.name, bucket=self.config.bucket, prefix=self.config.prefix
        )
        self._loop = asyncio.get_running_loop()
        self._gauges = sensor_gauges(self.name)
        self._inflight: dict[tuple[str, ObjectState], list[Callable[[], None]]] = {}
        self._deletes: list[str] = []
        self._delete_wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(4, thread_name_prefix=f"eventflow-s3-{self.name}")
        self._sqs_pool = ThreadPoolExecutor(1, thread_name_prefix=f"eventflow-sqs-{self.name}")
        self._bucket = await self._call(Bucket, self.config)
        self._queue: Queue | None = None
        self._backlog_at = 0.0
        notifications = self.config.notifications
        if notifications is not None and notifications.sqs is not None:
            wait = notifications.wait_time.total_seconds()
            self._queue = await self._call(Queue, self.config, notifications.sqs, wait)
        self.tracker.load_cursor(own_entries(await ctx.load_cursor()))

    def close(self) -> None:
        """Stop the threads (without waiting for a long poll in flight: its messages are
        not deleted, so they come back)."""
        pool = getattr(self, "_pool", None)
        if pool is None:
            return
        pool.shutdown(wait=False, cancel_futures=True)
        self._sqs_pool.shutdown(wait=False, cancel_futures=True)
        self._log.info("s3_watch_stopped")

    async def _run_tasks(self) -> None:
        coros = {"poll": self._poll_loop()}
        if self._queue is not None:
            coros["sqs"] = self._sqs_loop(self._queue)
            coros["delete"] = self._delete_loop(self._queue)
        notifications = self.config.notifications
        if self._topic is not None and notifications is not None:
            relay = Relay(self._ctx, notifications.source, self._relayed)
            coros["topic"] = self._topic.run(relay)
        tasks = {asyncio.create_task(c, name=f"s3:{self.name}:{n}") for n, c in coros.items()}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._loop.run_in_executor(self._pool, fn, *args)

    def _unhealthy(self, problem: S3Problem, failures: int) -> float:
        """Report a problem; returns how long to wait before trying again."""
        self._ctx.set_health(False, str(problem))
        self._log.error("s3_unavailable", error=problem.message, hint=problem.hint,
                        code=problem.code, failures=failures)  # fmt: skip
        return backoff.delay(failures, first=1.0, cap=BACKOFF_MAX, jitter=False)

    # --- listing ---------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        interval = self.config.interval.total_seconds()
        failures = 0
        while True:
            try:
                await self.poll()
            except S3Problem as problem:
                failures += 1
                await asyncio.sleep(min(interval, self._unhealthy(problem, failures)))
                continue
            if failures:
                self._log.info("s3_recovered", failures=failures)
            failures = 0
            self._ctx.set_health(True)
            await asyncio.sleep(interval)

    async def poll(self) -> int:
        """List the prefixes that can still change and emit what is ready; returns the
        number of objects emitted. Raises S3Problem when a listing fails."""
        started = time.monotonic()
        requests = self._bucket.requests
        cfg = self.config
        window: list[str] | None = None
        if cfg.partition_prefix is not None and cfg.lookback is not None:
            window = window_prefixes(cfg.partition_prefix, cfg.lookback, utcnow())
        emitted = 0
        forgotten: list[str] = []
        for prefix in window or [cfg.prefix]:
            count, gone = await self._list_and_emit(prefix)
            emitted += count
            forgotten += gone
        if window is not None:
            forgotten += self.tracker.prune(cfg.prefix, window)
        if forgotten:
            await self._ctx.forget(forgotten)
        self._gauges.polled()
        self.requests = self._bucket.requests
        self._log.debug(
            "s3_listed",
            prefixes=len(window) if window else 1,
            emitted=emitted,
            forgotten=len(forgotten),
            requests=self._bucket.requests - requests,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return emitted

    async def _list_and_emit(self, prefix: str) -> tuple[int, list[str]]:
        listing = self.tracker.begin_listing()
        objects = await self._call(self._bucket.list_all, prefix)
        for key, state in self.tracker.needs_manifest(objects):
            await self._read_manifest(key, state)
        decision, gone = self.tracker.listed(prefix, objects, listing)
        await self._emit(decision.emit, "listing")
        return len(decision.emit), gone

    async def _read_manifest(self, key: str, state: ObjectState) -> None:
        body = await self._call(self._bucket.get, key)
        parts: frozenset[str] | None = None
        if body is not None:
            try:
                parts = parse_manifest(body, dir_of(key), self.config.bucket)
            except ValueError as exc:
                self._log.error("s3_manifest_invalid", key=key, error=str(exc))
                obs = self._observation(key, state, "listing")
                await self._ctx.emit(
                    Observation(sensor=self.name, position=obs.position, key=key,
                                payload=body[:200].decode(errors="replace"),
                                error=f"manifest s3://{self.config.bucket}/{key}: {exc}")
                )  # fmt: skip
        self.tracker.manifests[dir_of(key)] = Manifest(state, parts)

    # --- emitting --------------------------------------------------------------------

    async def _emit(self, items: list[tuple[str, ObjectState]], via: str) -> None:
        for key, state in items:
            self.tracker.emitted(key, state)
            self._inflight.setdefault((key, state), [])
            await self._ctx.emit(self._observation(key, state, via))

    def _committed(self, key: str, state: ObjectState) -> None:
        for callback in self._inflight.pop((key, state), ()):
            callback()

    def _observation(self, key: str, state: ObjectState, via: str) -> Observation:
        bucket = self.config.bucket
        modified = datetime.fromtimestamp(state.modified, UTC)
        attributes: dict[str, Any] = {
            "bucket": bucket,
            "key": key,
            "uri": f"s3://{bucket}/{key}",
            "etag": state.etag,
            "size": state.size,
            "last_modified": modified.isoformat(),
            "via": via,
        }
        if state.version:
            attributes["version_id"] = state.version
        return Observation(
            sensor=self.name,
            position={"bucket": bucket, "key": key, "etag": state.etag, "modified": state.modified},
            key=key,
            time=modified,
            attributes=attributes,
            cursor=(key, state.to_json()),
            on_commit=lambda: self._committed(key, state),
        )

    # --- notifications ---------------------------------------------------------------

    async def _sqs_loop(self, queue: Queue) -> None:
        cfg = self.config.notifications
        assert cfg is not None
        failures = 0
        while True:
            try:
                messages = await self._loop.run_in_executor(
                    self._sqs_pool, queue.receive, cfg.wait_time.total_seconds(), cfg.max_messages
                )
                for message in messages:
                    await self._handle(message)
                await self._report_backlog(queue, cfg.wait_time.total_seconds())
            except S3Problem as problem:
                failures += 1
                await asyncio.sleep(self._unhealthy(problem, failures))
                continue
            if failures:
                self._log.info("s3_recovered", failures=failures)
                self._ctx.set_health(True)
            failures = 0

    async def _report_backlog(self, queue: Queue, every: float) -> None:
        """The queue's backlog as the sensor's lag, at most once per ``every`` (>= 5 s)."""
        now = time.monotonic()
        if now - self._backlog_at < max(every, BACKLOG_EVERY):
            return
        self._backlog_at = now
        backlog = await self._loop.run_in_executor(self._sqs_pool, queue.backlog)
        self._gauges.lag(backlog)

    async def _handle(self, message: dict[str, Any]) -> None:
        """Emit what one SQS message announces; it is deleted when all that has committed.
        Raises S3Problem (the message is then left to come back) when S3 cannot be read."""
        receipt = message["ReceiptHandle"]
        ack = _Ack(lambda: self._delete(receipt))
        assert self._queue is not None
        where = {"queue": self._queue.url, "message_id": message["MessageId"]}
        await self._notified(message.get("Body", ""), ack, where, "SQS message")

    async def _relayed(self, message: Observation) -> None:
        """Emit what one Kafka record or MQTT message announces, then its checkpoint (the
        topic sensor's cursor entry and acknowledgement) once all that has committed.
        S3 problems are retried here: the topic sensor waits meanwhile, unacknowledged."""
        ack = _Ack(message.on_commit or _nothing)
        cursor = cursor_of(message)
        what = f"message at {message.position}"
        if message.error is not None:
            await self._ctx.emit(
                Observation(sensor=self.name, position=message.position, key=message.key,
                            payload=message.payload, attributes=message.attributes,
                            error=message.error, cursor=cursor, on_commit=ack.release)
            )  # fmt: skip
            return
        failures = 0
        while True:
            try:
                await self._notified(text_of(message.payload), ack, message.position, what,
                                     cursor)  # fmt: skip
                break
            except S3Problem as problem:
                failures += 1
                await asyncio.sleep(self._unhealthy(problem, failures))
        if failures:
            self._log.info("s3_recovered", failures=failures)
            self._ctx.set_health(True)

    async def _notified(
        self,
        body: str,
        ack: _Ack,
        where: Mapping[str, JSON],
        what: str,
        cursor: tuple[str, JSON] | None = None,
    ) -> None:
        """Emit the objects a notification announces; ``ack`` is released (with ``cursor``
        written) once they are committed. A message that is not a notification is
        dead-lettered at ``where``."""
        try:
            notices = decode(body)
        except NotificationError as exc:
            await self._ctx.emit(
                Observation(sensor=self.name, position=where, payload=body[:500],
                            error=f"{what} is not a bucket notification: {exc}",
                            cursor=cursor, on_commit=ack.release)
            )  # fmt: skip
            return
        for notice in notices:
            if notice.bucket != self.config.bucket or not notice.key.startswith(self.config.prefix):
                continue
            state = await self._call(self._bucket.head, notice.key)
            if state is None:  # deleted since (or a delete notice): the listing forgets it
                continue
            decision = self.tracker.notified(notice.key, state)
            waiters = self._inflight.get((notice.key, state))
            if waiters is not None:  # already on its way: acknowledge after that commit
                waiters.append(ack.hold())
            await self._apply(decision, ack)
        if cursor is None:
            ack.release()
        else:  # the checkpoint commits with or after what the message caused
            await self._ctx.emit(
                Observation(sensor=self.name, position=where, cursor=cursor,
                            on_commit=ack.release)
            )  # fmt: skip

    async def _apply(self, decision: Decision, ack: _Ack) -> None:
        for key, state in decision.emit:
            self._inflight.setdefault((key, state), []).append(ack.hold())
        await self._emit(decision.emit, "notification")
        if decision.relist is not None:
            listing = self.tracker.begin_listing()
            objects = await self._call(self._bucket.list_all, decision.relist)
            for key, state in self.tracker.needs_manifest(objects):
                await self._read_manifest(key, state)
            relisted, gone = self.tracker.listed(decision.relist, objects, listing)
            if gone:
                await self._ctx.forget(gone)
            await self._apply(relisted, ack)

    def _delete(self, receipt: str) -> None:
        self._deletes.append(receipt)
        self._delete_wake.set()

    async def _delete_loop(self, queue: Queue) -> None:
        failures = 0
        while True:
            await self._delete_wake.wait()
            self._delete_wake.clear()
            receipts, self._deletes = self._deletes, []
            try:
                await self._call(queue.delete, receipts)
                failures = 0
            except S3Problem as problem:  # left in the queue: received again, deduplicated
                failures += 1
                self._log.warning("s3_sqs_delete_failed", error=str(problem), count=len(receipts))
                await asyncio.sleep(backoff.delay(failures + 1, first=1.0, cap=BACKOFF_MAX))
