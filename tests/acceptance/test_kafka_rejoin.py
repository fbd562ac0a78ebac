"""A single Kafka worker killed with SIGKILL and restarted: the log says what it waits for
(the group join) and for how long, with and without `group_instance_id` (static
membership); each prints the measured join times."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.acceptance.harness import Project, wait_until
from tests.services.kafka import KafkaBroker

PIPELINE = """
name: rejoin
sensors:
  stream:
    type: kafka
    bootstrap_servers: {bootstrap}
    topic: {topic}
    session_timeout: 6s
    heartbeat_interval: 500ms{static}
datasets:
  a: {{sensor: stream, partition: {{p: payload.p}}}}
rules:
  each:
    when: {{any: [a]}}
    run: {{command: ["true"]}}
"""


def waited(p: Project, log: int) -> list[dict[str, Any]]:
    """The ``sensor_waited`` lines of the worker's log number ``log``."""
    return [
        json.loads(line)
        for line in p.logs[log].read_text().splitlines()
        if '"sensor_waited"' in line
    ]


def rejoin_seconds(tmp_path: Path, broker: KafkaBroker, static: str) -> tuple[float, float]:
    """Start, SIGKILL, restart a worker; the seconds its group join took each time."""
    topic = broker.topic(2)
    text = PIPELINE.format(bootstrap=broker.bootstrap, topic=topic, static=static)
    p = Project(tmp_path, text)
    p.start()
    [first] = wait_until(lambda: waited(p, 0), timeout=60)
    waiting = [e for e in p.log_events() if e["event"] == "sensor_waiting"]
    assert waiting[0]["waiting_for"] == "kafka group join"
    assert waiting[0]["group"] == "eventflow.rejoin.stream"
    p.kill()
    p.start()
    [second] = wait_until(lambda: waited(p, 1), timeout=60)
    assert p.stop() == 0
    print(
        f"group join{' (static)' if static else ''}: first {first['seconds']} s,"
        f" after SIGKILL {second['seconds']} s"
    )
    return first["seconds"], second["seconds"]


def test_the_rejoin_after_a_kill_is_logged_with_its_duration(
    tmp_path: Path, kafka_broker: KafkaBroker
) -> None:
    """The restarted worker logs `sensor_waiting` (kafka group join) and then
    `sensor_waited` with the seconds it took (tansu holds every join 3 s; it does not wait
    for the killed member's session)."""
    first, again = rejoin_seconds(tmp_path, kafka_broker, "")
    assert 0 < first < 60  # a bound against a hang, not a speed check (see the benchmarks)
    assert 0 < again < 60


def test_static_membership_rejoins_after_a_kill(tmp_path: Path, kafka_broker: KafkaBroker) -> None:
    """With `group_instance_id` the worker joins, and after a SIGKILL rejoins under the same
    instance id (not fenced off by its dead self). tansu 0.6 accepts static members but
    gains nothing from them: each join took 6 s here against 3 s without (2026-12-02)."""
    first, again = rejoin_seconds(tmp_path, kafka_broker, "\n    group_instance_id: worker-1")
    assert 0 < first < 60  # a bound against a hang, not a speed check (see the benchmarks)
    assert 0 < again < 60
