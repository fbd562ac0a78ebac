"""Pure parts of the MQTT plugin: config validation, client ids, dedupe positions, topics."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from eventflow import backoff
from eventflow.errors import SensorError
from eventflow.events import Event
from eventflow.testing import RecordingContext
from eventflow.types import PluginEnv
from eventflow_sensors.mqtt.client import stable_client_id
from eventflow_sensors.mqtt.dedupe import Window
from eventflow_sensors.mqtt.sensor import MqttPublisher, MqttSensor, MqttSensorConfig

ENV = PluginEnv("plants", Path("."))


def config(**kw: Any) -> MqttSensorConfig:
    return MqttSensorConfig.model_validate({"type": "mqtt", "topic": "a/+", **kw})


@pytest.mark.parametrize(
    "bad",
    ["a/b#", "a/#/b", "a+/b", "", "$share/g", "$share//a", "$share/g/"],
)
def test_invalid_topic_filters_are_config_errors(bad: str) -> None:
    """Misplaced wildcards and malformed shared subscriptions are rejected with a reason."""
    with pytest.raises(ValidationError):
        config(topic=bad)


def test_filters_take_the_share_group_prefix() -> None:
    """`share_group` prefixes each filter with `$share/GROUP/`, once."""
    cfg = config(topic=["a/+", "$share/x/b/#"], share_group="workers")
    assert cfg.filters == ("$share/workers/a/+", "$share/x/b/#")
    with pytest.raises(ValidationError):
        config(share_group="a/b")


def test_password_is_secret_and_port_defaults_follow_tls() -> None:
    """The password never shows in a repr; the port is 1883, or 8883 with TLS."""
    cfg = config(password="hunter2")
    assert "hunter2" not in repr(cfg)
    assert cfg.effective_port == 1883
    assert config(tls={}).effective_port == 8883
    with pytest.raises(ValidationError):
        config(tls={"cert_file": "c.pem"})


def test_client_ids_are_stable_and_bounded() -> None:
    """The sensor's client id derives from pipeline and sensor (plus the host for shared
    subscriptions), is made of safe characters and fits 64 characters."""
    assert MqttSensor("plant", {"type": "mqtt", "topic": "a"}, ENV).client_id == (
        "eventflow-plants-plant"
    )
    shared = MqttSensor("plant", {"type": "mqtt", "topic": "a", "share_group": "g"}, ENV)
    assert shared.client_id.startswith("eventflow-plants-plant-")
    assert shared.scale_out == "shared"
    assert MqttSensor("plant", {"type": "mqtt", "topic": "a"}, ENV).scale_out == "exclusive"
    long = stable_client_id("p" * 80, "s/é")
    assert len(long) <= 64
    assert long == stable_client_id("p" * 80, "s/é")
    assert stable_client_id("x", "s/é") == "eventflow-x-s__"


def test_window_gives_one_position_within_the_window_and_a_new_one_after() -> None:
    """The same payload on the same topic keeps its first-seen time within the window; a
    different topic or payload, or the same after the window, gets a new position."""
    w = Window(60.0, {})
    p1, key, seen = w.position("a/b", b"x", 1_000)
    assert (seen, p1["first_seen"]) == (1_000, 1_000)
    assert w.position("a/b", b"x", 50_000)[0] == p1
    assert w.position("a/c", b"x", 50_000)[0] != p1
    assert w.position("a/b", b"y", 50_000)[0] != p1
    later, _, seen2 = w.position("a/b", b"x", 61_000)
    assert later != p1
    assert seen2 == 61_000
    restored = Window(60.0, {key: 1_000})
    assert restored.position("a/b", b"x", 2_000)[0] == p1


def test_window_expires_old_entries() -> None:
    """Entries older than the window are handed out once for forgetting."""
    w = Window(1.0, {"old": 0, "new": 9_500})
    assert w.expired(10_000) == ["old"]
    assert w.expired(10_000) == []  # not again before the next sweep
    assert set(w.first_seen) == {"new"}


def test_backoff_grows_and_is_capped() -> None:
    """Backoff doubles from about 0.1 s (the MQTT sensor's first wait) and never exceeds the cap."""
    rng = random.Random(1)
    delays = [backoff.delay(n, first=0.1, cap=5.0, rng=rng) for n in range(1, 12)]
    assert delays[0] <= 0.1
    assert max(delays) <= 5.0
    assert delays[-1] >= 2.5


def test_publisher_topic_uses_event_fields_and_partition() -> None:
    """The topic template sees the event's kind, status, rule and partition variables."""
    p = MqttPublisher("m", {"type": "mqtt", "topic": "ef/{pipeline}/{rule}/{dt}/{status}"}, ENV)
    event = Event(
        id="1",
        source="/s",
        type="eventflow.run.failed",
        time=datetime.now(UTC),
        data={"rule": "daily", "partition": {"dt": "2024-01-01"}},
    )
    assert p.topic_of(event) == "ef/plants/daily/2024-01-01/failed"


def test_a_refused_subscription_is_a_sensor_error_and_a_downgrade_a_warning() -> None:
    """SUBACK reason codes from 0x80 up fail the sensor naming the filter (it would otherwise
    receive nothing); a granted QoS below the one asked for is logged."""
    sensor = MqttSensor("plant", {"type": "mqtt", "topic": ["a/#", "b/#"], "qos": 1}, ENV)
    ctx = RecordingContext("plant")
    sensor._ctx = ctx
    sensor._log = ctx.log
    with structlog.testing.capture_logs() as logs:
        sensor._check_granted([ReasonCode(PacketTypes.SUBACK, identifier=1), 0])
    assert [e["event"] for e in logs] == ["mqtt_qos_downgraded"]
    assert logs[0]["filter"] == "b/#"
    refused = [1, ReasonCode(PacketTypes.SUBACK, identifier=0x87)]
    with pytest.raises(SensorError, match=r"refused the subscription to 'b/#'.*Not authorized"):
        sensor._check_granted(refused)
    assert ctx.healthy is False
