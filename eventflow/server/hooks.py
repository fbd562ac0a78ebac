"""Where webhook sensors meet the HTTP server: ``POST /hooks/{sensor}`` is routed here.

A webhook sensor (``sensors/http.py``) registers a :class:`Hook` under its name while it runs;
the server hands it each request as a plain :class:`HookRequest` and sends back the
:class:`HookResponse` it returns. Neither side imports the other's libraries: the sensor
knows nothing of starlette, the server nothing of authentication or payloads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from eventflow.errors import SensorError
from eventflow.events import JSON


@dataclass(frozen=True, slots=True)
class HookRequest:
    """One webhook delivery as received: headers with lower-case names, the raw body."""

    sensor: str
    path: str
    """What followed ``/hooks/{sensor}/`` in the URL (``""`` when nothing did)."""
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class HookResponse:
    status: int
    body: Mapping[str, JSON]
    headers: Mapping[str, str] = field(default_factory=dict)


class Hook(Protocol):
    max_body: int
    """Largest body accepted, in bytes; the server answers 413 beyond it without reading on."""

    async def __call__(self, request: HookRequest) -> HookResponse: ...


class HookRegistry:
    """The webhook sensors running in this process, by sensor name."""

    def __init__(self) -> None:
        self._hooks: dict[str, Hook] = {}
        self.serving: str | None = None
        """The server's base URL while one runs in this process (set by the server)."""

    @contextmanager
    def registered(self, name: str, hook: Hook) -> Iterator[None]:
        """Route ``/hooks/{name}`` to ``hook`` until the block exits."""
        if name in self._hooks:
            raise SensorError(f"a webhook sensor named {name!r} is already running")
        self._hooks[name] = hook
        try:
            yield
        finally:
            if self._hooks.get(name) is hook:
                del self._hooks[name]

    def get(self, name: str) -> Hook | None:
        return self._hooks.get(name)


HOOKS = HookRegistry()
"""The process's registry (one process runs one pipeline)."""
