"""The s3 publisher: a marker (or manifest) object written when a dataset partition is
available, so a rule's ``produces`` lands a ``_SUCCESS`` in S3 for the next system.

It reacts to ``eventflow.dataset.available`` events (a succeeded run's produced dataset is
announced by one), renders the dataset's key template with the partition and PUTs the
object. Delivery is at least once (the outbox retries a failed batch): writing the same
marker again is harmless, since the key is the same and the body does not change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from pydantic import BaseModel

from eventflow.plugin import (
    DATASET_AVAILABLE,
    ClosedError,
    Event,
    PluginEnv,
    PublishError,
    Resource,
    render,
)

from .client import S3Problem, make_client, translate
from .config import S3PublisherConfig


class S3Publisher(Resource):
    """Writes ``keys[dataset]`` (rendered with the partition) for each available partition."""

    config_model: ClassVar[type[BaseModel]] = S3PublisherConfig

    def __init__(self, name: str, config: Any, env: PluginEnv) -> None:
        if not isinstance(config, S3PublisherConfig):
            config = S3PublisherConfig.model_validate(config)
        self.name = name
        self.config = config
        self._client: Any = None
        self._closed = False
        self._pool: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        if self._closed:
            raise ClosedError(f"s3 publisher {self.name!r} is closed")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(4, thread_name_prefix=f"eventflow-s3pub-{self.name}")
            self._client = await asyncio.get_running_loop().run_in_executor(
                self._pool, make_client, self.config
            )

    def objects(self, events: Sequence[Event]) -> dict[str, bytes]:
        """The key and body to write for each event that names a configured dataset."""
        out: dict[str, bytes] = {}
        for event in events:
            if event.type != DATASET_AVAILABLE:
                continue
            template = self.config.keys.get(str(event.data.get("dataset")))
            if template is None:
                continue
            key = render(template, event.data.get("partition") or {})
            out[key] = event.to_json().encode() if self.config.body == "event" else b""
        return out

    async def publish(self, events: Sequence[Event]) -> None:
        if self._closed:
            raise ClosedError(f"s3 publisher {self.name!r} is closed; it cannot publish")
        if self._pool is None:
            raise PublishError(f"s3 publisher {self.name!r} is not open", hint="call open() first")
        loop = asyncio.get_running_loop()
        writes = [
            loop.run_in_executor(self._pool, self._put, key, body)
            for key, body in self.objects(events).items()
        ]
        results = await asyncio.gather(*writes, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise PublishError(
                    f"s3 publisher {self.name!r}: {result}", hint="the events are kept and retried"
                ) from result

    def _put(self, key: str, body: bytes) -> None:
        bucket = self.config.bucket
        try:
            self._client.put_object(Bucket=bucket, Key=key, Body=body)
        except Exception as exc:
            problem: S3Problem = translate(exc, f"writing s3://{bucket}/{key}", bucket)
            raise problem from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False)
