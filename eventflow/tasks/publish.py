"""The ``publish`` task: send one message to a broker per attempt (a control message that a
Flink job consumes, a "partition ready" notice for another team).

.. code-block:: yaml

    run:
      publish:
        kafka: {bootstrap_servers: "localhost:9092"}   # the transport and its connection
        topic: control.{rule}
        key: "{dt}"
        value: {action: reprocess, dt: "{dt}", run_id: "{run_id}"}
        headers: {source: eventflow}

    run:
      publish:
        mqtt: {host: localhost, port: 1883, qos: 1}
        topic: plant/{plant}/start
        payload: "{run_id}"

Exactly one transport key names a *sender* plugin (entry-point group ``eventflow.senders``:
``kafka`` and ``mqtt`` ship with eventflow's extras); its model validates the connection
settings. ``value`` (or ``payload``: the same field) is sent as UTF-8 when it is a string and
as JSON otherwise; ``{var}`` in the topic, key, header values and the strings of the value is
replaced by the run's variables. Every message carries the headers ``eventflow-run-id`` and
``eventflow-attempt`` (where the transport has headers), so a consumer can deduplicate the
redelivery that at-least-once execution allows. The attempt succeeds once the broker has
acknowledged the message; what it said (partition and offset, message id) goes to the
attempt's stdout file and the run's output.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from eventflow import registry
from eventflow.errors import ClosedError
from eventflow.lifecycle import Resource
from eventflow.patterns import render, render_deep
from eventflow.tasks import Text
from eventflow.tasks._logs import write_capped
from eventflow.types import MessageSender, OutgoingMessage, PluginEnv, RunContext, TaskResult

_MESSAGE_FIELDS = frozenset({"topic", "key", "value", "payload", "headers"})


class PublishMessage(BaseModel):
    """What a ``publish`` task sends, and through which transport."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transport: str = Field(
        description="The transport key given (`kafka`, `mqtt`, ...): a sender plugin's name."
    )
    connection: Any = Field(description="The transport's settings, validated by its sender.")
    topic: str = Field(description="Topic to send to; `{var}` is replaced.")
    key: Text | None = Field(
        default=None, description="Message key (Kafka); `{var}` is replaced. None: no key."
    )
    value: Any = Field(
        default=None,
        validation_alias=AliasChoices("value", "payload"),
        description="The message (`payload` is the same field): a string is sent as UTF-8,"
        " anything else as JSON; `{var}` in its strings is replaced.",
    )
    headers: dict[str, Text] = Field(
        default_factory=dict, description="Message headers; `{var}` is replaced."
    )

    @model_validator(mode="before")
    @classmethod
    def _transport(cls, data: Any) -> Any:
        """``{kafka: {...}, topic: ...}`` -> ``{transport: kafka, connection: <model>, ...}``."""
        if not isinstance(data, dict) or "transport" in data:
            return data
        names = [k for k in data if k not in _MESSAGE_FIELDS]
        known = registry.senders.names()
        if len(names) != 1:
            found = ", ".join(f"`{n}`" for n in names) or "none"
            raise ValueError(
                f"`publish` needs exactly one transport key ({', '.join(known) or 'none'}"
                f" installed), found {found}"
            )
        name = names[0]
        if name not in known:
            raise ValueError(
                f"unknown transport `{name}`: installed are {', '.join(known) or 'none'}"
                " (is its extra installed, e.g. pip install 'eventflow[kafka]'?)"
            )
        sender = registry.senders.get(name)
        rest = {k: v for k, v in data.items() if k != name}
        return {
            **rest,
            "transport": name,
            "connection": sender.config_model.model_validate(data[name] or {}),
        }


class PublishConfig(BaseModel):
    """``publish: {<transport>: {...}, topic: ..., value: ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    publish: PublishMessage


class PublishTask(Resource):
    """Runs one attempt of a ``publish`` task (see the module docs).

    One sender per runner, opened at the first attempt and reused by every run of the rule;
    a failed send closes it, so the next attempt connects afresh. ``close`` is idempotent.
    """

    config_model: ClassVar[type[BaseModel]] = PublishConfig

    def __init__(self, config: Any, env: PluginEnv) -> None:
        self.config: PublishConfig = (
            config if isinstance(config, PublishConfig) else PublishConfig.model_validate(config)
        )
        self.env = env
        self._sender: MessageSender | None = None
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        await self._drop()

    async def _drop(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            await sender.close()

    async def _open(self) -> MessageSender:
        if self._closed:
            raise ClosedError("this publish task runner is closed")
        if self._sender is None:
            spec = self.config.publish
            sender: MessageSender = registry.senders.get(spec.transport)(spec.connection, self.env)
            await sender.open()
            self._sender = sender
        return self._sender

    async def run(self, ctx: RunContext) -> TaskResult:
        message = build_message(self.config.publish, ctx)
        where = f"{self.config.publish.transport} topic {message.topic}"
        try:
            sender = await self._open()
            facts = await sender.send(message)
        except ClosedError:
            raise
        except Exception as exc:  # any transport failure fails the attempt
            await self._drop()
            detail = str(exc) or type(exc).__name__
            return TaskResult(False, f"publish to {where} failed: {detail}")
        write_capped(
            ctx.stdout_path,
            f"published to {where}: {orjson.dumps(facts).decode()}\n",
            ctx.log_max_bytes,
        )
        return TaskResult(True, output={"topic": message.topic, **facts})


def build_message(spec: PublishMessage, ctx: RunContext) -> OutgoingMessage:
    """The rendered and encoded message of one attempt."""
    values = ctx.variables
    rendered = render_deep(spec.value, values)
    if rendered is None:
        body = b""
    elif isinstance(rendered, str):
        body = rendered.encode()
    else:
        body = orjson.dumps(rendered)
    headers = [
        ("eventflow-run-id", ctx.run_id.encode()),
        ("eventflow-attempt", str(ctx.attempt).encode()),
    ]
    own = {k: render(v, values).encode() for k, v in spec.headers.items()}
    headers = [(k, v) for k, v in headers if k not in own] + list(own.items())
    return OutgoingMessage(
        topic=render(spec.topic, values),
        value=body,
        key=render(spec.key, values).encode() if spec.key is not None else None,
        headers=tuple(headers),
    )
