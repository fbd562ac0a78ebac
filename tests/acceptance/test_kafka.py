"""The real ``eventflow run`` on Kafka topics: runs fired by messages and watermarks,
dead letters, completion events and ``publish`` tasks to Kafka, and crash safety (SIGKILL
while 10,000 messages flow; a broker restart mid-stream)."""

from __future__ import annotations

import collections
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.harness import Project, lines, wait_until
from tests.services.kafka import KafkaBroker

TASKS = """
async def record(ctx):
    with open("runs.log", "a") as out:
        out.write(f"{ctx.run_id} {ctx.partition['p']} {ctx.attempt}\\n")
"""


def project(root: Path, pipeline: str) -> Project:
    p = Project(root, pipeline)
    (root / "tasks.py").write_text(TASKS)
    return p


def jsons(*values: Any) -> list[bytes]:
    return [json.dumps(v).encode() for v in values]


def counts(p: Project) -> dict[str, int]:
    try:
        return dict(p.status()["counts"])
    except AssertionError:  # the store is busy or not created yet
        return {}


def check_once(p: Project, keys: set[str]) -> None:
    """Every key fired exactly once; a task that ran again did so with the same run id."""
    runs = p.runs()
    by_key = collections.Counter(r["partition"]["p"] for r in runs)
    assert set(by_key) == keys, "a partition did not fire"
    assert max(by_key.values()) == 1, "a partition fired twice"
    run_ids = {r["partition"]["p"]: r["run_id"] for r in runs}
    for line in lines(p.root / "runs.log"):
        run_id, key, _attempt = line.split()
        assert run_ids[key] == run_id


END_TO_END = """
name: kafka_e2e
sensors:
  stream:
    type: kafka
    bootstrap_servers: {bootstrap}
    topic: {topic}
    heartbeat_interval: 300ms
  clock:
    type: kafka
    bootstrap_servers: {bootstrap}
    topic: {clock}
    mode: watermark
    watermark: {{time: payload.ts, window: 1h, idle_timeout: 1s}}
datasets:
  orders: {{sensor: stream, where: "payload.table == 'orders'", partition: {{p: payload.dt}}}}
  stock: {{sensor: stream, where: "payload.table == 'stock'", partition: {{p: payload.dt}}}}
  hours:
    sensor: clock
    key: {clock}
    partition:
      p: "strftime(payload.window_start, '%Y-%m-%dT%H')"
rules:
  daily:
    when: {{all: [orders, stock], by: [p]}}
    run: {{python: "tasks:record"}}
  hourly:
    when: {{any: [hours]}}
    run:
      publish:
        kafka: {{bootstrap_servers: {bootstrap}}}
        topic: {control}
        key: "{{p}}"
        value: {{action: compact, hour: "{{p}}", run_id: "{{run_id}}"}}
publish:
  - {{type: kafka, bootstrap_servers: {bootstrap}, topic: {events}}}
  - {{type: kafka, name: dead_letters, bootstrap_servers: {bootstrap}, topic: {dlq},
     types: [eventflow.event.deadlettered]}}
engine: {{poll_interval: 100ms}}
"""


def test_kafka_pipeline_end_to_end(tmp_path: Path, kafka_broker: KafkaBroker) -> None:
    """Messages on a 3-partition topic fire the right runs; a poison message is dead-lettered
    with its position and the rest go on; watermark windows fire a `publish` task that sends
    to Kafka; completion events reach a Kafka topic as CloudEvents keyed by subject."""
    b = kafka_broker
    topic, clock, control, events = b.topic(3), b.topic(2), b.topic(1), b.topic(1)
    dlq = b.topic(1)
    p = project(
        tmp_path,
        END_TO_END.format(
            bootstrap=b.bootstrap,
            topic=topic,
            clock=clock,
            control=control,
            events=events,
            dlq=dlq,
        ),
    )
    b.produce(
        topic,
        [
            (0, b'{"table": "orders", "dt": "2024-01-01"}'),
            (1, b'{"table": "stock", "dt": "2024-01-01"}'),
            (2, b'{"table": "orders", "dt": "2024-01-02"}'),
            (1, b"{broken"),
            (1, b'{"table": "stock", "dt": "2024-01-02"}'),
            (0, b'{"table": "other", "dt": "2024-01-03"}'),
        ],
    )
    t0 = 1_714_521_600_000  # 2024-05-01T00:00Z
    b.produce(clock, [(0, *jsons({"ts": t0 + 60_000})), (1, *jsons({"ts": t0 + 3_660_000}))])
    p.start()
    # The clock's partition 0 holds hour 00 back until it has been idle for 1s.
    wait_until(lambda: counts(p).get("runs_succeeded") == 3, timeout=30)
    wait_until(lambda: len(b.read(control)) == 1, timeout=30)
    assert p.stop() == 0

    runs = {(r["rule"], r["partition"]["p"]) for r in p.runs()}
    assert runs == {
        ("daily", "2024-01-01"),
        ("daily", "2024-01-02"),
        ("hourly", "2024-05-01T00"),
    }
    status = p.status()
    assert status["counts"]["deadletters"] == 1
    letters = [e for e in p.log_events() if e.get("event") == "event_deadlettered"]
    assert letters[0]["position"] == {"topic": topic, "partition": 1, "offset": 1}
    # The dead-letter topic has it too (a publisher for that event type), with position and error.
    wait_until(lambda: len(b.read(dlq)) == 1, timeout=30)
    (dead,) = [json.loads(r.value) for r in b.read(dlq)]
    assert dead["type"] == "eventflow.event.deadlettered"
    assert dead["data"]["position"] == {"topic": topic, "partition": 1, "offset": 1}
    assert dead["data"]["error"]
    (sent,) = b.read(control)
    assert sent.key == b"2024-05-01T00"
    assert json.loads(sent.value)["action"] == "compact"
    published = b.read(events)
    types = collections.Counter(json.loads(r.value)["type"] for r in published)
    assert types["eventflow.run.succeeded"] == 3
    first = json.loads(published[0].value)
    assert published[0].key == first["subject"].encode()
    assert dict(published[0].headers)["content-type"].startswith(b"application/cloudevents+json")
    committed = b.committed("eventflow.kafka_e2e.stream", topic, 3)
    assert committed == {0: 2, 1: 3, 2: 1}


CRASHY = """
name: kafka_crash
sensors:
  stream:
    type: kafka
    bootstrap_servers: {bootstrap}
    topic: {topic}
    consumer_group: false
  clock:
    type: kafka
    bootstrap_servers: {bootstrap}
    topic: {topic}
    mode: watermark
    watermark: {{time: payload.ts, window: 1h, idle_timeout: 1s}}
datasets:
  a: {{sensor: stream, where: "payload.side == 'a'", partition: {{p: payload.p}}}}
  b: {{sensor: stream, where: "payload.side == 'b'", partition: {{p: payload.p}}}}
  hours:
    sensor: clock
    key: {topic}
    partition: {{p: "strftime(payload.window_start, '%dT%H')"}}
rules:
  join:
    when: {{all: [a, b], by: [p]}}
    on_update: ignore
    run: {{python: "tasks:record"}}
  hourly:
    when: {{any: [hours]}}
    run: {{python: "tasks:record"}}
engine: {{poll_interval: 100ms, batch_size: 500}}
"""

MESSAGES = 10_000
KEYS = 200
T0 = 1_714_521_600_000  # 2024-05-01T00:00Z
STEP = 36_000
"""Event time between messages: 10,000 messages span 100 hours, of which 99 complete."""
HOURS = {f"{1 + h // 24:02d}T{h % 24:02d}" for h in range(99)}


def messages(n: int = MESSAGES, keys: int = KEYS) -> list[tuple[int, bytes]]:
    """``n`` messages over 3 partitions; each key gets both sides, at random places."""
    rng = random.Random(7)
    out = [
        (
            rng.randrange(3),
            json.dumps({"p": f"k{i % keys}", "side": "ab"[i // keys % 2], "ts": T0 + i * STEP}),
        )
        for i in range(n)
    ]
    return [(part, value.encode()) for part, value in out]


def produce_slowly(b: KafkaBroker, topic: str, msgs: list[tuple[int, bytes]], chunks: int) -> None:
    size = len(msgs) // chunks + 1
    for start in range(0, len(msgs), size):
        b.produce(topic, msgs[start : start + size])
        time.sleep(0.25)


def settle(p: Project, events: int, keys: int, timeout: float = 60) -> None:
    def done() -> bool:
        c = counts(p)
        return (
            c.get("events") == events
            and c.get("runs_succeeded") == keys
            and c.get("runs_pending") == 0
            and c.get("runs_running") == 0
        )

    wait_until(done, timeout=timeout, interval=0.3)


@pytest.mark.slow
def test_sigkill_while_10000_messages_flow(tmp_path: Path, kafka_broker: KafkaBroker) -> None:
    """SIGKILL at random moments (and at the commit's crash points) while 10,000 messages
    flow across 3 partitions: afterwards every message is in the event log (none missing
    from the rule state), every key and every hour of the watermark fired exactly once, and
    the offsets are checkpointed."""
    b = kafka_broker
    topic = b.topic(3)
    p = project(tmp_path, CRASHY.format(bootstrap=b.bootstrap, topic=topic))
    msgs = messages()
    producer = threading.Thread(target=produce_slowly, args=(b, topic, msgs, 20), daemon=True)
    producer.start()
    rng = random.Random(11)
    crash_points = ["engine.after_commit:3", "engine.before_commit:5", None, None, None, None]
    for crash_at in crash_points:
        p.start(crash_at=crash_at)
        if crash_at is None:
            time.sleep(rng.uniform(0.8, 2.0))
        else:
            p.wait_exit(timeout=30)
        p.kill()
    producer.join(60)
    p.start()
    settle(p, MESSAGES + len(HOURS), KEYS + len(HOURS), timeout=90)
    assert p.stop() == 0
    check_once(p, {f"k{i}" for i in range(KEYS)} | HOURS)
    assert counts(p)["deadletters"] == 0
    cursor_total = sum(b.committed("eventflow.kafka_crash.stream", topic, 3).values())
    assert cursor_total == MESSAGES


BROKER_RESTART = """
name: kafka_restart
sensors:
  stream:
    type: kafka
    bootstrap_servers: {bootstrap}
    topic: {topic}
    consumer_group: false
datasets:
  a: {{sensor: stream, partition: {{p: payload.p}}}}
rules:
  each:
    when: {{any: [a]}}
    run: {{python: "tasks:record"}}
engine: {{poll_interval: 100ms}}
"""


def test_broker_restart_mid_stream(tmp_path: Path, durable_kafka: KafkaBroker) -> None:
    """The broker (noida-db, durable) stops mid-stream and comes back on the same port: the
    sensor reconnects, nothing is lost, and nothing fires twice; an eventflow crash while
    the broker is away changes nothing either."""
    b = durable_kafka
    topic = b.topic(3)
    p = project(tmp_path, BROKER_RESTART.format(bootstrap=b.bootstrap, topic=topic))
    b.produce(topic, [(i % 3, json.dumps({"p": f"k{i}"}).encode()) for i in range(300)])
    p.start()
    wait_until(lambda: counts(p).get("events") == 300, timeout=30)
    b.stop()
    time.sleep(1.0)
    p.kill()  # and eventflow dies while the broker is away
    p.start()
    time.sleep(1.0)
    b.start()
    b.produce(topic, [(i % 3, json.dumps({"p": f"k{i}"}).encode()) for i in range(300, 600)])
    settle(p, 600, 600, timeout=60)
    assert p.stop() == 0
    check_once(p, {f"k{i}" for i in range(600)})


RECREATED = """
name: kafka_reset
sensors:
  again: {{type: kafka, bootstrap_servers: {bootstrap}, topic: {topic}, consumer_group: false}}
  skipper:
    {{type: kafka, bootstrap_servers: {bootstrap}, topic: {topic}, consumer_group: false,
     on_reset: skip}}
  strict:
    {{type: kafka, bootstrap_servers: {bootstrap}, topic: {topic}, consumer_group: false,
     on_reset: fail}}
datasets:
  a: {{sensor: again, partition: {{p: payload.p}}}}
  s: {{sensor: skipper, partition: {{p: payload.p}}}}
  f: {{sensor: strict, partition: {{p: payload.p}}}}
rules:
  each_a: {{when: {{any: [a]}}, run: {{python: "tasks:record"}}}}
  each_s: {{when: {{any: [s]}}, run: {{python: "tasks:record"}}}}
  each_f: {{when: {{any: [f]}}, run: {{python: "tasks:record"}}}}
engine: {{poll_interval: 100ms}}
"""


def test_recreated_topic_under_each_reset_policy(tmp_path: Path, kafka_broker: KafkaBroker) -> None:
    """The topic is deleted and recreated while eventflow is stopped, and new records reach
    offsets it had read: with `on_reset: reprocess` (the default) every new record fires
    exactly once, with `skip` the skip is logged with its count and later records fire,
    with `fail` the sensor fails naming the partition and checkpoint; each reset is logged."""
    b = kafka_broker
    topic = b.topic(1)
    p = project(tmp_path, RECREATED.format(bootstrap=b.bootstrap, topic=topic))
    old = [f"old{i}" for i in range(3)]
    b.produce(topic, [(0, *jsons({"p": k})) for k in old])
    p.start()
    wait_until(lambda: counts(p).get("runs_succeeded") == 9, timeout=30)
    assert p.stop() == 0
    b.recreate(topic)
    new = [f"new{i}" for i in range(5)]
    for k in new:  # one request each: tansu's end offset is exact then
        b.produce(topic, [(0, *jsons({"p": k}))])
    p.start()
    wait_until(lambda: counts(p).get("runs_succeeded") == 9 + 5, timeout=30)
    wait_until(
        lambda: (
            {e.get("sensor") for e in p.log_events() if e["event"] == "kafka_offset_reset"}
            >= {"again", "skipper", "strict"}
        ),
        timeout=30,
    )
    b.produce(topic, [(0, *jsons({"p": "late"}))])
    wait_until(lambda: counts(p).get("runs_succeeded") == 9 + 5 + 2, timeout=30)
    assert p.stop() == 0

    fired = collections.Counter((r["rule"], r["partition"]["p"]) for r in p.runs())
    assert max(fired.values()) == 1, "a record fired twice"
    assert {k for rule, k in fired if rule == "each_a"} == {*old, *new, "late"}
    assert {k for rule, k in fired if rule == "each_s"} == {*old, "late"}
    assert {k for rule, k in fired if rule == "each_f"} == set(old)
    events = p.log_events()
    by_sensor = {e["sensor"]: e for e in events if e["event"] == "kafka_offset_reset"}
    assert (by_sensor["again"]["policy"], by_sensor["again"]["reason"]) == (
        "reprocess",
        "recreated",
    )
    assert (by_sensor["skipper"]["policy"], by_sensor["skipper"]["skipped"]) == ("skip", 5)
    assert by_sensor["strict"]["checkpoint"] == 3
    failed = [e for e in events if e["event"] == "sensor_failed" and e.get("sensor") == "strict"]
    assert failed
    assert f"partition {topic}/0 no longer holds checkpoint 3" in failed[0]["error"]
