"""MQTT: publish -> task process start latency, and QoS 1 throughput to a committed checkpoint.

Both run the real ``eventflow run`` against a mosquitto of their own (persistence on, as in
the tests):

- latency: QoS 1 messages published one by one (spaced so each is measured alone); the
  task is ``bash -c 'echo N $EPOCHREALTIME'``, timestamped inside the started process.
- throughput: N QoS 1 messages are queued for eventflow's persistent session while it is
  stopped; then it starts, and the time from its subscription to the last event committed
  in the store (SQLite, read by a second connection) gives messages/s through the datasets
  and the rules (each message opens a partial match of a two-dataset join). Beside it, the
  ceiling: a bare aiomqtt client (MQTT 5, like the sensor) draining the same N queued
  messages, acknowledged by paho on receipt; and between them the sensor alone (no
  engine, each observation acknowledged as soon as it is taken).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchmarks.common import percentiles
from eventflow.testing import RecordingContext, running
from eventflow.types import PluginEnv
from eventflow_sensors.mqtt.sensor import MqttSensor
from tests.services.mqtt import Mosquitto

LATENCY = """
name: mqttlatency
sensors:
  plant: {{type: mqtt, host: 127.0.0.1, port: {port}, topic: "bench/+/ready", qos: 1}}
datasets:
  ready: {{sensor: plant, key: "bench/{{n}}/ready"}}
rules:
  start:
    when: {{any: [ready], by: [n]}}
    run:
      command: [bash, -c, "echo $EVENTFLOW_VAR_N $EPOCHREALTIME >> starts.log"]
engine: {{max_runs: 32, poll_interval: 1s}}
"""

THROUGHPUT = """
name: mqttthroughput
sensors:
  plant: {{type: mqtt, host: 127.0.0.1, port: {port}, topic: "flow/+", qos: 1{extra}}}
datasets:
  ready: {{sensor: plant, key: "flow/{{n}}"}}
  other: {{sensor: plant, key: "never/{{n}}"}}
rules:
  join:
    when: {{all: [ready, other], by: [n]}}
    run: {{command: ["true"]}}
engine: {{poll_interval: 1s}}
"""


def _start(root: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "eventflow", "run", "pipeline.yaml", "--log-format", "json", *extra],
        cwd=root,
        stdout=(root / "eventflow.log").open("ab"),
        stderr=subprocess.STDOUT,
    )


def _subscribed_at(root: Path) -> float | None:
    for line in (root / "eventflow.log").read_text(errors="replace").splitlines()[::-1]:
        if '"mqtt_subscribed"' in line:
            return datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
    return None


def _wait(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise RuntimeError("benchmark timed out")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


async def _publish(
    port: int, messages: list[tuple[str, bytes]], spacing: float = 0.0
) -> list[float]:
    sent = []
    async with aiomqtt.Client("127.0.0.1", port, max_inflight_messages=1000) as client:
        client.pending_calls_threshold = len(messages) + 1  # no warning for a full window
        if spacing:
            for topic, payload in messages:
                sent.append(time.time())
                await client.publish(topic, payload, qos=1)
                await asyncio.sleep(spacing)
        else:
            for start in range(0, len(messages), 500):
                chunk = messages[start : start + 500]
                await asyncio.gather(*(client.publish(t, p, qos=1) for t, p in chunk))
    return sent


def run_latency(messages: int = 500, spacing: float = 0.02) -> dict[str, Any]:
    broker = Mosquitto()
    broker.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "pipeline.yaml").write_text(LATENCY.format(port=broker.port))
            proc = _start(root, "--log-level", "info")
            try:
                _wait(lambda: _subscribed_at(root), 30)
                batch = [(f"bench/{i}/ready", b"{}") for i in range(messages)]
                sent = asyncio.run(_publish(broker.port, batch, spacing))
                starts: dict[str, float] = {}
                log = root / "starts.log"

                def all_started() -> bool:
                    if log.exists():
                        for line in log.read_text().splitlines():
                            n, ts = line.split()
                            starts[n] = float(ts)
                    return len(starts) >= messages

                _wait(all_started, 60)
            finally:
                _stop(proc)
    finally:
        broker.stop()
    delays = [starts[str(i)] - sent[i] for i in range(messages) if str(i) in starts]
    return {"messages": messages, "started": len(starts), **percentiles(delays)}


async def _drain(port: int, n: int, topic: str) -> float:
    """Receive ``n`` queued messages on a persistent MQTT 5 session (as the sensor does by
    default, paho parsing each message's properties); seconds from CONNACK."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    kwargs: dict[str, Any] = {
        "identifier": "bench-bare",
        "protocol": aiomqtt.ProtocolVersion.V5,
        "clean_start": False,
        "properties": props,
    }
    async with aiomqtt.Client("127.0.0.1", port, **kwargs) as client:
        await client.subscribe(topic, qos=1)
    await _publish(port, [(topic.replace("+", str(i)), b'{"x": 1}') for i in range(n)])
    async with aiomqtt.Client("127.0.0.1", port, **kwargs) as client:
        started = time.perf_counter()
        got = 0
        async for _ in client.messages:
            got += 1
            if got == n:
                break
        return time.perf_counter() - started


async def _sensor_alone(port: int, n: int, receive_maximum: int) -> float:
    """The MQTT sensor without an engine: ``n`` queued messages decoded into observations
    and acknowledged as soon as they are taken (what a commit would do); seconds."""
    config = {
        "type": "mqtt",
        "host": "127.0.0.1",
        "port": port,
        "topic": "alone/+",
        "receive_maximum": receive_maximum,
    }
    sensor = MqttSensor("alone", config, PluginEnv("bench", Path(".")))
    ctx = RecordingContext("alone", maxsize=n + 1)
    async with running(sensor, ctx):
        await ctx.wait_healthy(30)
    await _publish(port, [(f"alone/{i}", b'{"x": 1}') for i in range(n)])
    ctx = RecordingContext("alone", maxsize=n + 1)
    async with running(sensor, ctx):
        started = time.perf_counter()
        taken = 0
        while taken < n:
            batch = [await ctx.get(timeout=60), *ctx.take_nowait()]
            ctx.commit(*batch)
            taken += len(batch)
        return time.perf_counter() - started


def run_throughput(messages: int = 20_000, receive_maximum: int = 1000) -> dict[str, Any]:
    broker = Mosquitto()
    broker.start()
    try:
        bare = asyncio.run(_drain(broker.port, messages, "bare/+"))
        alone = asyncio.run(_sensor_alone(broker.port, messages, receive_maximum))
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            extra = f", receive_maximum: {receive_maximum}"
            (root / "pipeline.yaml").write_text(THROUGHPUT.format(port=broker.port, extra=extra))
            proc = _start(root, "--log-level", "info")
            _wait(lambda: _subscribed_at(root), 30)
            _stop(proc)
            batch = [(f"flow/{i}", b'{"x": 1}') for i in range(messages)]
            asyncio.run(_publish(broker.port, batch))
            (root / "eventflow.log").write_text("")
            proc = _start(root, "--log-level", "info")
            db = root / ".eventflow" / "state.db"
            try:
                subscribed = _wait(lambda: _subscribed_at(root), 30)

                def committed() -> float | None:
                    if not db.exists():
                        return None
                    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                        (count,) = conn.execute("SELECT count(*) FROM events").fetchone()
                    return time.time() if count >= messages else None

                done = _wait(committed, 300)
            finally:
                _stop(proc)
    finally:
        broker.stop()
    seconds = done - subscribed
    return {
        "messages": messages,
        "receive_maximum": receive_maximum,
        "seconds": seconds,
        "per_second": messages / seconds,
        "bare_seconds": bare,
        "bare_per_second": messages / bare,
        "sensor_per_second": messages / alone,
    }


def run() -> dict[str, Any]:
    return {"latency": run_latency(), "throughput": run_throughput()}


def report(r: dict[str, Any]) -> str:
    lat, thr = r["latency"], r["throughput"]
    return (
        f"MQTT publish (QoS 1) -> task process start ({lat['started']:,}/{lat['messages']:,}):"
        f" p50 {lat['p50'] * 1000:.1f} ms, p90 {lat['p90'] * 1000:.1f} ms,"
        f" p99 {lat['p99'] * 1000:.1f} ms\n"
        f"MQTT QoS 1 -> rules -> committed checkpoint: {thr['per_second']:,.0f} msg/s"
        f" ({thr['messages']:,} in {thr['seconds']:.2f} s, receive_maximum"
        f" {thr['receive_maximum']}); the sensor alone (no engine):"
        f" {thr['sensor_per_second']:,.0f} msg/s; bare aiomqtt receive:"
        f" {thr['bare_per_second']:,.0f} msg/s"
    )
