"""Two ``eventflow run`` workers on one PostgreSQL store share a topic through the Kafka
consumer group; when one is SIGKILLed, its partitions move to the other without a lost or
a double-processed message."""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path

import pytest

from tests.acceptance.harness import Project, lines, wait_until
from tests.acceptance.test_kafka import counts
from tests.services.kafka import KafkaBroker

PIPELINE = """
name: kafka_group
state: {dsn}
sensors:
  stream:
    type: kafka
    bootstrap_servers: {bootstrap}
    topic: {topic}
    session_timeout: 6s
    heartbeat_interval: 500ms
datasets:
  a: {{sensor: stream, partition: {{p: payload.p}}}}
rules:
  each:
    when: {{any: [a]}}
    run: {{python: "tasks:record"}}
engine: {{poll_interval: 100ms}}
"""

MESSAGES = 600

TASKS = """
from pathlib import Path

async def record(ctx):
    with (Path(__file__).parent.parent / "runs.log").open("a") as out:
        out.write(f"{ctx.run_id} {ctx.partition['p']} {ctx.attempt}\\n")
"""


def assigned(p: Project, log: int) -> list[list[str]]:
    """The partition sets the worker writing log number ``log`` was given, in order."""
    out = []
    for line in p.logs[log].read_text().splitlines():
        if '"kafka_partitions_assigned"' in line:
            out.append(json.loads(line)["partitions"])
    return out


@pytest.mark.slow
def test_two_workers_split_partitions_and_take_over(
    tmp_path: Path, kafka_broker: KafkaBroker, postgres_dsn: str
) -> None:
    """Both workers get partitions; after one is killed the other owns all three, and every
    message fired its run exactly once."""
    b = kafka_broker
    topic = b.topic(3)
    # A short worker lease: the killed worker's running runs go back to pending sooner.
    dsn = postgres_dsn + ("&" if "?" in postgres_dsn else "?") + "lease=5"
    text = PIPELINE.format(dsn=dsn, bootstrap=b.bootstrap, topic=topic)
    workers = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "tasks.py").write_text(TASKS)
        workers.append(Project(tmp_path / name, text))
    first, second = workers
    first.start()
    wait_until(lambda: assigned(first, 0), timeout=30)
    second.start()
    wait_until(lambda: assigned(second, 0), timeout=30)
    wait_until(lambda: len(assigned(first, 0)) >= 2, timeout=30)  # after the rebalance
    split = (assigned(first, 0)[-1], assigned(second, 0)[-1])
    assert sorted(split[0] + split[1]) == [f"{topic}/{i}" for i in range(3)]

    def produce(start: int, stop: int) -> None:
        for first_of in range(start, stop, 50):
            chunk = range(first_of, first_of + 50)
            b.produce(topic, [(i % 3, json.dumps({"p": f"k{i}"}).encode()) for i in chunk])
            time.sleep(0.2)

    half = MESSAGES // 2
    produce(0, half)  # both workers process their partitions
    wait_until(lambda: counts(second).get("events", 0) == half, timeout=30)
    first.kill()
    produce(half, MESSAGES)  # the killed worker's partition gets records only the other can read
    wait_until(lambda: counts(second).get("runs_succeeded") == MESSAGES, timeout=60, interval=0.5)
    taken = set().union(*assigned(second, 0))  # the killed worker's partitions moved here
    assert sorted(taken) == [f"{topic}/{i}" for i in range(3)]
    assert second.stop() == 0
    runs = second.runs()
    by_key = collections.Counter(r["partition"]["p"] for r in runs)
    assert set(by_key) == {f"k{i}" for i in range(MESSAGES)}, "a message fired no run"
    assert max(by_key.values()) == 1, "a message fired twice"
    run_ids = {r["partition"]["p"]: r["run_id"] for r in runs}
    for line in lines(tmp_path / "runs.log"):  # a task may run again, with the same run id
        run_id, key, _attempt = line.split()
        assert run_ids[key] == run_id
    assert counts(second)["events"] == MESSAGES
    committed = b.committed("eventflow.kafka_group.stream", topic, 3)
    assert sum(committed.values()) == MESSAGES
    per_partition = collections.Counter(i % 3 for i in range(MESSAGES))
    assert committed == dict(per_partition)
