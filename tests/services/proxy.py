"""A TCP proxy in front of a service, for tests that make the service misbehave without
touching it: ``refuse()`` closes the listening port (connections are refused, as when the
server is down), ``hang()`` accepts connections and never answers (a server that is stuck),
``forward()`` passes bytes through again. Each change drops the connections open through
it, as a server that dies or stalls would: clients must notice and reconnect.

The service keeps its state throughout (a moto server stopped and started again would
start empty). Use it as a context manager: it listens (forwarding) inside, and is closed
after.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

from tests.services._process import free_port

Mode = Literal["forward", "hang", "refuse"]


class FaultyProxy:
    """Listens on ``127.0.0.1:port`` and forwards to ``upstream`` (see the module doc)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.mode: Mode = "refuse"
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def forward(self) -> None:
        self._switch("forward")

    def hang(self) -> None:
        self._switch("hang")

    def refuse(self) -> None:
        self._switch("refuse")

    def __enter__(self) -> FaultyProxy:
        self.forward()
        return self

    def __exit__(self, *exc: object) -> None:
        self.refuse()

    def _switch(self, mode: Mode) -> None:
        with self._lock:
            self.mode = mode
            for sock in self._open:
                _close(sock)
            self._open.clear()
            if mode == "refuse" and self._listener is not None:
                _close(self._listener)
                self._listener = None
            elif mode != "refuse" and self._listener is None:
                self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
                threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by refuse()
                return
            with self._lock:
                if listener is not self._listener:
                    _close(client)
                    return
                self._open.add(client)
                if self.mode == "hang":
                    continue  # held open, never read, never answered
                try:
                    server = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    _close(client)
                    continue
                self._open.add(server)
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
