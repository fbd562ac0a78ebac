"""Crash safety of the S3 sensor, tested by crashing the real `eventflow run` process.

Objects land in a real S3 server (moto) with bucket notifications to SQS; eventflow is
SIGKILLed and restarted. Afterwards every partition has fired exactly once, no object was
missed, and no SQS message was deleted before what it caused was committed.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from pathlib import Path

import pytest

from tests.acceptance.harness import Project, lines, wait_until
from tests.integration.test_s3_notifications import notifying_queue, queued
from tests.services.s3 import S3Server

PIPELINE = """
name: s3crash
sensors:
  lake: {sensor}
datasets:
  parts: {{sensor: lake, key: "in/p={{p}}/_SUCCESS"}}
rules:
  load:
    when: {{all: [parts], by: [p]}}
    on_update: ignore
    run:
      command: [sh, -c, "echo {{run_id}} $EVENTFLOW_VAR_P >> runs.log"]
publish:
  - {{type: file, path: out/events.jsonl}}
engine: {{poll_interval: 100ms}}
"""


def project(root: Path, server: S3Server, bucket: str, queue: str, ready: str) -> Project:
    sensor = server.sensor_yaml(
        bucket,
        prefix="in/",
        ready=ready,
        notifications=f'{{sqs: "{queue}", wait_time: 1s}}',
        poll_interval="3s",
    )
    return Project(root, PIPELINE.format(sensor=sensor))


def settled(p: Project, partitions: int) -> bool:
    try:
        counts = p.status()["counts"]
    except AssertionError:
        return False
    return counts["runs_succeeded"] == partitions and counts["outbox"] == 0


def check_once(p: Project, partitions: set[str]) -> None:
    runs = p.runs()
    fired = collections.Counter(r["partition"]["p"] for r in runs)
    assert set(fired) == partitions, "a partition did not fire"
    assert max(fired.values()) == 1, "a partition fired twice"
    run_ids = {r["partition"]["p"]: r["run_id"] for r in runs}
    for line in lines(p.root / "runs.log"):  # a task may run again, with the same run id
        run_id, part = line.split()
        assert run_ids[part] == run_id


def test_no_message_is_deleted_before_its_commit(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    """Killed before its first commit, eventflow has deleted no SQS message; restarted,
    every object fires once and the queue ends empty."""
    queue = notifying_queue(s3_server, s3_bucket, visibility_timeout=2)
    s3_server.client("sqs").purge_queue(QueueUrl=queue)  # the s3:TestEvent
    p = project(tmp_path, s3_server, s3_bucket, queue, ready="{}")
    p.start(crash_at="engine.before_commit")
    time.sleep(1.0)  # running, listed an empty bucket, waiting on SQS
    partitions = {f"n{i}" for i in range(5)}
    s3_server.put_many(s3_bucket, {f"in/p={x}/_SUCCESS": b"" for x in partitions})
    assert p.wait_exit(timeout=60) == -9, "the crash point was not reached"
    assert queued(s3_server, queue) == len(partitions), "a message was deleted before commit"
    p.start()
    try:
        wait_until(lambda: settled(p, len(partitions)), timeout=60, interval=0.3)
        wait_until(lambda: queued(s3_server, queue) == 0, timeout=30, interval=0.3)
    finally:
        assert p.stop() == 0
    check_once(p, partitions)


@pytest.mark.slow
def test_random_sigkills_while_objects_land(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    """SIGKILL at random moments while 30 partitions land (parts, then a `_SUCCESS`
    marker): after the last restart every partition fired exactly once."""
    rng = random.Random(4)
    queue = notifying_queue(s3_server, s3_bucket, visibility_timeout=2)
    p = project(tmp_path, s3_server, s3_bucket, queue, ready="{marker: _SUCCESS}")
    partitions = [f"x{i:02d}" for i in range(30)]
    rng.shuffle(partitions)
    done = threading.Event()

    def land_all() -> None:
        for x in partitions:
            s3_server.put_many(s3_bucket, {f"in/p={x}/part-{n}": b"data" for n in range(3)})
            s3_server.put_many(s3_bucket, {f"in/p={x}/_SUCCESS": b""})
            time.sleep(0.2)
        done.set()

    lander = threading.Thread(target=land_all, daemon=True)
    lander.start()
    kills = 0
    while not done.is_set() or kills < 3:
        p.start()
        time.sleep(rng.uniform(1.0, 3.0))
        p.kill()
        kills += 1
    lander.join()
    p.start()
    try:
        wait_until(lambda: settled(p, len(partitions)), timeout=90, interval=0.5)
    finally:
        assert p.stop() == 0
    check_once(p, set(partitions))
