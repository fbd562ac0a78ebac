"""Webhooks: the ``http`` sensor takes events pushed to ``POST /hooks/{sensor}``.

Systems that push (dbt Cloud, GitHub, Airflow callbacks, a Lambda forwarding S3 events) call
the server of ``eventflow run --http HOST:PORT``. Each request is authenticated (a bearer
token, or an HMAC-SHA256 signature over the raw body as GitHub's ``X-Hub-Signature-256``;
the secret comes from an environment variable and is compared in constant time), parsed as
JSON and emitted as one observation. The response is sent only after the engine committed
the event, so an answer of 200 means it is durable and the sender's retry is the
durability: a timeout or a stopping engine answers 503 and the sender sends again.

The event id comes from a stable delivery id: the first of ``id_headers`` present
(``Idempotency-Key``, ``X-Request-Id``, GitHub's ``X-GitHub-Delivery``), or a JMESPath
``id`` over the request, or else the SHA-256 of the body; a redelivery gets the same id and
is acknowledged without being processed twice. A bad signature (401), a malformed body
(400) or an oversized one (413) records nothing.

The observation's ``key`` is what followed the sensor's name in the URL
(``POST /hooks/dbt/orders/dt=2024-01-01`` has key ``orders/dt=2024-01-01``) unless a JMESPath
``key`` says otherwise; dataset expressions see ``payload``, ``headers`` (lower-case names,
without credentials), ``query`` and ``path``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from datetime import timedelta
from typing import Any, ClassVar, Literal

import jmespath
import jmespath.exceptions
from jmespath.parser import ParsedResult
from pydantic import BaseModel, Field, field_validator, model_validator

from eventflow.plugin import (
    HOOKS,
    JSON,
    ClosedError,
    Duration,
    HookRequest,
    HookResponse,
    Observation,
    PluginEnv,
    ScaleOut,
    SensorConfig,
    SensorContext,
    SensorError,
    utcnow,
)

HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
"""Never copied into an event's attributes (nor the signature header)."""


class HttpSensorConfig(SensorConfig):
    """`{type: http, auth: hmac, secret_env: VAR}`: events pushed to `POST /hooks/NAME`."""

    auth: Literal["bearer", "hmac", "none"] = Field(
        description="`bearer`: `Authorization: Bearer TOKEN`; `hmac`: an HMAC-SHA256 of the"
        " raw body in `signature_header`; `none`: anyone who reaches the server (trusted"
        " networks only)."
    )
    secret_env: str | None = Field(
        default=None,
        description="Environment variable holding the bearer token or the HMAC secret"
        " (required unless `auth: none`).",
    )
    signature_header: str = Field(
        default="X-Hub-Signature-256",
        description="With `auth: hmac`, the header carrying the hex digest, bare or as"
        " `sha256=HEX` (GitHub's form).",
    )
    id_headers: tuple[str, ...] = Field(
        default=("Idempotency-Key", "X-Request-Id", "X-GitHub-Delivery"),
        description="Headers whose value is the delivery's stable id (the first present"
        " wins); a redelivery with the same id is not processed again.",
    )
    id: str | None = Field(
        default=None,
        description="JMESPath over `payload`, `headers`, `query` giving the stable id"
        " (tried before `id_headers`), e.g. `payload.run.id`.",
    )
    missing_id: Literal["digest", "reject"] = Field(
        default="digest",
        description="Without an id: use the SHA-256 of the body (`digest`: an identical body"
        " counts once) or answer 400 (`reject`).",
    )
    key: str | None = Field(
        default=None,
        description="JMESPath giving the observation's key (matched by dataset `key`"
        " patterns); default: the URL path after `/hooks/NAME/`.",
    )
    max_body: int = Field(
        default=1_048_576, ge=1, description="Largest body accepted in bytes (413 beyond)."
    )
    commit_timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="How long a request waits for its event to be committed before"
        " answering 503 (the sender retries).",
    )

    @model_validator(mode="after")
    def _secret_named(self) -> HttpSensorConfig:
        if self.auth != "none" and not self.secret_env:
            raise ValueError(
                f"`auth: {self.auth}` needs `secret_env`: the environment variable holding"
                " the secret, e.g. `secret_env: WEBHOOK_SECRET`"
            )
        if self.auth == "none" and self.secret_env:
            raise ValueError("`secret_env` is only used with `auth: bearer` or `auth: hmac`")
        return self

    @field_validator("id", "key")
    @classmethod
    def _jmespath(cls, expr: str | None) -> str | None:
        if expr is not None:
            try:
                jmespath.compile(expr)
            except jmespath.exceptions.ParseError as exc:
                raise ValueError(f"not a JMESPath expression: {exc}") from None
        return expr


class HttpSensor:
    """Registers ``/hooks/{name}`` with the process's HTTP server while it runs.

    Runs on every worker (``shared``): a load balancer may send a webhook to any of them, and
    each commits what it accepted before answering."""

    config_model: ClassVar[type[BaseModel]] = HttpSensorConfig
    scale_out: ClassVar[ScaleOut] = "shared"

    def __init__(self, name: str, config: Any, env: PluginEnv) -> None:
        if not isinstance(config, HttpSensorConfig):
            config = HttpSensorConfig.model_validate(config)
        self.name = name
        self.config = config

    async def run(self, ctx: SensorContext) -> None:
        secret = _secret(self.config)
        if HOOKS.serving is None:
            raise SensorError(
                f"webhook sensor {self.name} has no HTTP server to listen on",
                hint="start the pipeline with `eventflow run FILE --http HOST:PORT`",
            )
        hook = WebhookHook(self.name, self.config, ctx, secret)
        with HOOKS.registered(self.name, hook):
            ctx.set_health(True, f"POST {HOOKS.serving}/hooks/{self.name}")
            await asyncio.Event().wait()  # until cancelled


def _secret(config: HttpSensorConfig) -> bytes:
    if config.secret_env is None:
        return b""
    value = os.environ.get(config.secret_env)
    if not value:
        raise SensorError(
            f"the environment variable {config.secret_env} (secret_env) is not set",
            hint="export it in the environment of `eventflow run`",
        )
    return value.encode()


class WebhookHook:
    """Handles one sensor's deliveries (see the module doc)."""

    def __init__(
        self, name: str, config: HttpSensorConfig, ctx: SensorContext, secret: bytes
    ) -> None:
        self.name = name
        self.config = config
        self.ctx = ctx
        self.max_body = config.max_body
        self._secret = secret
        self._id: ParsedResult | None = jmespath.compile(config.id) if config.id else None
        self._key: ParsedResult | None = jmespath.compile(config.key) if config.key else None
        self._hidden = HIDDEN_HEADERS | {config.signature_header.lower()}

    async def __call__(self, request: HookRequest) -> HookResponse:
        if len(request.body) > self.max_body:
            return self._refuse(413, f"the body is larger than {self.max_body} bytes")
        problem = self._authenticate(request)
        if problem is not None:
            headers = {"WWW-Authenticate": "Bearer"} if self.config.auth == "bearer" else {}
            return self._refuse(401, problem, headers)
        try:
            payload = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self._refuse(400, f"the body is not JSON: {exc}")
        context = {
            "payload": payload,
            "headers": {k: v for k, v in request.headers.items() if k not in self._hidden},
            "query": dict(request.query),
            "path": request.path,
        }
        try:
            delivery = self._delivery_id(request, context)
            key = self._key.search(context) if self._key else request.path or None
        except jmespath.exceptions.JMESPathError as exc:
            return self._refuse(400, f"cannot evaluate the sensor's expressions: {exc}")
        if delivery is None:
            return self._refuse(400, "no delivery id: send an Idempotency-Key header")
        return await self._commit(delivery, key, payload, context)

    def _authenticate(self, request: HookRequest) -> str | None:
        """Why the request is not authentic, or None. Constant-time comparisons only."""
        if self.config.auth == "bearer":
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            ok = scheme.lower() == "bearer" and hmac.compare_digest(
                token.strip().encode(), self._secret
            )
            return None if ok else "missing or wrong bearer token"
        if self.config.auth == "hmac":
            sent = request.headers.get(self.config.signature_header.lower(), "")
            sent = sent.removeprefix("sha256=").strip().lower()
            expected = hmac.new(self._secret, request.body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(sent.encode(), expected.encode()):
                return f"missing or wrong HMAC-SHA256 signature in {self.config.signature_header}"
        return None

    def _delivery_id(self, request: HookRequest, context: dict[str, Any]) -> dict[str, str] | None:
        """The source position: the stable id of this delivery."""
        if self._id is not None:
            value = self._id.search(context)
            if value is not None and not isinstance(value, dict | list):
                return {"id": str(value)}
        for header in self.config.id_headers:
            value = request.headers.get(header.lower())
            if value:
                return {"id": value}
        if self.config.missing_id == "reject":
            return None
        return {"sha256": hashlib.sha256(request.body).hexdigest()}

    async def _commit(
        self, position: dict[str, str], key: JSON, payload: JSON, context: dict[str, Any]
    ) -> HookResponse:
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[None] = loop.create_future()

        def on_commit() -> None:
            if not committed.done():
                committed.set_result(None)

        observation = Observation(
            sensor=self.name,
            position=position,
            key=None if key is None else str(key),
            time=utcnow(),
            payload=payload,
            attributes={k: v for k, v in context.items() if k != "payload"},
            on_commit=on_commit,
        )
        try:
            async with asyncio.timeout(self.config.commit_timeout.total_seconds()):
                await self.ctx.emit(observation)
                await committed
        except (TimeoutError, ClosedError) as exc:
            reason = "not committed in time" if isinstance(exc, TimeoutError) else "stopping"
            self.ctx.log.warning("webhook_not_committed", event_id=observation.id, reason=reason)
            return HookResponse(
                503, {"error": f"the event was {reason}; send it again"}, {"Retry-After": "5"}
            )
        self.ctx.log.debug("webhook_committed", event_id=observation.id, position=position)
        return HookResponse(200, {"id": observation.id, "status": "committed"})

    def _refuse(
        self, status: int, error: str, headers: dict[str, str] | None = None
    ) -> HookResponse:
        self.ctx.log.warning("webhook_refused", status=status, error=error)
        return HookResponse(status, {"error": error}, headers or {})
