"""A local webhook receiver on a loopback port, served from a thread of the test process,
that records every request and can be down, answer 500 now and then, or refuse for good.

The port is chosen before the server starts, so a publisher can be pointed at a receiver
that is not up yet (connection refused) and find it there later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.services._process import free_port


@dataclass(frozen=True)
class Request:
    """One request as it arrived, and the status it was answered with."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-case names."""
    body: bytes
    status: int


Answer = Callable[[Request], int]
"""Picks the status of a request (given with ``status`` 0)."""


@dataclass
class Receiver:
    """The receiver's state; ``url`` is where it listens (once :meth:`start` is called)."""

    port: int = field(default_factory=free_port)
    fail_every: int = 0
    """Every N-th request is answered 500 (0: none)."""
    answer: Answer | None = None
    """A status for a request instead of 200 (applied after ``fail_every``)."""
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def accepted(self) -> list[Request]:
        """The requests answered 2xx, in order."""
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def record(self, request: Request) -> int:
        """Answer ``request`` and keep it, with its status."""
        with self.lock:
            n = len(self.requests) + 1
            if self.fail_every and n % self.fail_every == 0:
                status = 500
            else:
                status = self.answer(request) if self.answer is not None else 200
            self.requests.append(Request(**{**request.__dict__, "status": status}))
        return status

    def start(self) -> Receiver:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def handle_request(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            request = Request(self.command, self.path, headers, body, 0)
            status = receiver.record(request)
            data = b'{"ok": true}' if status < 300 else b'{"error": "receiver says no"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = handle_request

    return Handler
