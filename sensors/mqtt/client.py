"""Opening aiomqtt clients from a :class:`MqttConnection`, and publishing through one.

The password is read from its ``SecretStr`` only here, when the client is built, and is
never part of a log line or an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import ssl
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from eventflow.plugin import PublishError

from .config import MqttConnection

PUBLISH_TIMEOUT = 30.0
"""Seconds a QoS 1/2 publish waits for the broker's acknowledgement."""
_CLIENT_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


def stable_client_id(pipeline: str, sensor: str, member: str | None = None) -> str:
    """``eventflow-<pipeline>-<sensor>[-<member>]``, readable and at most 64 characters."""
    text = f"eventflow-{pipeline}-{sensor}" + (f"-{member}" if member else "")
    text = _CLIENT_ID_CHARS.sub("_", text)
    if len(text) <= 64:
        return text
    return text[:55] + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def random_client_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def tls_context(conn: MqttConnection, base_dir: Path) -> ssl.SSLContext | None:
    tls = conn.tls
    if tls is None:
        return None

    def path(p: str) -> str:
        return str(base_dir / Path(p).expanduser())

    context = ssl.create_default_context(cafile=path(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file and tls.key_file:
        context.load_cert_chain(path(tls.cert_file), path(tls.key_file))
    if tls.insecure:
        context.check_hostname = False
    return context


def make_client(
    conn: MqttConnection,
    base_dir: Path,
    client_id: str,
    *,
    persistent: bool = False,
    session_expiry: float = 0,
    receive_maximum: int | None = None,
    **kwargs: Any,
) -> aiomqtt.Client:
    """An unconnected aiomqtt client; ``persistent`` keeps the broker's session."""
    v5 = conn.protocol == "5"
    properties = None
    if v5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if persistent:
            properties.SessionExpiryInterval = int(session_expiry)
        if receive_maximum is not None:
            properties.ReceiveMaximum = receive_maximum
    return aiomqtt.Client(
        conn.host,
        conn.effective_port,
        username=conn.username or None,
        password=(conn.password.get_secret_value() or None) if conn.password else None,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        clean_session=None if v5 else not persistent,
        clean_start=(not persistent) if v5 else MQTT_CLEAN_START_FIRST_ONLY,
        keepalive=max(1, int(conn.keepalive.total_seconds())),
        properties=properties,
        tls_context=tls_context(conn, base_dir),
        timeout=PUBLISH_TIMEOUT,
        **kwargs,
    )


def user_properties(headers: Sequence[tuple[str, bytes]]) -> Properties | None:
    """MQTT 5 user properties carrying message headers."""
    if not headers:
        return None
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = [(k, v.decode("utf-8", "replace")) for k, v in headers]
    return props


class Link:
    """One lazily opened publishing connection, reopened after a failure.

    ``publish`` returns once the broker acknowledged (QoS 1 PUBACK, QoS 2 PUBCOMP) and
    raises :class:`PublishError` otherwise, closing the connection so that the next call
    connects afresh.
    """

    def __init__(self, conn: MqttConnection, base_dir: Path, what: str) -> None:
        self.conn = conn
        self.base_dir = base_dir
        self.what = what
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> aiomqtt.Client:
        async with self._lock:
            if self._client is None:
                client = make_client(
                    self.conn,
                    self.base_dir,
                    self.conn.client_id or random_client_id("eventflow-pub"),
                    max_inflight_messages=1000,
                )
                client.pending_calls_threshold = 1 << 30  # a batch in flight is normal here
                try:
                    await client.__aenter__()
                except aiomqtt.MqttError as exc:
                    raise self.failure("cannot connect to", exc) from exc
                self._client = client
            return self._client

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        client = await self.connect()
        props = user_properties(headers) if self.conn.protocol == "5" else None
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        except aiomqtt.MqttError as exc:
            await self.close()
            raise self.failure("could not publish to", exc, topic) from exc

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
            if client is not None:
                with contextlib.suppress(aiomqtt.MqttError):  # already gone
                    await client.__aexit__(None, None, None)

    def failure(self, what: str, exc: Exception, topic: str = "") -> PublishError:
        where = f" topic {topic}" if topic else ""
        return PublishError(
            f"{self.what} {what} MQTT broker {self.conn.address}{where}: {exc}",
            hint="check that the broker runs and accepts this client's credentials",
        )
