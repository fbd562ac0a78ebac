"""What every request passes before a route sees it: the ``Host`` allow-list, the
same-origin and JSON content-type rules of state-changing requests, and the body deadline.

One ASGI middleware rather than starlette's ``TrustedHostMiddleware`` plus two of our own:
the three checks read the same headers, and each refusal is our one-line JSON problem that
names the header, the value and the setting to change (starlette answers a bare
``Invalid host header``). See ``docs/reference/security.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventflow.server.api import BadRequest, problem
from eventflow.server.credentials import MACHINE_PREFIX

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Answered to whatever the allow-list says: a rebinding attack cannot use these names."""
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})
"""Bound addresses that are no name a client would send as ``Host``."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""The methods that change nothing; every other one is state-changing."""
ANY_HOST_PATHS = frozenset({"/healthz"})
"""Answered whatever the ``Host``: liveness probes address the server by IP, and the answer
is a constant ``{"status": "ok"}``. ``/readyz`` names sensors and their errors, so it
follows the allow-list."""


class BodyTimeout(BadRequest):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            f"the request body did not arrive within {seconds:g} s (server.body_timeout);"
            " send it again",
            {"Connection": "close"},
        )


def host_name(value: str) -> str:
    """The name in a ``Host`` header, without the port and the IPv6 brackets, lower-case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") > 1:  # a bare IPv6 address
        return value
    return value.partition(":")[0]


class HostRule:
    """The names the server answers to: exact names, ``*.domain`` suffixes, or ``*``."""

    def __init__(self, allowed: Iterable[str], bound: str) -> None:
        names = {*LOOPBACK_HOSTS, *(host_name(a) if a != "*" else a for a in allowed)}
        if bound.lower() not in WILDCARD_ADDRESSES:
            names.add(host_name(f"[{bound}]" if ":" in bound else bound))
        self.any = "*" in names
        self.suffixes = tuple(n[1:] for n in names if n.startswith("*."))
        self.names = frozenset(n for n in names if not n.startswith("*"))

    def allows(self, host: str) -> bool:
        name = host_name(host)
        if self.any or name in self.names:
            return True
        return bool(self.suffixes) and name.endswith(self.suffixes)


def is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/*+json``, with any parameters."""
    media = (content_type or "").partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class Guard:
    """The ASGI middleware (see the module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hosts: HostRule,
        origins: Iterable[str],
        body_timeout: float,
        routes: Iterable[BaseRoute],
    ) -> None:
        self.app = app
        self.routes = tuple(routes)
        self.hosts = hosts
        self.origins = frozenset(o.rstrip("/").lower() for o in origins)
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope, Headers(scope=scope))
        if refusal is not None:
            status, message = refusal
            await problem(status, message)(scope, receive, send)
            return
        await self.app(scope, self._deadline(receive), send)

    def _refusal(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        path, host = scope["path"], headers.get("host", "")
        if path not in ANY_HOST_PATHS and not self.hosts.allows(host):
            return 400, (
                f"Host {host!r} is not a name this server answers to; add it to"
                " `server.allowed_hosts` in the pipeline file"
            )
        if scope["method"] in SAFE_METHODS or not self._routed(scope):
            return None  # a method no route takes gets the router's 404 or 405
        cross = self._cross_site(headers, host)
        if cross is not None:
            return 403, cross
        if not path.startswith(MACHINE_PREFIX) and not is_json(headers.get("content-type")):
            sent = headers.get("content-type") or "none"
            return 415, (
                f"{scope['method']} {path} needs Content-Type: application/json (sent: {sent})"
            )
        return None

    def _routed(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in self.routes)

    def _cross_site(self, headers: Headers, host: str) -> str | None:
        """Why a browser page of another origin sent this, or None."""
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/").lower() in self.origins:
            return None
        site = headers.get("sec-fetch-site")
        if site in ("cross-site", "same-site"):
            return (
                f"a {site} request from a browser page ({origin or 'no Origin'}) cannot change"
                " state; add its origin to `server.allowed_origins` if it is yours"
            )
        if origin is not None and urlsplit(origin).netloc.lower() != host.strip().lower():
            return (
                f"Origin {origin} is not this server ({host}); add it to"
                " `server.allowed_origins` if it is yours"
            )
        return None

    def _deadline(self, receive: Receive) -> Receive:
        """``receive`` that raises :class:`BodyTimeout` once the body is late (a route
        answers 408); after the last chunk it waits as long as the route likes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        complete = False

        async def receive_in_time() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.body_timeout) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return receive_in_time
