"""Webhooks: the ``http`` sensor takes events pushed to ``POST /hooks/{sensor}``.

Systems that push (dbt Cloud, GitHub, Airflow callbacks, a Lambda forwarding S3 events) call
the server of ``eventflow run --http HOST:PORT``. Each request is authenticated (a bearer
token, or an HMAC-SHA256 signature of one of the schemes of :mod:`.signatures`: Standard
Webhooks, Stripe's, GitHub's; the secret comes from an environment variable and is compared
in constant time), parsed as JSON and emitted as one observation. The schemes that sign a
time refuse a request outside ``tolerance``; inside it, a replay has the signed delivery id
of the original, so the event log (which keeps ids longer than the tolerance) dedupes it.
The response is sent only after the engine committed the event, so an answer of 200 means
it is durable and the sender's retry is the durability: a timeout or a stopping engine
answers 503 and the sender sends again.

The event id comes from a stable delivery id and the URL path after the sensor's name (the
same body on two paths is two events): with ``signature: standard`` the signed
``webhook-id``; otherwise a JMESPath ``id`` over the request, or (except with ``stripe``,
whose headers are not signed) the first of ``id_headers`` present (``Idempotency-Key``,
``X-Request-Id``, GitHub's ``X-GitHub-Delivery``), or else the SHA-256 of the body. A
redelivery gets the same id and is acknowledged without being processed twice. A bad
signature (401), a malformed body (400) or an oversized one (413) records nothing.

The observation's ``key`` is what followed the sensor's name in the URL
(``POST /hooks/dbt/orders/dt=2024-01-01`` has key ``orders/dt=2024-01-01``) unless a JMESPath
``key`` says otherwise; dataset expressions see ``payload``, ``headers`` (lower-case names,
without credentials), ``query`` and ``path``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from datetime import timedelta
from typing import Any, ClassVar, Literal, cast

import jmespath
import jmespath.exceptions
import orjson
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

from . import signatures
from .signatures import Refused, Scheme

HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
"""Never copied into an event's attributes (nor the signature header)."""


class HttpSensorConfig(SensorConfig):
    """`{type: http, auth: hmac, secret_env: VAR}`: events pushed to `POST /hooks/NAME`."""

    auth: Literal["bearer", "hmac", "none"] = Field(
        description="`bearer`: `Authorization: Bearer TOKEN` (a captured request can be"
        " replayed); `hmac`: an HMAC-SHA256 signature of the `signature` scheme; `none`:"
        " anyone who reaches the server (trusted networks only)."
    )
    signature: Scheme = Field(
        default="github",
        description="With `auth: hmac`, the scheme: `standard` (Standard Webhooks: signs"
        " `webhook-id`, `webhook-timestamp` and the body; refuses replays), `stripe`"
        " (`Stripe-Signature: t=...,v1=...`: signs the time and the body), `github`"
        " (`X-Hub-Signature-256`: signs the body only, so a captured request can be"
        " replayed under a new delivery id).",
    )
    tolerance: Duration = Field(
        default=timedelta(minutes=5),
        description="With `signature: standard` or `stripe`, how far the signed time may be"
        " from the server's clock (either way); an older request is refused (401). Keep"
        " `retention.events` longer.",
    )
    secret_env: str | None = Field(
        default=None,
        description="Environment variable holding the bearer token or the HMAC secret"
        " (required unless `auth: none`).",
    )
    signature_header: str | None = Field(
        default=None,
        description="With `auth: hmac`, the header carrying the signature; default: the"
        " scheme's (`X-Hub-Signature-256`, `webhook-signature`, `Stripe-Signature`).",
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
        if self.auth != "hmac" and "signature" in self.model_fields_set:
            raise ValueError("`signature` is only used with `auth: hmac`")
        return self

    @property
    def replay_window(self) -> timedelta | None:
        """How long a captured request stays acceptable (None: for ever, nothing signs a
        time): the event log must remember delivery ids longer than this."""
        if self.auth == "hmac" and self.signature in ("standard", "stripe"):
            return self.tolerance
        return None

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


def decode_body(body: bytes) -> JSON:
    """A delivery's JSON body; ValueError when it is not UTF-8 JSON that can be stored.

    orjson, as every other sensor: it refuses what the event log could not hold or the
    engine could not walk (lone surrogates, NaN, nesting deeper than 1,024 levels) where
    ``json.loads`` returned it, or raised RecursionError."""
    return cast(JSON, orjson.loads(body))  # orjson.JSONDecodeError is a ValueError


def _secret(config: HttpSensorConfig) -> bytes:
    if config.secret_env is None:
        return b""
    value = os.environ.get(config.secret_env)
    if not value:
        raise SensorError(
            f"the environment variable {config.secret_env} (secret_env) is not set",
            hint="export it in the environment of `eventflow run`",
        )
    if config.auth != "hmac":
        return value.encode()
    try:
        return signatures.key(config.signature, value.strip())
    except ValueError as exc:
        raise SensorError(
            f"the environment variable {config.secret_env} (secret_env) is no"
            f" `{config.signature}` secret: {exc}"
        ) from None


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
        header = config.signature_header or signatures.HEADERS[config.signature]
        self._hidden = HIDDEN_HEADERS | {header.lower()}

    async def __call__(self, request: HookRequest) -> HookResponse:
        if len(request.body) > self.max_body:
            return self._refuse(413, f"the body is larger than {self.max_body} bytes")
        try:
            signed_id = self._authenticate(request)
        except Refused as exc:
            headers = {"WWW-Authenticate": "Bearer"} if self.config.auth == "bearer" else {}
            return self._refuse(401, str(exc), headers)
        try:
            payload = decode_body(request.body)
        except ValueError as exc:
            return self._refuse(400, f"the body is not JSON: {exc}")
        context = {
            "payload": payload,
            "headers": {k: v for k, v in request.headers.items() if k not in self._hidden},
            "query": dict(request.query),
            "path": request.path,
        }
        try:
            delivery = self._delivery_id(request, context, signed_id)
            key = self._key.search(context) if self._key else request.path or None
        except jmespath.exceptions.JMESPathError as exc:
            return self._refuse(400, f"cannot evaluate the sensor's expressions: {exc}")
        if delivery is None:
            return self._refuse(400, "no delivery id: send an Idempotency-Key header")
        return await self._commit(delivery, key, payload, context)

    def _authenticate(self, request: HookRequest) -> str | None:
        """The delivery id the signature covers (None when it covers none); raises
        :class:`Refused` when the request is not authentic. Constant-time comparisons."""
        if self.config.auth == "bearer":
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            ok = scheme.lower() == "bearer" and hmac.compare_digest(
                token.strip().encode(), self._secret
            )
            if not ok:
                raise Refused("missing or wrong bearer token")
        if self.config.auth == "hmac":
            return signatures.verify(
                self.config.signature,
                self._secret,
                request.headers,
                request.body,
                now=utcnow(),
                tolerance=self.config.tolerance,
                header=self.config.signature_header,
            ).delivery_id
        return None

    def _delivery_id(
        self, request: HookRequest, context: dict[str, Any], signed_id: str | None
    ) -> dict[str, str] | None:
        """The source position: the webhook path and the stable id of this delivery."""
        where = {"path": request.path} if request.path else {}
        if signed_id is not None:
            return {**where, "id": signed_id}
        if self._id is not None:
            value = self._id.search(context)
            if value is not None and not isinstance(value, dict | list):
                return {**where, "id": str(value)}
        unsigned = self.config.auth == "hmac" and self.config.signature == "stripe"
        for header in () if unsigned else self.config.id_headers:
            value = request.headers.get(header.lower())
            if value:
                return {**where, "id": value}
        if self.config.missing_id == "reject":
            return None
        return {**where, "sha256": hashlib.sha256(request.body).hexdigest()}

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
