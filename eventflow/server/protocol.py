"""uvicorn's h11 protocol with the timeout it lacks: a request's headers must complete in time.

uvicorn times out only an idle keep-alive connection, and any byte received cancels that
timer, so a client that sends half a request line and stops holds its connection (and one
of ``server.max_connections``) forever. Here a timer starts when the connection opens and
again after each response; if no complete request head has arrived when it fires, the
connection is closed. A body that never completes is the app's business
(:class:`~eventflow.server.guard.Guard` answers 408).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderTimeoutProtocol(H11Protocol):
    header_timeout = 10.0
    """Seconds; each server gets a subclass with its own value (:func:`protocol_class`)."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and not self.transport.is_closing():
            self.transport.close()


def protocol_class(header_timeout: float) -> type[HeaderTimeoutProtocol]:
    """A protocol class for one server (uvicorn instantiates it per connection)."""
    return type(
        "HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": header_timeout}
    )
