"""The MQTT sensor through the real CLI against a real mosquitto: topic templates and a join
with a directory dataset, messages published while eventflow is stopped, SIGKILL at random
moments while 5,000 QoS 1 messages flow (also with broker restarts), and two workers on a
shared subscription sharing a PostgreSQL store."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.acceptance.harness import Project, lines, wait_until
from tests.services.mqtt import Broker, Mosquitto

_ids = itertools.count()

TASKS = """
import pathlib

async def record(ctx):
    with open(pathlib.Path(__file__).parent / "runs.log", "a") as f:
        f.write(f"{ctx.run_id} {ctx.partition['n']} {ctx.attempt}\\n")
"""


def publish(broker: Broker, messages: list[tuple[str, str]], *, pace: float = 0.0) -> None:
    """Publish at QoS 1, each until the broker acknowledged it (retrying across outages)."""

    async def main() -> None:
        pending = list(messages)
        while pending:
            try:
                async with aiomqtt.Client(broker.host, broker.port, timeout=5) as client:
                    while pending:
                        topic, payload = pending[0]
                        await client.publish(topic, payload, qos=1)
                        pending.pop(0)
                        if pace and len(pending) % 25 == 0:
                            await asyncio.sleep(pace)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    asyncio.run(main())


def subscribed(p: Project, count: int = 1) -> bool:
    return sum(e.get("event") == "mqtt_subscribed" for e in p.log_events()) >= count


def connected_now(p: Project) -> bool:
    """The running process has subscribed (read from its own log only)."""
    text = p.logs[-1].read_text(errors="replace") if p.logs else ""
    return '"mqtt_subscribed"' in text


def counts(p: Project) -> dict[str, int]:
    try:
        return p.status()["counts"]
    except AssertionError:
        return {}


def settled(p: Project, runs: int) -> bool:
    c = counts(p)
    return (
        c.get("runs_succeeded") == runs
        and c.get("runs_pending") == 0
        and c.get("runs_running") == 0
    )


def test_topic_templates_join_a_directory_dataset_once_per_key(
    tmp_path: Path, mqtt_broker: Broker
) -> None:
    """`plant/{plant}/line/{line}/ready` gives the partition key; joined with files in a
    directory, each key fires once, also when the MQTT message comes twice; a message that
    is not JSON is dead-lettered and the others go on."""
    root = f"acc{next(_ids)}-{time.time_ns()}"
    p = Project(
        tmp_path,
        f"""
name: mqttjoin{next(_ids)}
sensors:
  plant: {{type: mqtt, host: {mqtt_broker.host}, port: {mqtt_broker.port},
          topic: "{root}/plant/+/line/+/ready", qos: 1}}
  landing: {{type: directory, path: ./landing, ready: {{stable_for: 200ms}}}}
datasets:
  ready: {{sensor: plant, key: "{root}/plant/{{plant}}/line/{{line}}/ready",
          where: "payload.status == 'ok'"}}
  files: {{sensor: landing, key: "{{plant}}/{{line}}.csv"}}
rules:
  report:
    when: {{all: [ready, files], by: [plant, line]}}
    run: {{command: [sh, -c, "echo $EVENTFLOW_VAR_PLANT $EVENTFLOW_VAR_LINE >> runs.log"]}}
engine: {{poll_interval: 100ms}}
""",
    )
    p.start()
    try:
        wait_until(lambda: subscribed(p), timeout=30)
        ok = json.dumps({"status": "ok"})
        t = f"{root}/plant/{{}}/line/{{}}/ready"
        publish(
            mqtt_broker,
            [
                (t.format("p1", "l1"), ok),
                (t.format("p1", "l1"), ok),  # the device said it twice
                (t.format("p1", "l2"), ok),
                (t.format("p2", "l1"), json.dumps({"status": "pending"})),
                (t.format("p3", "l1"), "not json"),
                (t.format("p3", "l2"), ok),
            ],
        )
        for name in ("p1/l1.csv", "p1/l2.csv", "p2/l1.csv", "p3/l2.csv"):
            p.land(name)
        wait_until(lambda: settled(p, 3), timeout=30, interval=0.3)
        time.sleep(0.5)
    finally:
        assert p.stop() == 0
    fired = sorted(lines(tmp_path / "runs.log"))
    assert fired == ["p1 l1", "p1 l2", "p3 l2"]
    assert counts(p)["deadletters"] == 1


def test_messages_published_while_stopped_are_processed_once_after_start(
    tmp_path: Path, mqtt_broker: Broker
) -> None:
    """QoS 1 messages published while eventflow is stopped are processed when it starts,
    and not again at the next start."""
    root = f"away{next(_ids)}-{time.time_ns()}"
    p = Project(tmp_path, crash_pipeline(mqtt_broker, root, f"away{next(_ids)}"))
    (tmp_path / "tasks.py").write_text(TASKS)
    p.start()
    wait_until(lambda: subscribed(p), timeout=30)
    assert p.stop() == 0
    publish(mqtt_broker, [(f"{root}/m/{i}", json.dumps({"n": i})) for i in range(50)])
    p.start()
    try:
        wait_until(lambda: settled(p, 50), timeout=30, interval=0.3)
    finally:
        assert p.stop() == 0
    p.start()
    try:
        wait_until(lambda: subscribed(p, 3), timeout=30)
        time.sleep(1.0)
    finally:
        assert p.stop() == 0
    check_once(p, 50)


def crash_pipeline(broker: Broker, root: str, name: str, **sensor: str) -> str:
    extra = "".join(f", {k}: {v}" for k, v in sensor.items())
    return f"""
name: {name}
sensors:
  plant: {{type: mqtt, host: {broker.host}, port: {broker.port}, topic: "{root}/m/+",
          qos: 1, reconnect_max: 1s{extra}}}
datasets:
  ready: {{sensor: plant, key: "{root}/m/{{n}}"}}
rules:
  fire:
    when: {{all: [ready]}}
    run: {{python: "tasks:record"}}
engine: {{poll_interval: 100ms, max_runs: 32}}
"""


def check_once(p: Project, n: int) -> None:
    """Every message's partition fired exactly once (one run, generation 1); a task that
    ran again after a crash ran with the same run id."""
    runs = p.runs()
    by_partition = collections.Counter(r["partition"]["n"] for r in runs)
    assert set(by_partition) == {str(i) for i in range(n)}, "a message is missing"
    assert max(by_partition.values()) == 1, "a partition fired twice"
    assert {r["generation"] for r in runs} == {1}
    assert {r["status"] for r in runs} == {"succeeded"}
    run_ids = {r["partition"]["n"]: r["run_id"] for r in runs}
    for line in lines(p.root / "runs.log"):
        run_id, part, _attempt = line.split()
        assert run_ids[part] == run_id


def crash_loop(
    p: Project, broker: Broker, root: str, n: int, rng: random.Random, restart_broker: bool
) -> int:
    """Publish ``n`` messages while SIGKILLing eventflow (and restarting the broker)."""
    p.start()
    wait_until(lambda: subscribed(p), timeout=30)
    messages = [(f"{root}/m/{i}", json.dumps({"n": i, "batch_id": f"b{i}"})) for i in range(n)]
    # About 8 s of messages (plus the outages), so that the kills fall while they flow.
    publisher = threading.Thread(target=publish, args=(broker, messages), kwargs={"pace": 0.04})
    publisher.start()
    kills = restarts = 0
    while publisher.is_alive() or kills < 3:
        time.sleep(rng.uniform(0.5, 2.0))
        if restart_broker and isinstance(broker, Mosquitto) and (kills + restarts) % 3 == 1:
            wait_until(lambda: connected_now(p), timeout=30)
            broker.restart()  # while eventflow runs: it must reconnect
            restarts += 1
            continue
        p.kill()
        kills += 1
        p.start()
    publisher.join()
    return kills


@pytest.mark.slow
def test_random_sigkills_while_5000_qos1_messages_flow(tmp_path: Path, mqtt_broker: Broker) -> None:
    """SIGKILL at random moments while 5,000 QoS 1 messages flow: after the last restart
    none is missing and no partition fired twice (dedupe by topic + payload digest)."""
    root = f"crash{next(_ids)}-{time.time_ns()}"
    p = Project(tmp_path, crash_pipeline(mqtt_broker, root, f"crash{next(_ids)}"))
    (tmp_path / "tasks.py").write_text(TASKS)
    kills = crash_loop(p, mqtt_broker, root, 5000, random.Random(5), restart_broker=False)
    try:
        wait_until(lambda: settled(p, 5000), timeout=90, interval=0.5)
    finally:
        assert p.stop() == 0
    assert kills >= 3
    check_once(p, 5000)


@pytest.mark.slow
def test_random_sigkills_and_broker_restarts_while_5000_messages_flow(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The same while the broker is restarted mid-stream (its sessions persisted), with ids
    from the payload (`id: payload.batch_id`)."""
    root = f"brk{next(_ids)}-{time.time_ns()}"
    pipeline = crash_pipeline(mosquitto, root, f"brk{next(_ids)}", id="payload.batch_id")
    p = Project(tmp_path, pipeline)
    (tmp_path / "tasks.py").write_text(TASKS)
    crash_loop(p, mosquitto, root, 5000, random.Random(7), restart_broker=True)
    try:
        wait_until(lambda: settled(p, 5000), timeout=90, interval=0.5)
    finally:
        assert p.stop() == 0
    check_once(p, 5000)
    assert any(e.get("event") == "mqtt_disconnected" for e in p.log_events())


def test_two_workers_on_a_shared_subscription_split_the_messages(
    tmp_path: Path, mqtt_broker: Broker, postgres_dsn: str
) -> None:
    """Two `eventflow run` processes on one PostgreSQL store and one shared subscription
    each take part of the messages; together every partition fires once."""
    root = f"share{next(_ids)}-{time.time_ns()}"
    text = crash_pipeline(
        mqtt_broker,
        root,
        f"share{next(_ids)}",
        share_group="workers",
        client_id='"ef-${WORKER:-cli}"',
    )
    text = f"state: {postgres_dsn}\n" + text
    workers: list[Project] = []
    for w in ("a", "b"):
        (tmp_path / w).mkdir()
        (tmp_path / w / "tasks.py").write_text(TASKS)
        workers.append(Project(tmp_path / w, text))
    for w, p in zip("ab", workers, strict=True):
        p.start(WORKER=w)
    for p in workers:
        wait_until(lambda p=p: subscribed(p), timeout=30)
    publish(mqtt_broker, [(f"{root}/m/{i}", json.dumps({"n": i})) for i in range(200)])
    try:
        wait_until(lambda: settled(workers[0], 200), timeout=60, interval=0.5)
    finally:
        for p in workers:
            assert p.stop() == 0
    received: list[Any] = []
    for p in workers:
        events = [e for e in p.log_events() if e.get("event") == "pipeline_stopped"]
        received.append(events[-1]["events"])
    assert all(r > 0 for r in received), f"each worker takes a share: {received}"
    runs = workers[0].runs()
    by_partition = collections.Counter(r["partition"]["n"] for r in runs)
    assert set(by_partition) == {str(i) for i in range(200)}
    assert max(by_partition.values()) == 1


def test_publish_task_and_completion_events_go_to_mqtt(tmp_path: Path, mqtt_broker: Broker) -> None:
    """A rule's `publish` task sends its message through the MQTT sender, and completion
    events go to the MQTT publisher's topic template, retained: a subscriber that comes after
    the run sees the latest status of the partition."""
    root = f"pub{next(_ids)}-{time.time_ns()}"
    p = Project(
        tmp_path,
        f"""
name: mqttpub{next(_ids)}
sensors:
  landing: {{type: directory, path: ./landing, ready: {{stable_for: 100ms}}}}
datasets:
  recipe: {{sensor: landing, key: "{{plant}}/recipe.json"}}
rules:
  start_line:
    when: {{all: [recipe]}}
    run:
      publish:
        mqtt: {{host: {mqtt_broker.host}, port: {mqtt_broker.port}, qos: 1}}
        topic: "{root}/plant/{{plant}}/start"
        payload: {{run_id: "{{run_id}}", plant: "{{plant}}"}}
publish:
  - {{type: mqtt, host: {mqtt_broker.host}, port: {mqtt_broker.port},
     topic: "{root}/events/{{rule}}/{{plant}}/{{status}}", retain: true, types: [eventflow.run.*]}}
engine: {{poll_interval: 100ms}}
""",
    )

    async def listen() -> list[Any]:
        got: list[Any] = []
        v5 = aiomqtt.ProtocolVersion.V5
        async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, protocol=v5) as client:
            await client.subscribe(f"{root}/plant/+/start", qos=1)
            ready.set()
            async with asyncio.timeout(30):
                async for message in client.messages:
                    got.append(message)
                    return got
        return got

    ready = threading.Event()
    result: list[Any] = []
    listener = threading.Thread(target=lambda: result.extend(asyncio.run(listen())))
    listener.start()
    assert ready.wait(10)
    p.start()
    try:
        p.land("p7/recipe.json", "{}")
        listener.join(40)
        wait_until(lambda: settled(p, 1), timeout=30, interval=0.3)
        wait_until(lambda: counts(p).get("outbox") == 0, timeout=30, interval=0.3)
    finally:
        assert p.stop() == 0
    [message] = result
    [run] = p.runs()
    assert json.loads(message.payload) == {"run_id": run["run_id"], "plant": "p7"}
    assert dict(message.properties.UserProperty)["eventflow-run-id"] == run["run_id"]

    async def late_subscriber() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as client:
            await client.subscribe(f"{root}/events/#", qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    async for m in client.messages:
                        seen[m.topic.value] = json.loads(m.payload)
        return seen

    seen = asyncio.run(late_subscriber())
    latest = seen[f"{root}/events/start_line/p7/succeeded"]
    assert latest["type"] == "eventflow.run.succeeded"
    assert latest["data"]["run_id"] == run["run_id"]
