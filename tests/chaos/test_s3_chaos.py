"""Chaos on the S3 endpoint under the real ``eventflow run``: the endpoint (moto, behind a
TCP proxy that can fail it without losing moto's state) refuses connections for a while,
then hangs (accepts and never answers), then comes back. Both the listing and the SQS
notification loop time out, back off, say so, and resume by themselves; objects that
landed meanwhile are found, and every partition fires exactly once."""

from __future__ import annotations

import dataclasses
import operator
from pathlib import Path

from tests.acceptance.harness import Project, wait_until
from tests.acceptance.test_s3_crash import PIPELINE, check_once
from tests.chaos.served import Served, leftovers, logged  # noqa: F401  (autouse)
from tests.integration.test_s3_notifications import notifying_queue
from tests.services.proxy import FaultyProxy
from tests.services.s3 import S3Server


def land(server: S3Server, bucket: str, partitions: list[str]) -> None:
    """The partitions' ``_SUCCESS`` markers, put to moto itself (not through the proxy)."""
    server.put_many(bucket, {f"in/p={x}/_SUCCESS": b"" for x in partitions})


def test_endpoint_refusing_then_hanging_then_back(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    """The endpoint refuses connections, comes back, hangs, comes back, while objects keep
    landing in the bucket: ``/api/sensors`` shows the sensor down during each outage and
    up after it, each outage is logged (``s3_unavailable`` with its cause, then
    ``s3_recovered``), and every partition fires exactly once."""
    queue = notifying_queue(s3_server, s3_bucket)
    host, port = s3_server.endpoint.removeprefix("http://").rsplit(":", 1)
    p_of = operator.itemgetter("p")
    with FaultyProxy((host, int(port))) as proxy:
        via_proxy = dataclasses.replace(s3_server, endpoint=proxy.endpoint)
        sensor = via_proxy.sensor_yaml(
            s3_bucket,
            prefix="in/",
            notifications=f'{{sqs: "{queue}", wait_time: 1s}}',
            poll_interval="1s",
            request_timeout="1s",
        )
        s = Served(Project(tmp_path, PIPELINE.format(sensor=sensor)))
        s.start()
        s.wait_health("lake", True)
        landed: list[str] = []
        for phase, fail in (("refused", proxy.refuse), ("hung", proxy.hang)):
            batch = [f"{phase}-{i}" for i in range(4)]
            landed += batch[:2]
            land(s3_server, s3_bucket, batch[:2])
            wait_until(lambda want=set(landed): s.fired(p_of) >= want, timeout=30, interval=0.3)
            fail()
            s.wait_health("lake", False, timeout=60)
            landed += batch[2:]
            land(s3_server, s3_bucket, batch[2:])  # while the sensor cannot see it
            proxy.forward()
            s.wait_health("lake", True, timeout=60)
        wait_until(lambda: s.fired(p_of) >= set(landed), timeout=60, interval=0.3)
        wait_until(s.settled, timeout=60)
        assert s.project.stop() == 0
    check_once(s.project, set(landed))
    causes = {e["code"] for e in logged(s.project, "s3_unavailable", sensor="lake")}
    assert "EndpointConnectionError" in causes, causes
    assert causes & {"ReadTimeoutError", "ConnectTimeoutError"}, causes
    assert logged(s.project, "s3_recovered", sensor="lake")
