"""The starlette application and the uvicorn server, run inside the runtime's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from eventflow.errors import ClosedError, EventflowError, NotOpenError, StoreError
from eventflow.lifecycle import Resource
from eventflow.log import get_logger
from eventflow.server.api import Api, BadRequest, problem
from eventflow.server.api_checks import ChecksApi
from eventflow.server.api_deadletters import DeadLettersApi
from eventflow.server.api_pauses import PauseApi
from eventflow.server.api_versions import VersionsApi
from eventflow.server.auth import Auth, SignIn
from eventflow.server.backfills_api import BackfillApi
from eventflow.server.credentials import Credentials, load_credentials
from eventflow.server.guard import Guard, HostRule
from eventflow.server.hooks import HOOKS
from eventflow.server.openapi import document
from eventflow.server.page import render_page
from eventflow.server.protocol import protocol_class
from eventflow.views import NotFound

if TYPE_CHECKING:
    from eventflow.runtime import Runtime

DEFAULT_HOST = "127.0.0.1"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``PORT`` (on 127.0.0.1) or ``[IPv6]:PORT``; raises ValueError."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = DEFAULT_HOST, text
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT or PORT (e.g. 127.0.0.1:8080 or 8080)")
    return host, int(port)


def build_app(runtime: Runtime, credentials: Credentials, host: str = DEFAULT_HOST) -> Starlette:
    """The routes behind the :class:`~eventflow.server.guard.Guard` of the pipeline's
    ``server`` settings and the :class:`~eventflow.server.auth.Auth` of ``credentials``;
    ``host`` is the address the server is bound to (allowed as Host)."""
    api = Api(runtime)
    checks_api = ChecksApi(runtime)
    pauses = PauseApi(runtime)
    versions = VersionsApi(runtime)
    settings = runtime.pipeline.raw.server
    log = get_logger(component="http")
    sign_in = SignIn(credentials)

    async def openapi(request: Request) -> Response:
        return JSONResponse(
            document(secured=credentials.configured, metrics_public=credentials.metrics_public)
        )

    async def page(request: Request) -> Response:
        return HTMLResponse(await render_page(runtime, request.state.principal))

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/login", sign_in.login, methods=["POST"]),
        Route("/logout", sign_in.logout, methods=["POST"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/api/status", api.get_status, methods=["GET"]),
        Route("/api/rules", api.get_rules, methods=["GET"]),
        Route("/api/matches", api.get_matches, methods=["GET"]),
        Route("/api/runs", api.get_runs, methods=["GET"]),
        Route("/api/runs/{run_id}", api.get_run, methods=["GET"]),
        Route("/api/runs/{run_id}/logs", api.get_run_logs, methods=["GET"]),
        Route("/api/runs/{run_id}/retry", api.retry_run, methods=["POST"]),
        Route("/api/runs/{run_id}/cancel", api.cancel_run, methods=["POST"]),
        *DeadLettersApi(runtime).routes(),
        Route("/api/checks", checks_api.get_checks, methods=["GET"]),
        Route("/api/checks/{run_id}/rerun", checks_api.rerun, methods=["POST"]),
        Route("/api/checks/{run_id}/override", checks_api.override, methods=["POST"]),
        Route("/api/sensors", api.get_sensors, methods=["GET"]),
        Route("/api/rules/{name}/pause", pauses.pause_rule, methods=["POST"]),
        Route("/api/rules/{name}/resume", pauses.resume_rule, methods=["POST"]),
        Route("/api/sensors/{name}/pause", pauses.pause_sensor, methods=["POST"]),
        Route("/api/sensors/{name}/resume", pauses.resume_sensor, methods=["POST"]),
        Route("/api/workers", api.get_workers, methods=["GET"]),
        Route("/api/versions", versions.get_versions, methods=["GET"]),
        Route("/api/plan", versions.get_plan, methods=["GET"]),
        Route("/api/events", api.events, methods=["GET", "POST"]),
        *BackfillApi(runtime).routes(),
        Route("/hooks/{sensor}", api.hook, methods=["POST"]),
        Route("/hooks/{sensor}/{path:path}", api.hook, methods=["POST"]),
    ]

    async def bad_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BadRequest)
        return problem(exc.status, str(exc), **exc.headers)

    async def disconnected(request: Request, exc: Exception) -> Response:
        # The client went away mid-request: nobody reads the answer, and it is no error.
        log.info("http_client_disconnected", method=request.method, path=request.url.path)
        return Response(status_code=499)

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NotFound)
        return problem(404, exc.message)

    async def store_error(request: Request, exc: Exception) -> Response:
        # The socket is bound before the runtime opens its store (a webhook sensor must find
        # the server), and it answers until the runtime has closed it: both are "not now".
        if isinstance(exc, ClosedError | NotOpenError):
            return problem(503, "the pipeline is starting or stopping", **{"Retry-After": "1"})
        if isinstance(exc, StoreError):
            return problem(409, str(exc))
        return problem(500, str(exc))

    return Starlette(
        routes=routes,
        middleware=[
            Middleware(
                Guard,
                hosts=HostRule(settings.allowed_hosts, host),
                origins=settings.allowed_origins,
                body_timeout=settings.body_timeout.total_seconds(),
                routes=routes,
            ),
            Middleware(Auth, credentials=credentials),
        ],
        exception_handlers={
            ClientDisconnect: disconnected,
            BadRequest: bad_request,
            NotFound: not_found,
            EventflowError: store_error,
        },
    )


class HttpServer(Resource):
    """``async with HttpServer(runtime, host, port):`` serves until the block exits, to the
    ``credentials`` given or those of the pipeline's ``server.auth``.

    The socket is bound before the block starts (so a webhook sensor finds the server),
    and requests still in flight when it exits get a few seconds to finish. A start that
    fails half-way closes the socket again (see :class:`~eventflow.lifecycle.Resource`).
    """

    def __init__(
        self, runtime: Runtime, host: str, port: int, credentials: Credentials | None = None
    ) -> None:
        self.runtime = runtime
        self.credentials = credentials
        self.host, self.port = host, port
        self.log = get_logger(component="http")
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def open(self) -> None:
        credentials = self._credentials()  # a token file that cannot be read fails first
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise EventflowError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror}",
                hint="choose another --http port, or stop what holds it",
            ) from exc
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        settings = self.runtime.pipeline.raw.server
        config = uvicorn.Config(
            build_app(self.runtime, credentials, self.host),
            http=protocol_class(settings.header_timeout.total_seconds()),
            lifespan="off",
            log_config=None,
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=5,
            timeout_keep_alive=max(1, round(settings.keep_alive.total_seconds())),
            limit_concurrency=settings.max_connections,
            h11_max_incomplete_event_size=settings.max_header_bytes,
        )
        config.load()
        server = self._server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        # startup + main_loop rather than serve(): serve() takes over SIGTERM and SIGINT,
        # which belong to the runtime's drain.
        await server.startup(sockets=[sock])
        self._task = asyncio.create_task(server.main_loop(), name="http")
        HOOKS.serving = self.url
        self.log.info("http_listening", url=self.url)

    def _credentials(self) -> Credentials:
        """Those given, or those of the pipeline's ``server.auth`` (read at start)."""
        if self.credentials is None:
            pipeline = self.runtime.pipeline
            self.credentials = load_credentials(pipeline.raw.server.auth, pipeline.base_dir)
        return self.credentials

    async def close(self) -> None:
        HOOKS.serving = None
        server, task, sock = self._server, self._task, self._socket
        self._server = self._task = self._socket = None
        if server is not None and task is not None:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await server.shutdown(sockets=[sock] if sock else None)
        if sock is not None:
            sock.close()
