"""The S3 sensor against a real S3 server (moto's standalone server, or MinIO)."""

from __future__ import annotations

import asyncio
import collections
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventflow.events import Event
from eventflow.testing import RecordingContext, running
from eventflow.types import PluginEnv
from eventflow_sensors.s3.sensor import S3Publisher, S3Sensor
from tests.services.s3 import S3Server


def make(server: S3Server, bucket: str, **config: Any) -> S3Sensor:
    config = {
        "type": "s3",
        "bucket": bucket,
        "endpoint_url": server.endpoint,
        "path_style": True,
        "poll_interval": "300ms",
        **config,
    }
    return S3Sensor("lake", config, PluginEnv("test", Path(".")))


async def drain(ctx: RecordingContext, expect: int = 0, quiet: float = 1.0) -> list[str]:
    """Keys of the next ``expect`` observations and of any more until the sensor is quiet
    for ``quiet`` seconds, committed as they come."""
    got = await ctx.take(expect, timeout=60, commit=True) if expect else []
    got += await ctx.settle(quiet, 60, commit=True)
    return [o.key or "" for o in got]


async def put(server: S3Server, bucket: str, objects: dict[str, bytes]) -> None:
    await asyncio.to_thread(server.put_many, bucket, objects)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_objects_out_of_order_and_late_fire_each_partition_once(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """10,000 objects in 100 partitions, landing in no particular key order, some after
    their partition's marker: every partition's marker is emitted once when complete, every
    part once, and a marker rewritten after late parts is emitted again (an update)."""
    rng = random.Random(4)
    days = [f"2024-{m:02d}-{d:02d}" for m in range(1, 5) for d in range(1, 26)]
    parts = {f"orders/dt={dt}/part-{i:03d}.csv": b"x" for dt in days for i in range(99)}
    early = set(days[::2])
    first = {k: v for k, v in parts.items() if k.split("/")[1][3:] in early}
    first |= {f"orders/dt={dt}/_SUCCESS": b"" for dt in early}
    # Later partitions land in reverse key order (late data for earlier dates).
    rest = dict(sorted(((k, v) for k, v in parts.items() if k not in first), reverse=True))
    await put(s3_server, s3_bucket, first)
    ctx = RecordingContext("lake")
    sensor = make(
        s3_server, s3_bucket, prefix="orders/", ready={"marker": "_SUCCESS"}, poll_interval="2s"
    )
    async with running(sensor, ctx):
        seen = await drain(ctx, len(first))
        assert sorted(seen) == sorted(first)
        await put(s3_server, s3_bucket, rest)
        assert await drain(ctx, quiet=3.0) == []  # held: no marker yet
        markers = [f"orders/dt={dt}/_SUCCESS" for dt in days if dt not in early]
        rng.shuffle(markers)
        await put(s3_server, s3_bucket, dict.fromkeys(markers, b""))
        seen += await drain(ctx, len(rest) + len(markers))
        # Late parts land in ten complete partitions, then their markers are rewritten.
        late_days = rng.sample(days, 10)
        await put(s3_server, s3_bucket, {f"orders/dt={dt}/late.csv": b"late" for dt in late_days})
        late = await drain(ctx, len(late_days))
        assert sorted(late) == sorted(f"orders/dt={dt}/late.csv" for dt in late_days)
        await asyncio.sleep(1.1)  # LastModified has one-second resolution
        await put(s3_server, s3_bucket, {f"orders/dt={dt}/_SUCCESS": b"" for dt in late_days})
        rewritten = await drain(ctx, len(late_days))
    counts = collections.Counter(seen)
    assert set(counts) == set(parts) | {f"orders/dt={dt}/_SUCCESS" for dt in days}
    assert max(counts.values()) == 1
    assert sorted(rewritten) == sorted(f"orders/dt={dt}/_SUCCESS" for dt in late_days)
    for dt in days:  # each marker comes after every part of its partition
        order = [k for k in seen if k.startswith(f"orders/dt={dt}/")]
        assert order[-1].endswith("_SUCCESS")


async def test_restart_emits_only_what_changed_and_forgets_deleted(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """The cursor is the record of what was seen: after a restart only new or changed
    objects are emitted, and deleted objects are forgotten."""
    client = s3_server.client()
    await put(s3_server, s3_bucket, {"a/1": b"1", "a/2": b"2", "b/1": b"3"})
    ctx = RecordingContext("lake")
    async with running(make(s3_server, s3_bucket), ctx):
        assert sorted(await drain(ctx, 3)) == ["a/1", "a/2", "b/1"]
    client.delete_object(Bucket=s3_bucket, Key="a/2")
    client.put_object(Bucket=s3_bucket, Key="b/1", Body=b"changed")
    client.put_object(Bucket=s3_bucket, Key="c/1", Body=b"new")
    restarted = RecordingContext("lake", cursor=ctx.cursor)
    async with running(make(s3_server, s3_bucket), restarted):
        assert sorted(await drain(restarted, 2)) == ["b/1", "c/1"]
    assert restarted.forgotten == ["a/2"]
    assert sorted(restarted.cursor) == ["a/1", "b/1", "c/1"]


async def test_lookback_lists_only_recent_partitions_and_prunes_the_record(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """With `partition_prefix` and `lookback` a poll lists only the partitions that can
    still change (one request each here); records of older partitions are forgotten."""
    today = time.strftime("%Y-%m-%d", time.gmtime())
    old = {f"t/dt=2020-01-{d:02d}/x": b"old" for d in range(1, 29)}
    await put(s3_server, s3_bucket, {**old, f"t/dt={today}/x": b"new"})
    cursor = {"t/dt=2020-01-01/x": {"etag": "e", "size": 3, "modified": 1}}
    ctx = RecordingContext("lake", cursor=cursor)
    sensor = make(
        s3_server, s3_bucket, prefix="t/", partition_prefix="t/dt=%Y-%m-%d/", lookback="2d"
    )
    await sensor.open(ctx)
    try:
        assert await sensor.poll() == 1
        assert [o.key for o in ctx.take_nowait(commit=True)] == [f"t/dt={today}/x"]
        assert sensor.requests == 4  # the daily prefixes of two days back to tomorrow
        assert ctx.forgotten == ["t/dt=2020-01-01/x"]
        assert await sensor.poll() == 0
        assert sensor.requests == 8
    finally:
        sensor.close()


async def test_stable_mode_waits_for_two_equal_listings(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """With `ready: {stable: true}` an object is emitted only once two listings agree."""
    ctx = RecordingContext("lake")
    sensor = make(s3_server, s3_bucket, ready={"stable": True}, poll_interval="1s")
    async with running(sensor, ctx):
        await ctx.wait_healthy(timeout=15)  # the start-up listing is done
        await put(s3_server, s3_bucket, {"s/1": b"1"})
        started = time.monotonic()
        obs = await ctx.get(timeout=15, commit=True)
        assert obs.key == "s/1"
        assert time.monotonic() - started > 0.9  # a second listing was needed


async def test_manifest_completes_a_prefix_when_every_part_exists(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """A manifest's prefix is complete once every part it lists exists; a manifest that is
    not a manifest is dead-lettered with its position."""
    manifest = orjson.dumps({"entries": [{"url": f"s3://{s3_bucket}/m/p1/a"}, {"url": "b"}]})
    manifest = manifest.replace(b'"b"', b'"b.csv"')
    await put(s3_server, s3_bucket, {"m/p1/a": b"1", "m/p1/_manifest.json": manifest})
    await put(s3_server, s3_bucket, {"m/p2/_manifest.json": b"{not json"})
    ctx = RecordingContext("lake")
    sensor = make(s3_server, s3_bucket, ready={"manifest": "_manifest.json"})
    async with running(sensor, ctx):
        first = await ctx.take(1, timeout=30, commit=True)
        first += await ctx.settle(1.0, 10, commit=True)
        assert [o.error is not None for o in first] == [True]
        assert first[0].position["key"] == "m/p2/_manifest.json"
        await put(s3_server, s3_bucket, {"m/p1/b.csv": b"2"})
        assert await drain(ctx, 3) == ["m/p1/a", "m/p1/b.csv", "m/p1/_manifest.json"]


async def test_publisher_writes_a_marker_the_sensor_sees(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """The s3 publisher writes `keys[dataset]` for an available partition; a downstream
    s3 sensor in marker mode picks it up."""
    publisher = S3Publisher(
        "s3",
        {
            "type": "s3",
            "bucket": s3_bucket,
            "endpoint_url": s3_server.endpoint,
            "path_style": True,
            "keys": {"report": "reports/dt={dt}/_SUCCESS"},
        },
        PluginEnv("test", Path(".")),
    )
    event = Event(
        id="1",
        source="/eventflow/p/datasets/report",
        type="eventflow.dataset.available",
        time="2024-01-01T00:00:00Z",  # type: ignore[arg-type]
        data={"dataset": "report", "partition": {"dt": "2024-01-01"}},
    )
    other = event.model_copy(update={"data": {"dataset": "other", "partition": {"dt": "x"}}})
    async with publisher:
        await publisher.publish([event, other])
    ctx = RecordingContext("lake")
    async with running(make(s3_server, s3_bucket, ready={"marker": "_SUCCESS"}), ctx):
        assert await drain(ctx, 1) == ["reports/dt=2024-01-01/_SUCCESS"]
