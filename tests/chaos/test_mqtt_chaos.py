"""Chaos on the MQTT broker under the real ``eventflow run``: mosquitto (persistence on)
stopped and started again, twice, while QoS 1 messages are published. The sensor's health
goes down and back up, it reconnects to its persistent session, and each message fires
exactly once: what the broker held for the session while it was away arrives after."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tests.acceptance.harness import Project, wait_until
from tests.acceptance.test_mqtt import TASKS, check_once, crash_pipeline, publish
from tests.chaos.served import Served, leftovers, logged  # noqa: F401  (autouse)
from tests.services.mqtt import Mosquitto

MESSAGES = 600


def test_broker_restarted_while_qos1_messages_are_published(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """mosquitto goes away twice while 600 QoS 1 messages are published (the publisher
    resends what was not acknowledged): ``/api/sensors`` shows the sensor down and up
    again, the disconnection and each resubscription are logged, and every message fired
    exactly once."""
    root = f"chaos-{time.time_ns()}"
    p = Project(tmp_path, crash_pipeline(mosquitto, root, "mqtt_chaos"))
    (tmp_path / "tasks.py").write_text(TASKS)
    s = Served(p)
    s.start()
    s.wait_health("plant", True)
    messages = [(f"{root}/m/{i}", json.dumps({"n": i})) for i in range(MESSAGES)]
    publisher = threading.Thread(target=publish, args=(mosquitto, messages), kwargs={"pace": 0.1})
    publisher.start()
    for outage in (1, 2):
        s.wait_events(outage * MESSAGES // 3)
        mosquitto.stop()  # saves the sessions and the messages queued for them
        s.wait_health("plant", False)
        mosquitto.start()
        s.wait_health("plant", True)
    publisher.join(60)
    assert not publisher.is_alive()
    s.wait_events(MESSAGES)
    wait_until(s.settled, timeout=60)
    assert p.stop() == 0
    check_once(p, MESSAGES)
    assert len(logged(p, "mqtt_disconnected", sensor="plant")) >= 2
    assert len(logged(p, "mqtt_subscribed", sensor="plant")) >= 3
