"""Buffered socket reads for paho: one ``recv`` for many MQTT packets, not three per packet.

paho reads a packet with separate small ``recv`` calls (the command byte, each byte of the
remaining length, the body) and aiomqtt handles one packet per wake-up of the event loop.
Each ``recv`` releases and re-takes the GIL, which the store's commit thread contends for,
so at thousands of messages per second the reads, not the work, set the pace.
:func:`buffer_reads` makes paho read up to 64 KiB at a time and, on each wake-up, handle
every packet already buffered. The bytes and their order are unchanged.
"""

from __future__ import annotations

import ssl
from typing import Any

from paho.mqtt.client import Client as PahoClient
from paho.mqtt.enums import MQTTErrorCode

CHUNK = 65536


def buffer_reads(paho: PahoClient) -> None:
    """Patch this paho client (its private ``_sock_recv`` and ``loop_read``) to buffer."""
    state: Any = paho
    chunk = b""
    pos = 0

    def recv(bufsize: int) -> bytes:
        nonlocal chunk, pos
        if pos >= len(chunk):
            sock = state._sock
            if sock is None:
                raise ConnectionError("self._sock is None")
            try:
                data = sock.recv(CHUNK)
            except ssl.SSLWantReadError as err:
                raise BlockingIOError() from err
            except ssl.SSLWantWriteError as err:
                state._call_socket_register_write()
                raise BlockingIOError() from err
            if not data:
                return b""  # the broker closed the connection
            chunk, pos = data, 0
        out = chunk[pos : pos + bufsize]
        pos += len(out)
        return out

    read = paho.loop_read

    def loop_read(max_packets: int = 1) -> MQTTErrorCode:
        rc = read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and pos < len(chunk) and state._sock:
            rc = read(max_packets)
        return rc

    state._sock_recv = recv
    state.loop_read = loop_read
