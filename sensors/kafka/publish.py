"""Sending to Kafka: the completion-event publisher and the ``publish`` task's sender.

Both wait for ``acks=all``: ``publish``/``send`` return only once every in-sync replica has
the message, and raise otherwise (the outbox keeps the events; the task attempt fails and
is retried). The idempotent producer is not used, as not every Kafka-protocol broker has
it; a retried send may therefore duplicate a message, which the CloudEvents ``id`` (and the
``eventflow-run-id`` header of a task's message) lets consumers deduplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from eventflow.plugin import (
    JSON,
    ClosedError,
    Event,
    OutgoingMessage,
    PluginEnv,
    PublishError,
    Resource,
    TaskError,
)

from .config import KafkaConnection, KafkaPublisherConfig

try:
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
    from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(f"{exc}; install eventflow[kafka]") from exc

CONTENT_TYPE = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
"""The header of CloudEvents' Kafka binding in structured mode."""


class _Producer(Resource):
    """An aiokafka producer with an idempotent ``close`` and a clear error once closed."""

    what = "kafka producer"

    def __init__(self, connection: KafkaConnection, linger_ms: int = 0) -> None:
        self._connection = connection
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._closed = False
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self._closed:
            raise ClosedError(f"{self.what} is closed")
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **self._connection.client_options(),
                    acks="all",
                    linger_ms=self._linger_ms,
                )
                try:
                    await producer.start()
                except KafkaError:
                    await producer.stop()
                    raise
                self._producer = producer

    async def _started(self) -> AIOKafkaProducer:
        if self._closed:
            raise ClosedError(f"{self.what} is closed; it cannot send")
        if self._producer is None:
            await self.open()
        assert self._producer is not None
        return self._producer

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            producer, self._producer = self._producer, None
            if producer is not None:
                await producer.stop()


class KafkaPublisher(_Producer):
    """Completion events as CloudEvents 1.0 JSON (structured mode) to one topic; the message
    key is the event's subject (dataset or rule, and partition), so the events of one
    partition stay in order."""

    config_model: ClassVar[type[BaseModel]] = KafkaPublisherConfig

    def __init__(self, name: str, config: Any, env: PluginEnv) -> None:
        if not isinstance(config, KafkaPublisherConfig):
            config = KafkaPublisherConfig.model_validate(config)
        super().__init__(config, int(config.linger.total_seconds() * 1000))
        self.what = f"kafka publisher {name!r}"
        self.name = name
        self.topic = config.topic

    async def open(self) -> None:
        try:
            await super().open()
        except KafkaError as exc:
            raise self._error(exc) from exc

    async def publish(self, events: Sequence[Event]) -> None:
        producer = await self._started()
        try:
            futures = [
                await producer.send(
                    self.topic,
                    event.to_json().encode(),
                    key=(event.subject or event.source).encode(),
                    headers=CONTENT_TYPE,
                )
                for event in events
            ]
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: KafkaError) -> PublishError:
        return PublishError(
            f"{self.what} cannot deliver to topic {self.topic!r}: {type(exc).__name__}: {exc}",
            hint="check that the brokers are reachable and the topic exists; the events stay"
            " in the outbox and are sent again",
        )


class KafkaSender(_Producer):
    """The ``publish`` task's Kafka transport: ``run: {publish: {kafka: {...}, topic: T}}``."""

    config_model: ClassVar[type[BaseModel]] = KafkaConnection

    def __init__(self, config: Any, env: PluginEnv) -> None:
        if not isinstance(config, KafkaConnection):
            config = KafkaConnection.model_validate(config)
        super().__init__(config)

    async def send(self, message: OutgoingMessage) -> dict[str, JSON]:
        producer = await self._started()
        try:
            meta = await producer.send_and_wait(
                message.topic, message.value, key=message.key, headers=list(message.headers)
            )
        except KafkaError as exc:
            raise TaskError(
                f"kafka: cannot deliver to topic {message.topic!r}: {type(exc).__name__}: {exc}",
                hint="the attempt is retried as the rule's `retries` allow",
            ) from exc
        return {"topic": meta.topic, "partition": meta.partition, "offset": meta.offset}
