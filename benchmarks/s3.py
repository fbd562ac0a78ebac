"""The S3 sensor against moto's standalone server: what a poll costs, and put -> task start.

- ``poll``: 100,000 objects under the prefix, 1,000 of them in today's partition. One poll
  with ``partition_prefix`` + ``lookback: 1d`` (three daily prefixes) against one listing of
  the whole prefix: requests made and time taken, the first poll (emitting) and a steady
  one (nothing new).
- ``latency``: object put -> task process start through the real ``eventflow run``, in
  notification mode (SQS long polling) and in listing mode (as a fraction of
  ``poll_interval``: a put waits for the next listing, about half an interval on average).

moto handles about 300 requests a second here, so filling the bucket takes minutes;
``EVENTFLOW_TEST_S3_ENDPOINT`` is not used: moto is started on a free port.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import eventflow_running, percentiles, wait_starts
from eventflow.testing import RecordingContext
from eventflow.types import PluginEnv
from eventflow_sensors.s3.sensor import S3Sensor
from tests.services._process import free_port
from tests.services.s3 import CREDENTIALS, S3Server


def _server() -> S3Server:
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    port = free_port()
    server = S3Server(endpoint=f"http://127.0.0.1:{port}", port=port)
    server.start()
    return server


# --- one poll -------------------------------------------------------------------------------


async def _polls(server: S3Server, bucket: str, **config: Any) -> dict[str, Any]:
    sensor = S3Sensor(
        "lake",
        {"type": "s3", "bucket": bucket, "endpoint_url": server.endpoint, "path_style": True,
         "prefix": "t/", **config},
        PluginEnv("bench", Path(".")),
    )  # fmt: skip
    ctx = RecordingContext("lake", maxsize=200_000)
    out: dict[str, Any] = {}
    await sensor.open(ctx)
    try:
        for label in ("first", "steady"):
            before = sensor.requests
            started = time.perf_counter()
            emitted = await sensor.poll()
            out[label] = {
                "seconds": time.perf_counter() - started,
                "requests": sensor.requests - before,
                "emitted": emitted,
            }
            ctx.commit(*ctx.take_nowait())
    finally:
        sensor.close()
    return out


def run_poll(objects: int = 100_000, recent: int = 1_000) -> dict[str, Any]:
    server = _server()
    try:
        bucket = server.new_bucket()
        today = datetime.now(UTC)
        old_days = (objects - recent) // recent
        keys = {f"t/dt={today:%Y-%m-%d}/part-{i:05d}": b"x" for i in range(recent)}
        for d in range(old_days):
            day = today - timedelta(days=10 + d)
            keys.update({f"t/dt={day:%Y-%m-%d}/part-{i:05d}": b"x" for i in range(recent)})
        started = time.perf_counter()
        server.put_many(bucket, keys, threads=4)
        fill = time.perf_counter() - started
        bounded = asyncio.run(
            _polls(server, bucket, partition_prefix="t/dt=%Y-%m-%d/", lookback="1d")
        )
        full = asyncio.run(_polls(server, bucket))
    finally:
        server.stop()
    return {"objects": len(keys), "recent": recent, "fill_seconds": fill,
            "bounded": bounded, "full": full}  # fmt: skip


def report_poll(r: dict[str, Any]) -> str:
    rows = [f"one S3 poll, {r['objects']:,} objects under the prefix, {r['recent']:,} in the"
            " lookback (moto server):"]  # fmt: skip
    for mode in ("bounded", "full"):
        for label in ("first", "steady"):
            x = r[mode][label]
            rows.append(
                f"  {mode:7} {label:6}: {x['requests']:4} requests, {x['seconds'] * 1000:8.1f} ms,"
                f" {x['emitted']:,} emitted"
            )
    return "\n".join(rows)


# --- put -> task start ---------------------------------------------------------------------

PIPELINE = """
name: s3latency
sensors:
  lake: {sensor}
datasets:
  obj: {{sensor: lake, key: "in/{{n}}"}}
rules:
  start:
    when: {{any: [obj], by: [n]}}
    run:
      command: [bash, -c, "echo $EVENTFLOW_VAR_N $EPOCHREALTIME >> starts.log"]
engine: {{max_runs: 32, poll_interval: 1s}}
"""


def _latency(server: S3Server, objects: int, spacing: float, poll: float, sqs: bool) -> Any:
    bucket = server.new_bucket()
    settings = {"prefix": "in/", "poll_interval": f"{poll}s"}
    if sqs:
        url, arn = server.new_queue()
        server.client().put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
            },
        )
        settings["notifications"] = f'{{sqs: "{url}", wait_time: 10s}}'
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pipeline.yaml").write_text(
            PIPELINE.format(sensor=server.sensor_yaml(bucket, **settings))
        )
        client = server.client()
        with eventflow_running(root, startup=3.0):
            put: dict[str, float] = {}
            for i in range(objects):
                client.put_object(Bucket=bucket, Key=f"in/{i}", Body=b"x")
                put[str(i)] = time.time()  # the object is visible once the PUT returns
                time.sleep(spacing)
            starts = wait_starts(root / "starts.log", objects, timeout=30 + 2 * poll)
    return [starts[n] - put[n] for n in starts], objects


def run_latency(objects: int = 100, poll: float = 2.0) -> dict[str, Any]:
    server = _server()
    try:
        delays, n = _latency(server, objects, 0.1, poll=300.0, sqs=True)
        listed, m = _latency(server, objects // 4, 0.37, poll=poll, sqs=False)
    finally:
        server.stop()
    return {
        "notifications": {"objects": n, "started": len(delays), **percentiles(delays)},
        "listing": {"objects": m, "started": len(listed), "poll_interval": poll,
                    **percentiles([d / poll for d in listed])},
    }  # fmt: skip


def report_latency(r: dict[str, Any]) -> str:
    n, s = r["notifications"], r["listing"]
    return (
        f"S3 object put -> task process start, SQS notifications ({n['started']}/{n['objects']}):"
        f" p50 {n['p50'] * 1000:.1f} ms, p99 {n['p99'] * 1000:.1f} ms\n"
        f"  listing mode, poll_interval {s['poll_interval']}s ({s['started']}/{s['objects']}):"
        f" p50 {s['p50']:.2f}, p99 {s['p99']:.2f}, max {s['max']:.2f} x poll_interval"
    )


def run() -> dict[str, Any]:
    return {"poll": run_poll(), "latency": run_latency()}


def report(r: dict[str, Any]) -> str:
    return report_poll(r["poll"]) + "\n" + report_latency(r["latency"])
