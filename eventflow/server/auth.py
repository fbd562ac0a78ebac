"""Who may use the HTTP server: each request authenticated and authorised against the
:mod:`~eventflow.server.credentials`, the status page's sign-in, and the audit log.

A request is answered by the principal it proves: a bearer token (``Authorization: Bearer
TOKEN``, from the environment or a secret file, compared in constant time), the session
cookie the status page's sign-in set, or the user a trusted login proxy names. ``read``
opens the page and every ``GET``; ``operate`` also the state-changing routes. With no
credential configured every route is open, as before (``eventflow run`` then keeps the
server on loopback unless ``--insecure``). See ``docs/reference/security.md``.
"""

from __future__ import annotations

import json
import time

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventflow.log import get_logger
from eventflow.server.api import BadRequest, problem
from eventflow.server.credentials import (
    ANONYMOUS,
    MACHINE_PREFIX,
    PUBLIC_PATHS,
    Credentials,
    Principal,
    Role,
    Sessions,
)
from eventflow.server.guard import SAFE_METHODS

SESSION_COOKIE = "eventflow_session"


def required_role(credentials: Credentials, method: str, path: str) -> Role | None:
    """What a request needs: nothing (public), ``read`` or ``operate``."""
    if path in PUBLIC_PATHS or path.startswith(MACHINE_PREFIX):
        return None
    if path == "/metrics" and credentials.metrics_public:
        return None
    return "read" if method in SAFE_METHODS else "operate"


def wants_html(headers: Headers) -> bool:
    return "text/html" in headers.get("accept", "")


class Auth:
    """The ASGI middleware that authenticates and authorises every request, and logs who
    sent each state-changing one (``http_action``)."""

    def __init__(self, app: ASGIApp, *, credentials: Credentials) -> None:
        self.app = app
        self.credentials = credentials
        self.sessions = Sessions(credentials)
        self.log = get_logger(component="http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method, path = scope["method"], scope["path"]
        needed = required_role(self.credentials, method, path)
        principal = self.authenticate(scope, headers)
        scope.setdefault("state", {})["principal"] = principal
        app: ASGIApp = self.app
        if needed is not None and self.credentials.configured:
            app = self._refusal(principal, needed, headers, path) or self.app
        if method in SAFE_METHODS or path.startswith(MACHINE_PREFIX):
            await app(scope, receive, send)
        else:
            await self._audited(app, scope, receive, send, principal)

    def authenticate(self, scope: Scope, headers: Headers) -> Principal | None:
        """The request's principal (:data:`ANONYMOUS` with no credential configured)."""
        if not self.credentials.configured:
            return ANONYMOUS
        scheme, _, sent = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and sent:
            token = self.credentials.token(sent.strip())
            return token.principal if token else None
        if self.credentials.proxy is not None:
            client = scope.get("client")
            found = self.credentials.proxy.principal(client[0] if client else None, headers)
            if found is not None:
                return found
        cookie = Request(scope).cookies.get(SESSION_COOKIE)
        return self.sessions.principal(cookie, time.time()) if cookie else None

    def _refusal(
        self, principal: Principal | None, needed: Role, headers: Headers, path: str
    ) -> Response | None:
        if principal is None:
            if path == "/" and wants_html(headers):
                return HTMLResponse(LOGIN_PAGE, status_code=401)
            return problem(
                401,
                f"{path} needs a {needed} or operate token: send Authorization: Bearer TOKEN"
                " (the tokens are set by `server.auth` in the pipeline file)",
                **{"WWW-Authenticate": 'Bearer realm="eventflow"'},
            )
        if not principal.may(needed):
            return problem(
                403,
                f"{principal.name} may read but not act; {path} needs an operate token"
                " (`server.auth.operate_token_env`) or an operator group",
            )
        return None

    async def _audited(
        self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, principal: Principal | None
    ) -> None:
        """``app`` answers; the request is logged with its principal and the answer's status,
        refused or not."""
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_status)
        finally:
            client = scope.get("client")
            self.log.info(
                "http_action",
                method=scope["method"],
                path=scope["path"],
                status=status,
                principal=principal.name if principal else None,
                client=client[0] if client else None,
            )


class SignIn:
    """The status page's sign-in: a token exchanged for a session cookie."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.sessions = Sessions(credentials)
        self.log = get_logger(component="http")

    async def login(self, request: Request) -> Response:
        """``POST /login`` with ``{"token": ...}``: a session cookie for the token's role.
        The guard has already refused a cross-site or non-JSON post."""
        try:
            body = json.loads(await request.body())
            sent = body["token"]
        except (ValueError, TypeError, KeyError):
            raise BadRequest(400, 'the body must be {"token": "..."}') from None
        token = self.credentials.token(sent) if isinstance(sent, str) else None
        client = request.client.host if request.client else None
        if token is None:
            self.log.warning("http_login_refused", client=client)
            return problem(401, "that is not a read or operate token of this server")
        self.log.info("http_login", principal=token.principal.name, client=client)
        response = JSONResponse({"principal": token.principal.name, "role": token.principal.role})
        response.set_cookie(
            SESSION_COOKIE,
            self.sessions.issue(token, time.time()),
            max_age=int(self.credentials.session_ttl),
            httponly=True,
            samesite="strict",
            secure=_over_https(request),
        )
        return response

    async def logout(self, request: Request) -> Response:
        """``POST /logout``: the session cookie removed."""
        response = JSONResponse({"status": "signed out"})
        response.delete_cookie(
            SESSION_COOKIE, httponly=True, samesite="strict", secure=_over_https(request)
        )
        return response


def _over_https(request: Request) -> bool:
    """Whether the browser sees the page over HTTPS (a TLS proxy in front reaches us over
    HTTP; the browser's ``Origin`` says what it sees)."""
    origin = request.headers.get("origin", "")
    return request.url.scheme == "https" or origin.startswith("https://")


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>eventflow · sign in</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 3rem auto; max-width: 26rem; }
input { width: 100%; padding: .4rem; margin: .4rem 0; box-sizing: border-box; }
.error { color: #b91c1c; }
</style></head>
<body>
<h1>eventflow</h1>
<form id="login">
<label for="token">Read or operate token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
<p class="error" id="error" role="alert"></p>
</form>
<script>
document.getElementById("login").addEventListener("submit", async function (e) {
  e.preventDefault();
  const r = await fetch("/login", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token: document.getElementById("token").value}),
  });
  if (r.ok) { location.reload(); return; }
  document.getElementById("error").textContent = (await r.json()).error;
});
</script>
</body></html>
"""
