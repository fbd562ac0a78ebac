"""MQTT over TLS with a user name and password from the environment, against a mosquitto
that requires both; the password never reaches a log line or an error."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import aiomqtt
import structlog

from eventflow.config.loader import load_pipeline
from eventflow.testing import RecordingContext, running
from eventflow.types import OutgoingMessage, PluginEnv
from eventflow_sensors.mqtt.sensor import MqttSender, MqttSensor
from tests.services.mqtt import SECURE_PASSWORD, SECURE_USER, Mosquitto

PIPELINE = """
name: secure{n}
sensors:
  plant:
    type: mqtt
    host: 127.0.0.1
    port: {port}
    tls: {{ca_file: {ca}}}
    username: ${{MQTT_USERNAME}}
    password: ${{MQTT_PASSWORD}}
    topic: "{topic}"
    reconnect_max: 200ms
datasets:
  ready: {{sensor: plant, key: "{topic}"}}
rules:
  r: {{when: {{all: [ready]}}, run: {{command: ["true"]}}}}
"""


def sensor_from_file(tmp_path: Path, broker: Mosquitto, topic: str, password: str) -> MqttSensor:
    """The sensor as `eventflow run` builds it: the pipeline file with `${VAR}` values."""
    file = tmp_path / "pipeline.yaml"
    file.write_text(
        PIPELINE.format(n=time.time_ns(), port=broker.port, ca=broker.ca_file, topic=topic)
    )
    pipeline = load_pipeline(file, {"MQTT_USERNAME": SECURE_USER, "MQTT_PASSWORD": password})
    spec = pipeline.sensors["plant"]
    return MqttSensor(spec.name, spec.config, PluginEnv(pipeline.name, tmp_path))


async def test_tls_and_password_from_the_environment(
    tmp_path: Path, secure_mosquitto: Mosquitto
) -> None:
    """The sensor connects with TLS (the broker's certificate checked against `ca_file`) and
    the credentials from the environment, receives messages, and logs no password."""
    topic = f"secure/{time.time_ns()}"
    sensor = sensor_from_file(tmp_path, secure_mosquitto, topic, SECURE_PASSWORD)
    assert SECURE_PASSWORD not in repr(sensor.config)
    ctx = RecordingContext("plant")
    context = ssl.create_default_context(cafile=str(secure_mosquitto.ca_file))
    with structlog.testing.capture_logs() as logs:
        async with running(sensor, ctx):
            await ctx.wait_healthy()
            async with aiomqtt.Client(
                "127.0.0.1",
                secure_mosquitto.port,
                username=SECURE_USER,
                password=SECURE_PASSWORD,
                tls_context=context,
            ) as client:
                await client.publish(topic, b'{"ok": true}', qos=1)
            [obs] = await ctx.take(1, commit=True)
    assert obs.payload == {"ok": True}
    assert SECURE_PASSWORD not in repr(logs)


async def test_a_wrong_password_is_reported_without_the_password(
    tmp_path: Path, secure_mosquitto: Mosquitto
) -> None:
    """Refused credentials make the sensor unhealthy with the broker's reason; it retries
    with backoff, and neither its health detail nor its logs contain the password."""
    wrong = "not-the-Pa55word"
    sensor = sensor_from_file(tmp_path, secure_mosquitto, "secure/x", wrong)
    ctx = RecordingContext("plant")
    with structlog.testing.capture_logs() as logs:
        async with running(sensor, ctx):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and len(ctx.health) < 2:
                await ctx.settle(quiet=0.1, timeout=0.2)
    assert ctx.health, "the failure was reported"
    assert not any(ok for ok, _ in ctx.health)
    disconnects = [e for e in logs if e["event"] == "mqtt_disconnected"]
    assert len(disconnects) >= 2, "it retries"
    assert wrong not in repr(logs)
    assert wrong not in repr(ctx.health)


async def test_sender_over_tls_with_password(secure_mosquitto: Mosquitto) -> None:
    """The `publish` task's sender connects with TLS and a password, and is acknowledged."""
    sender = MqttSender(
        {
            "host": "127.0.0.1",
            "port": secure_mosquitto.port,
            "tls": {"ca_file": str(secure_mosquitto.ca_file)},
            "username": SECURE_USER,
            "password": SECURE_PASSWORD,
        },
        PluginEnv("p", Path(".")),
    )
    await sender.open()
    try:
        facts = await sender.send(OutgoingMessage("secure/sent", b"x"))
    finally:
        await sender.close()
    assert facts["qos"] == 1
