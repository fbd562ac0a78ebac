"""Backfill over an S3 sensor lists the bucket (moto's server): the complete partitions are
found, and a backfill that finds nothing says why."""

from __future__ import annotations

import asyncio
from pathlib import Path

from eventflow.config.loader import load_pipeline
from eventflow.events import utcnow
from eventflow.pipeline import CompiledPipeline
from eventflow.store.memory import MemoryStore
from eventflow.types import ListableSensor, PluginEnv
from eventflow.views import backfills
from eventflow_sensors.s3.sensor import S3Sensor
from tests.services.s3 import S3Server


def pipeline(tmp_path: Path, server: S3Server, bucket: str) -> CompiledPipeline:
    sensor = server.sensor_yaml(bucket, prefix="orders/", ready="{marker: _SUCCESS}")
    (tmp_path / "p.yaml").write_text(
        f"""
name: lake
state: memory://
sensors:
  lake: {sensor}
datasets:
  orders: {{sensor: lake, key: "orders/dt={{dt}}/_SUCCESS"}}
rules:
  daily:
    when: {{all: [orders], by: [dt]}}
    run: {{command: ["true"]}}
"""
    )
    return load_pipeline(tmp_path / "p.yaml")


async def put(server: S3Server, bucket: str, keys: list[str]) -> None:
    await asyncio.to_thread(server.put_many, bucket, dict.fromkeys(keys, b"x"))


async def preview(
    p: CompiledPipeline, lo: str = "2024-05-01", hi: str = "2024-05-31"
) -> backfills.Preview:
    async with MemoryStore() as store:
        return await backfills.preview(p, store, "daily", lo, hi)


async def test_the_s3_sensor_lists_complete_partitions_with_the_positions_it_emits(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    """Three days with their marker and one without: the listing (marker mode) finds the
    three, whose observations have the ids the running sensor gives them."""
    await put(s3_server, s3_bucket, [
        *(f"orders/dt=2024-05-0{d}/part-0.csv" for d in (1, 2, 3, 4)),
        *(f"orders/dt=2024-05-0{d}/_SUCCESS" for d in (1, 2, 3)),
        "elsewhere/dt=2024-05-01/_SUCCESS",
    ])  # fmt: skip
    p = pipeline(tmp_path, s3_server, s3_bucket)
    spec = p.sensors["lake"]
    assert issubclass(spec.plugin, ListableSensor)
    sensor = S3Sensor("lake", spec.config, PluginEnv("lake", tmp_path))
    listed = await sensor.list_observations("orders/dt=")
    markers = sorted(o.key or "" for o in listed if (o.key or "").endswith("_SUCCESS"))
    assert markers == [f"orders/dt=2024-05-0{d}/_SUCCESS" for d in (1, 2, 3)]
    assert all(o.on_commit is None for o in listed)
    assert {o.position["bucket"] for o in listed} == {s3_bucket}
    found = await preview(p)
    assert found.counts == {"run": 3, "resume": 0, "skip": 0, "incomplete": 0}
    assert [row["key"] for row in found.partitions] == [
        "dt=2024-05-01",
        "dt=2024-05-02",
        "dt=2024-05-03",
    ]
    assert found.why_empty is None


async def test_an_s3_backfill_that_finds_nothing_says_why(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """No objects under the prefix, objects none of which matches the pattern, or partitions
    all outside the range: the preview says which, never a silent 0."""
    bucket = s3_server.new_bucket()
    p = pipeline(tmp_path, s3_server, bucket)
    empty = await preview(p)
    assert empty.to_fire == 0
    assert empty.why_empty is not None
    assert "sensor lake listed 0 under 'orders/dt='" in empty.why_empty
    await put(s3_server, bucket, ["orders/2024-05-01/_SUCCESS", "orders/dt=2024-05-01/x/_SUCCESS"])
    unmatched = await preview(p)
    assert unmatched.why_empty is not None
    assert "none matching the datasets' patterns (orders: orders/dt={dt}/_SUCCESS)" in (
        unmatched.why_empty
    )
    await put(s3_server, bucket, ["orders/dt=2023-12-31/_SUCCESS"])
    outside = await preview(p)
    assert outside.why_empty == (
        "1 partitions found, from 2023-12-31 to 2023-12-31, all outside"
        " --from 2024-05-01 --to 2024-05-31"
    )
    assert utcnow()  # the clock is real: the listing is of now
