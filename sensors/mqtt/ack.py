"""Acknowledging MQTT messages after the store commit, on paho's own connection.

aiomqtt 2.x has no manual acknowledgement, so the sensor reaches the paho client under it
(``aiomqtt.Client._client``) and turns on paho's ``manual_ack``: a QoS 1 PUBLISH is then
answered with PUBACK only when :meth:`Acker.ack` is called (after the commit).

QoS 2 needs more. paho answers a QoS 2 PUBLISH with PUBREC at once and holds only the
final PUBCOMP; but PUBREC is the point where the broker stops resending the PUBLISH, so a
crash between PUBREC and the commit would lose the message. :func:`defer_qos2_receipt`
moves PUBREC to the commit instead: the message is delivered on PUBLISH, PUBREC is sent by
``ack``, and the broker's PUBREL is answered with PUBCOMP at once (also a PUBREL left over
from a previous connection, which paho with ``manual_ack`` would leave unanswered).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from paho.mqtt.client import Client as PahoClient
from paho.mqtt.enums import MQTTErrorCode

_QOS_BITS = 0x06


def defer_qos2_receipt(paho: PahoClient) -> None:
    """Make ``paho`` deliver QoS 2 messages on PUBLISH and send PUBREC only on ``ack``."""
    state: Any = paho  # paho's private attributes, pinned by aiomqtt's paho-mqtt 2.x
    handle_publish = paho._handle_publish
    handle_pubrel = paho._handle_pubrel

    def _no_pubrec(mid: int) -> MQTTErrorCode:
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def publish() -> MQTTErrorCode:
        if (state._in_packet["command"] & _QOS_BITS) >> 1 != 2:
            return handle_publish()
        state._send_pubrec = _no_pubrec
        try:
            rc = handle_publish()  # stores the message, waiting for a PUBREL
        finally:
            del state._send_pubrec
        with state._in_message_mutex:
            held = list(state._in_messages.values())
            state._in_messages.clear()
        for message in held:
            state._handle_on_message(message)
        return rc

    def pubrel() -> MQTTErrorCode:
        state._manual_ack = False  # answer with PUBCOMP now: PUBREC meant "committed"
        try:
            return handle_pubrel()
        finally:
            state._manual_ack = True

    state._handle_publish = publish
    state._handle_pubrel = pubrel


class Acker:
    """Sends the acknowledgements of one connection, from any thread.

    ``ack`` is what ``Observation.on_commit`` calls. It may be called on another thread
    (it hops onto the loop) and after the connection it belongs to has gone: then it does
    nothing, since the broker resends the message on the next connection of the session
    and that delivery, recognised as a duplicate by its event id, is acknowledged instead.
    """

    def __init__(self, paho: PahoClient, loop: asyncio.AbstractEventLoop) -> None:
        self._paho = paho
        self._loop = loop
        self._thread = threading.get_ident()
        self.live = True
        self.sent = 0
        self.received = 0
        """Messages of this connection that wait for an acknowledgement, with ``sent``."""

    @property
    def inflight(self) -> int:
        """Messages received and not yet acknowledged (their commit is under way)."""
        return self.received - self.sent

    def ack(self, mid: int, qos: int) -> None:
        if threading.get_ident() != self._thread:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the broker resends
                self._loop.call_soon_threadsafe(self._send, mid, qos)
            return
        self._send(mid, qos)

    def _send(self, mid: int, qos: int) -> None:
        if not self.live:
            return
        state: Any = self._paho
        rc = state._send_pubrec(mid) if qos == 2 else self._paho.ack(mid, qos)
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.sent += 1
