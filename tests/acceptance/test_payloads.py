"""The real ``eventflow run`` hands a Kafka message's fields to tasks: through
``EVENTFLOW_EVENTS`` and ``params`` to a command (the same on its retry), through the
context to a Python task, through a ``params`` template to an HTTP body and URL; an
oversize message is cut at ``engine.payload_max_bytes`` and says so."""

from __future__ import annotations

import asyncio
import http.server
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.harness import Project, wait_until
from tests.services.kafka import KafkaBroker

TASKS = """
import json

def record(ctx):
    with open("py.json", "w") as out:
        json.dump({"events": [e.to_dict() for e in ctx.events], "params": dict(ctx.params),
                   "payloads": ctx.payloads("batches")}, out)
"""

COPY = """
import os, shutil, sys
attempt = os.environ["EVENTFLOW_ATTEMPT"]
shutil.copy(os.environ["EVENTFLOW_EVENTS"], f"{sys.argv[1]}-{attempt}.json")
with open(f"{sys.argv[1]}-{attempt}.args", "w") as out:
    out.write("\\n".join([*sys.argv[2:], os.environ.get("EVENTFLOW_VAR_BATCH_ID", "-")]))
sys.exit(1 if attempt == "1" and sys.argv[1] == "cmd" else 0)
"""

PIPELINE = """
name: payloads
engine: {{poll_interval: 100ms, payload_max_bytes: 2048}}
sensors:
  stream: {{type: kafka, bootstrap_servers: {bootstrap}, topic: {topic}, consumer_group: false}}
datasets:
  batches: {{sensor: stream, where: "payload.kind == 'batch'", partition: {{dt: payload.dt}}}}
  big: {{sensor: stream, where: "payload.kind == 'big'", partition: {{dt: payload.dt}}}}
rules:
  cmd:
    when: {{any: [batches]}}
    params: {{batch_id: batches.payload.batch_id, files: "inputs[0].payload.files"}}
    run:
      command: [{python}, keep_events.py, cmd, "{{batch_id}}", "{{files}}"]
      retries: 1
      backoff: {{initial: 100ms, jitter: false}}
  py:
    when: {{any: [batches]}}
    params: {{batch_id: batches.payload.batch_id}}
    run: {{python: "tasks:record"}}
  hook:
    when: {{any: [batches]}}
    params:
      batch_id: batches.payload.batch_id
      first: "inputs[0].payload.files[0]"
      trace: "batches.attributes.headers.trace"
    run:
      http:
        url: "http://127.0.0.1:{port}/batches/{{first}}?id={{batch_id}}"
        json: {{batch: "{{batch_id}}", file: "{{first}}", trace: "{{trace}}", dt: "{{dt}}"}}
  bigcmd:
    when: {{any: [big]}}
    run: {{command: [{python}, keep_events.py, big]}}
"""


class Receiver(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append({"path": self.path, "body": json.loads(body)})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (Receiver,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()


async def send(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes, Any]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send_and_wait(topic, value, key=key, headers=headers, partition=0)
    finally:
        await producer.stop()


def test_kafka_message_fields_reach_command_python_and_http_tasks(
    tmp_path: Path, kafka_broker: KafkaBroker, receiver: tuple[int, list[dict[str, Any]]]
) -> None:
    """A Kafka message's body, key and headers reach a command through EVENTFLOW_EVENTS
    and params (identical on the retry), a Python task through its context and an HTTP
    request through params (URL-encoded in the URL); an oversize message is cut at the cap
    with payload_truncated and its size."""
    port, received = receiver
    b = kafka_broker
    topic = b.topic(1)
    p = Project(
        tmp_path,
        PIPELINE.format(bootstrap=b.bootstrap, topic=topic, port=port, python=sys.executable),
    )
    (tmp_path / "tasks.py").write_text(TASKS)
    (tmp_path / "keep_events.py").write_text(COPY)
    message = {
        "kind": "batch",
        "dt": "2024-01-01",
        "batch_id": "b-42",
        "files": ["in/a b.csv", "in/c.csv"],
    }
    big = {"kind": "big", "dt": "2024-01-01", "blob": "x" * 5000}
    asyncio.run(
        send(
            b.bootstrap,
            topic,
            [
                (b"k-1", json.dumps(message).encode(), [("trace", b"t-7")]),
                (b"k-2", json.dumps(big).encode(), []),
            ],
        )
    )
    p.start()
    wait_until(lambda: len([r for r in p.runs() if r["status"] == "succeeded"]) == 4, timeout=60)
    assert p.stop() == 0

    # The command, both attempts: the same items, the message's fields as params.
    first = json.loads((tmp_path / "cmd-1.json").read_text())
    assert json.loads((tmp_path / "cmd-2.json").read_text()) == first
    [item] = first
    assert item["payload"] == message
    assert item["key"] == "k-1"
    assert item["attributes"]["headers"] == {"trace": "t-7"}
    assert item["dataset"] == "batches"
    assert item["position"] == {"topic": topic, "partition": 0, "offset": 0}
    args = (tmp_path / "cmd-2.args").read_text().split("\n")
    assert args == ["b-42", json.dumps(message["files"], separators=(",", ":")), "b-42"]

    # The Python task's context.
    seen = json.loads((tmp_path / "py.json").read_text())
    assert seen["events"][0]["payload"] == message
    assert seen["payloads"] == [message]
    assert seen["params"] == {"batch_id": "b-42"}

    # The HTTP task: params in the body as they are, in the URL percent-encoded.
    [request] = received
    assert request["path"] == "/batches/in%2Fa%20b.csv?id=b-42"
    assert request["body"] == {
        "batch": "b-42",
        "file": "in/a b.csv",
        "trace": "t-7",
        "dt": "2024-01-01",
    }

    # The oversize message: cut at the cap, marked, still valid JSON.
    [cut] = json.loads((tmp_path / "big-1.json").read_text())
    size = len(json.dumps(big, separators=(",", ":")))
    assert cut["payload_truncated"] is True
    assert cut["payload_bytes"] == size
    assert isinstance(cut["payload"], str)
    assert len(cut["payload"].encode()) == 2048
    assert json.dumps(big, separators=(",", ":")).startswith(cut["payload"])
