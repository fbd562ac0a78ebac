"""The outbox drainer: delivers recorded completion events to one publisher, at least once.

Events are written to the outbox in the same transaction as the state change they describe;
the drainer publishes them in order and deletes them only after the publisher confirmed. A
crash in between publishes them again with the same CloudEvents ``id``. Events a receiver
refuses for good (:class:`~eventflow.errors.PublishRejected`) become dead letters of the
publisher (``publisher:NAME``) and leave the outbox, so one bad event never blocks the rest.
"""

from __future__ import annotations

import asyncio

from eventflow import backoff, metrics
from eventflow.aio import wait_event
from eventflow.crashpoints import crash_point
from eventflow.errors import EventflowError, PublishRejected
from eventflow.events import digest, utcnow
from eventflow.log import get_logger
from eventflow.records import Changes, DeadLetter, OutboxItem
from eventflow.types import Publisher, Store


class OutboxDrainer:
    """Moves one publisher's outbox rows to it, with backoff while it is unreachable."""

    batch_size = 500
    max_backoff = 30.0

    def __init__(self, name: str, publisher: Publisher, store: Store, poll_interval: float) -> None:
        self.name = name
        self.publisher = publisher
        self.store = store
        self.poll_interval = poll_interval
        self.log = get_logger(component="outbox", publisher=name)
        self._wake = asyncio.Event()
        self.published = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Drain until cancelled."""
        failures = 0
        while True:
            self._wake.clear()
            try:
                sent = await self.drain_once()
                failures = 0
            except EventflowError as exc:
                failures += 1
                metrics.publish_failed(self.name)
                delay = backoff.delay(failures, first=1.0, cap=self.max_backoff, jitter=False)
                self.log.warning(
                    "publish_failed", error=str(exc), retry_in=delay, retriable=exc.retriable
                )
                await asyncio.sleep(delay)
                continue
            if sent:
                continue
            await wait_event(self._wake, self.poll_interval)

    async def drain_once(self) -> int:
        """Publish one batch; returns how many events were delivered."""
        items = await self.store.fetch_outbox(self.name, self.batch_size)
        if not items:
            return 0
        crash_point("outbox.before_publish")
        rejected: dict[str, str] = {}
        try:
            await self.publisher.publish([item.event for item in items])
        except PublishRejected as exc:
            rejected = exc.rejected
        crash_point("outbox.after_publish")
        if rejected:
            await self._deadletter([i for i in items if i.event.id in rejected], rejected)
        await self.store.delete_outbox([item.id for item in items])
        delivered = len(items) - len(rejected)
        self.published += delivered
        metrics.published(self.name, delivered)
        self.log.debug("events_published", count=delivered)
        return len(items)

    async def _deadletter(self, items: list[OutboxItem], rejected: dict[str, str]) -> None:
        """Keep the events the receiver refused as dead letters (written again after a crash
        before the outbox rows went: the store keeps the first)."""
        now = utcnow()
        letters = [
            DeadLetter(
                event_id=digest("undeliverable", self.name, item.event.id),
                sensor=f"publisher:{self.name}",
                position={
                    "publisher": self.name,
                    "event_id": item.event.id,
                    "type": item.event.type,
                },
                error=rejected[item.event.id],
                excerpt=item.event.to_json()[:1024],
                time=now,
            )
            for item in items
        ]
        async with self.store.transaction() as tx:
            await tx.apply(Changes(deadletters=letters))
        metrics.publish_rejected(self.name, len(letters))
        for item in items:
            self.log.error(
                "event_undeliverable",
                event_id=item.event.id,
                type=item.event.type,
                error=rejected[item.event.id],
            )

    async def flush(self, timeout: float) -> None:
        """Deliver what is left, for at most ``timeout`` seconds (at shutdown)."""
        try:
            async with asyncio.timeout(timeout):
                while await self.drain_once():
                    pass
        except (TimeoutError, EventflowError) as exc:
            self.log.warning("outbox_not_flushed", error=str(exc) or "timed out")
