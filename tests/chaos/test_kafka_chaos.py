"""Chaos on the Kafka broker under the real ``eventflow run``: the durable broker (noida-db)
SIGKILLed and restarted while records stream in, and a topic deleted and recreated while
eventflow runs and while it is stopped. Every record the topic holds afterwards fires
exactly once, and every outage or reset is visible (health, log, metric).

What the topic holds, not what was sent: noida-db loses the tail of its log in a crash,
records it had acknowledged and eventflow had read. Its log is then shorter than
eventflow's checkpoint, a reset (``log_shorter``) that ``on_reset: reprocess`` answers by
reading the partition again from its beginning, as a new log: a rule keyed by the record's
offset would fire the surviving records again, so the pipeline keys runs by what the
record says (``payload.n``, as ``p``) with ``on_update: ignore``."""

from __future__ import annotations

import json
import operator
import threading
import time
from pathlib import Path

from tests.acceptance.harness import wait_until
from tests.acceptance.test_kafka import project
from tests.chaos.served import (
    Served,
    fired_once,
    leftovers,  # noqa: F401  (autouse)
    logged,
)
from tests.services.kafka import KafkaBroker

PIPELINE = """
name: kafka_chaos
sensors:
  stream: {{type: kafka, bootstrap_servers: {bootstrap}, topic: {topic}{extra}}}
datasets:
  records: {{sensor: stream, partition: {{p: payload.n}}}}
rules:
  each:
    when: {{any: [records]}}
    on_update: ignore
    run: {{python: "tasks:record"}}
engine: {{poll_interval: 100ms}}
"""


def served(root: Path, broker: KafkaBroker, topic: str, extra: str = "") -> Served:
    """The pipeline: one run per record, keyed by the record's ``n``; ``extra`` settings of
    the sensor (``, on_reset: skip``)."""
    text = PIPELINE.format(bootstrap=broker.bootstrap, topic=topic, extra=extra)
    return Served(project(root, text))


def held(broker: KafkaBroker, topic: str, partitions: int) -> set[str]:
    """The ``n`` of every record the topic holds now."""
    return {str(json.loads(r.value)["n"]) for r in broker.read(topic, partitions)}


def stream(broker: KafkaBroker, topic: str, chunks: int, size: int, stop: threading.Event) -> None:
    """Send ``chunks`` chunks of ``size`` records, each again until the broker took it
    (across an outage a chunk may land twice: the test counts what the topic holds)."""
    for chunk in range(chunks):
        batch = [(i % 3, json.dumps({"n": chunk * size + i}).encode()) for i in range(size)]
        while not stop.is_set():
            try:
                broker.produce(topic, batch)
                break
            except Exception:  # the broker is away: the producer's errors vary
                time.sleep(0.2)
        time.sleep(0.05)


def test_broker_sigkilled_and_restarted_while_records_stream(
    tmp_path: Path, durable_kafka: KafkaBroker
) -> None:
    """noida-db is SIGKILLed while records stream into a 3-partition topic, and started
    again on its data directory: the sensor's health goes down and back up in
    ``/api/sensors``, the outage is logged, every record the topic holds fires exactly
    once, and records the broker lost after they fired are accounted for by a logged and
    counted reset."""
    b = durable_kafka
    assert b.restartable, "needs a broker this test can kill (unset EVENTFLOW_TEST_KAFKA)"
    topic = b.topic(3)
    s = served(tmp_path, b, topic)
    p = s.project
    s.start()
    s.wait_health("stream", True)
    stop = threading.Event()
    producer = threading.Thread(target=stream, args=(b, topic, 30, 40, stop), daemon=True)
    producer.start()
    try:
        s.wait_events(300, timeout=30)
        b.kill()
        s.wait_health("stream", False, timeout=30)
        b.start()
        s.wait_health("stream", True, timeout=60)
        producer.join(90)
    finally:
        stop.set()
    assert not producer.is_alive()
    expected = held(b, topic, 3)
    n = operator.itemgetter("p")
    wait_until(lambda: s.settled() and expected <= s.fired(n), timeout=60, interval=0.5)
    resets = s.metric("eventflow_sensor_position_resets_total", sensor="stream")
    assert p.stop() == 0
    lost = fired_once(p, n, expected)
    assert logged(p, "kafka_broker_unreachable", sensor="stream")
    assert logged(p, "kafka_broker_reachable", sensor="stream")
    if lost:  # the broker's log ended before the checkpoint when it came back
        assert logged(p, "kafka_offset_reset", sensor="stream", reason="log_shorter")
        assert resets >= 1


def send_each(broker: KafkaBroker, topic: str, keys: list[str]) -> None:
    """One request per record, in order."""
    for key in keys:
        broker.produce(topic, [(0, json.dumps({"n": key}).encode())])


def test_topic_recreated_while_running_and_while_stopped(
    tmp_path: Path, durable_kafka: KafkaBroker
) -> None:
    """The topic is deleted and recreated under the running process (the sensor reads the
    new log while it is shorter than its position); then again while eventflow is stopped,
    and grows past the old checkpoint. Each time the reset is logged with its reason and
    counted in the metric, every record of the new log fires once, and none of the old
    fires again (`on_reset: reprocess`)."""
    b = durable_kafka
    topic = b.topic(1)
    s = served(tmp_path, b, topic)
    p, p_of = s.project, operator.itemgetter("p")
    old, new, third = (
        [f"{tag}{i}" for i in range(n)] for tag, n in (("old", 4), ("new", 7), ("third", 9))
    )
    send_each(b, topic, old)
    s.start()
    wait_until(lambda: s.fired(p_of) >= set(old), timeout=30, interval=0.3)
    b.recreate(topic)
    send_each(b, topic, new)
    wait_until(lambda: s.fired(p_of) >= {*old, *new}, timeout=30, interval=0.3)
    wait_until(lambda: s.settled(), timeout=30)
    running = s.metric("eventflow_sensor_position_resets_total", sensor="stream")
    assert p.stop() == 0
    b.recreate(topic)
    send_each(b, topic, third)
    s.start()
    wait_until(lambda: s.fired(p_of) >= {*old, *new, *third}, timeout=30, interval=0.3)
    wait_until(lambda: s.settled(), timeout=30)
    stopped = s.metric("eventflow_sensor_position_resets_total", sensor="stream")
    assert p.stop() == 0
    assert not fired_once(p, p_of, {*old, *new, *third})
    resets = logged(p, "kafka_offset_reset", sensor="stream", policy="reprocess")
    assert [r["reason"] for r in resets] == ["log_shorter", "recreated"]
    assert (running, stopped) == (1, 1)
