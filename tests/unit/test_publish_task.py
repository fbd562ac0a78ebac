"""The ``publish`` task: config validation, rendering and encoding, sender lifecycle.

The transports (Kafka, MQTT) are tested against real brokers with their sensors; here an
in-memory sender stands in for them, since what is tested is the task's own logic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from eventflow import registry
from eventflow.tasks.publish import PublishConfig, PublishTask
from eventflow.types import JSON, MessageSender, OutgoingMessage, PluginEnv, RunContext

ENV = PluginEnv("test", Path("/tmp"))


class MemoryConnection(BaseModel):
    fail: bool = False


class MemorySender:
    config_model: ClassVar[type[BaseModel]] = MemoryConnection
    sent: ClassVar[list[OutgoingMessage]] = []
    opened: ClassVar[int] = 0
    closed: ClassVar[int] = 0

    def __init__(self, config: Any, env: PluginEnv) -> None:
        self.config: MemoryConnection = config

    async def open(self) -> None:
        MemorySender.opened += 1

    async def send(self, message: OutgoingMessage) -> dict[str, JSON]:
        if self.config.fail:
            raise ConnectionError("broker went away")
        MemorySender.sent.append(message)
        return {"offset": len(MemorySender.sent) - 1}

    async def close(self) -> None:
        MemorySender.closed += 1


@pytest.fixture(autouse=True)
def memory_sender() -> None:
    registry.senders.register("memory", MemorySender)
    MemorySender.sent.clear()
    MemorySender.opened = MemorySender.closed = 0


def context(tmp_path: Path, attempt: int = 1) -> RunContext:
    variables = {"dt": "2024-01-01", "run_id": "run-1", "rule": "report", "attempt": str(attempt)}
    return RunContext(
        run_id="run-1",
        rule="report",
        attempt=attempt,
        partition={"dt": "2024-01-01"},
        inputs=(),
        events_file=tmp_path / "events.json",
        stdout_path=tmp_path / "out",
        stderr_path=tmp_path / "err",
        timeout=None,
        log_max_bytes=4096,
        variables=variables,
    )


def test_sender_protocol_is_met_by_the_stand_in() -> None:
    assert isinstance(MemorySender(MemoryConnection(), ENV), MessageSender)


async def test_renders_and_encodes_a_json_value(tmp_path: Path) -> None:
    """Topic, key, headers and the strings of the value are templated; a mapping is JSON;
    the run id and attempt ride along as headers."""
    task = PublishTask(
        {
            "publish": {
                "memory": {},
                "topic": "control.{rule}",
                "key": "{dt}",
                "value": {"dt": "{dt}", "n": 3, "run": "{run_id}"},
                "headers": {"source": "eventflow"},
            }
        },
        ENV,
    )
    result = await task.run(context(tmp_path))
    assert result.ok, result.detail
    assert result.output == {"topic": "control.report", "offset": 0}
    [message] = MemorySender.sent
    assert message.topic == "control.report"
    assert message.key == b"2024-01-01"
    assert orjson.loads(message.value) == {"dt": "2024-01-01", "n": 3, "run": "run-1"}
    assert dict(message.headers) == {
        "eventflow-run-id": b"run-1",
        "eventflow-attempt": b"1",
        "source": b"eventflow",
    }
    assert "published to memory topic control.report" in (tmp_path / "out").read_text()
    await task.close()
    assert (MemorySender.opened, MemorySender.closed) == (1, 1)


async def test_payload_is_value_and_a_string_is_sent_as_text(tmp_path: Path) -> None:
    task = PublishTask({"publish": {"memory": None, "topic": "t", "payload": "ready {dt}"}}, ENV)
    assert (await task.run(context(tmp_path))).ok
    assert MemorySender.sent[0].value == b"ready 2024-01-01"
    assert MemorySender.sent[0].key is None


async def test_one_sender_serves_every_run_and_a_failure_reconnects(tmp_path: Path) -> None:
    ok = PublishTask({"publish": {"memory": {}, "topic": "t", "value": 1}}, ENV)
    for attempt in (1, 2):
        assert (await ok.run(context(tmp_path, attempt))).ok
    assert MemorySender.opened == 1
    failing = PublishTask({"publish": {"memory": {"fail": True}, "topic": "t"}}, ENV)
    result = await failing.run(context(tmp_path))
    assert not result.ok
    assert result.detail == "publish to memory topic t failed: broker went away"
    assert MemorySender.closed == 1  # dropped, so the next attempt opens a fresh one
    await failing.run(context(tmp_path))
    assert MemorySender.opened == 3


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"topic": "t"}, "exactly one transport key"),
        ({"memory": {}, "carrier_pigeon": {}, "topic": "t"}, "exactly one transport key"),
        ({"pigeon": {}, "topic": "t"}, "unknown transport `pigeon`"),
        ({"memory": {"fail": "often"}, "topic": "t"}, "valid boolean"),
        ({"memory": {}}, "topic"),
        ({"memory": {}, "topic": "t", "qos": 1}, "exactly one transport key"),
    ],
)
def test_bad_configs_are_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PublishConfig.model_validate({"publish": config})
