"""The S3 sensor's notification mode: bucket notifications through a real SQS queue (moto)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from eventflow.testing import RecordingContext, running
from tests.integration.test_s3_sensor import make, put
from tests.services.s3 import S3Server


def notifying_queue(server: S3Server, bucket: str, visibility_timeout: int = 30) -> str:
    """A new SQS queue receiving the bucket's object events (its s3:TestEvent included)."""
    url, arn = server.new_queue(visibility_timeout)
    server.client().put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
            ]
        },
    )
    return url


def queued(server: S3Server, url: str) -> int:
    """Messages still in the queue, visible or received and not yet deleted."""
    attrs = server.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


async def emptied(server: S3Server, url: str, timeout: float = 5.0) -> None:
    """Wait until every message of the queue is deleted."""
    deadline = time.monotonic() + timeout
    left = queued(server, url)
    while left and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        left = queued(server, url)
    assert left == 0, f"{left} message(s) not deleted"


def notified(server: S3Server, bucket: str, url: str, **config: Any) -> Any:
    config.setdefault("poll_interval", "1h")
    return make(server, bucket, notifications={"sqs": url, "wait_time": "1s"}, **config)


async def test_notified_objects_fire_within_one_receive_and_once(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """Objects announced on SQS are emitted within a receive, once each (keys decoded),
    and their messages are deleted only after the observations are committed."""
    url = notifying_queue(s3_server, s3_bucket)
    ctx = RecordingContext("lake")
    sensor = notified(s3_server, s3_bucket, url)
    keys = [f"in/dt=2024-01-0{i}/part a+{i}.csv" for i in range(1, 6)]
    async with running(sensor, ctx):
        await ctx.wait_healthy(timeout=15)  # the start-up listing is done
        started = time.monotonic()
        await put(s3_server, s3_bucket, dict.fromkeys(keys, b"x"))
        got = await ctx.take(len(keys), timeout=10)
        assert time.monotonic() - started < 5  # one 1 s receive, plus a loaded machine
        assert sorted(o.key for o in got) == sorted(keys)
        assert all(o.attributes["via"] == "notification" for o in got)
        await asyncio.sleep(0.5)
        assert queued(s3_server, url) == len(keys)  # nothing deleted before the commit
        ctx.commit(*got)
        await emptied(s3_server, url)
        assert await ctx.settle(1.0) == []


async def test_an_object_seen_by_listing_and_notification_is_one_event(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """The reconciliation listing and the notification report the same position, and the
    object is emitted once; its message is deleted after that one commit."""
    url = notifying_queue(s3_server, s3_bucket)
    await put(s3_server, s3_bucket, {"r/1": b"1"})  # notified before the sensor starts
    ctx = RecordingContext("lake")
    async with running(notified(s3_server, s3_bucket, url, poll_interval="300ms"), ctx):
        first = await ctx.get(timeout=10)
        assert await ctx.settle(1.5) == []
        assert queued(s3_server, url) == 1  # held until the emitted observation commits
        ctx.commit(first)
        await emptied(s3_server, url)
    listed = make(s3_server, s3_bucket)._observation  # the position a listing would give
    assert first.position["key"] == "r/1"
    assert set(first.position) == {"bucket", "key", "etag", "modified"}
    state = await asyncio.to_thread(_head, s3_server, s3_bucket, "r/1")
    assert listed("r/1", state, "listing").position == first.position


def _head(server: S3Server, bucket: str, key: str) -> Any:
    from eventflow_sensors.s3.client import Bucket
    from eventflow_sensors.s3.config import Connection

    return Bucket(Connection(bucket=bucket, endpoint_url=server.endpoint, path_style=True)).head(
        key
    )


async def test_a_message_that_is_not_a_notification_is_dead_lettered_then_deleted(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """A foreign message becomes a dead letter with its queue and message id, and is
    deleted once that is committed; the notifications around it still fire."""
    url = notifying_queue(s3_server, s3_bucket)
    s3_server.client("sqs").send_message(QueueUrl=url, MessageBody='{"hello": 1}')
    await put(s3_server, s3_bucket, {"ok/1": b"1"})
    ctx = RecordingContext("lake")
    async with running(notified(s3_server, s3_bucket, url), ctx):
        got = await ctx.take(2, timeout=10, commit=True)
        bad = [o for o in got if o.error]
        assert len(bad) == 1
        assert bad[0].position == {"queue": url, "message_id": bad[0].position["message_id"]}
        assert "not a bucket notification" in (bad[0].error or "")
        assert [o.key for o in got if not o.error] == ["ok/1"]
        await emptied(s3_server, url)


async def test_marker_notification_lists_its_prefix(s3_server: S3Server, s3_bucket: str) -> None:
    """In marker mode a notified marker emits its prefix's parts, then itself; a part
    landing later in the complete prefix fires at once."""
    url = notifying_queue(s3_server, s3_bucket)
    ctx = RecordingContext("lake")
    sensor = notified(s3_server, s3_bucket, url, ready={"marker": "_SUCCESS"})
    async with running(sensor, ctx):
        await put(s3_server, s3_bucket, {"m/d=1/a": b"1", "m/d=1/b": b"2"})
        assert await ctx.settle(1.5) == []
        await put(s3_server, s3_bucket, {"m/d=1/_SUCCESS": b""})
        got = await ctx.take(3, timeout=10, commit=True)
        assert [o.key for o in got][-1] == "m/d=1/_SUCCESS"
        assert sorted(o.key or "" for o in got[:2]) == ["m/d=1/a", "m/d=1/b"]
        await put(s3_server, s3_bucket, {"m/d=1/late": b"3"})
        late = await ctx.get(timeout=10, commit=True)
        assert late.key == "m/d=1/late"
