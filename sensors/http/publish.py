"""The ``webhook`` publisher: completion events as CloudEvents 1.0 over HTTP, signed.

.. code-block:: yaml

    publish:
      - type: webhook
        url: https://alerts.example.com/eventflow
        types: ["eventflow.run.failed", "eventflow.deadline.missed"]
        mode: structured                      # or binary
        secret_env: EVENTFLOW_WEBHOOK_SECRET  # whsec_... (several, space-separated, to rotate)
        headers_env: {Authorization: ALERTS_AUTHORIZATION}

Each event is one ``POST``: in ``structured`` mode the body is the whole envelope
(``application/cloudevents+json``), in ``binary`` mode the body is the event's ``data``
(``application/json``) and the attributes travel as ``ce-*`` headers. With a secret, the
request is signed as `Standard Webhooks <https://www.standardwebhooks.com/>`_ do it
(``webhook-id`` is the CloudEvents id, ``webhook-timestamp``, ``webhook-signature: v1,SIG``
with SIG the base64 HMAC-SHA256 of ``id.timestamp.body``), which eventflow's own ``http``
sensor verifies.

Events go through the outbox: a 2xx answer delivers an event; a timeout, a connection
failure, 408, 425, 429 or 5xx is tried again ``retries`` times with a doubling ``backoff``
(or the answer's ``Retry-After``), then fails the batch, which the outbox offers again with
its own backoff. Events delivered before the failure are not sent again by this process;
after a crash they may be, with the same id, so a receiver dedupes by ``webhook-id`` /
``ce-id``. Any other 4xx is a
refusal for good: that event is dead-lettered and the others go on. Header values and
secrets are never logged nor stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, Field, field_validator, model_validator

from eventflow.plugin import (
    ClosedError,
    Duration,
    Event,
    PluginEnv,
    PublisherConfig,
    PublishError,
    PublishRejected,
    Resource,
)

from .signatures import key, sign_standard

RETRIED = frozenset({408, 425, 429})
"""4xx answers that mean "later", not "never"."""
BODY_EXCERPT = 200
"""Characters of a refusing answer's body kept in the dead letter."""


class WebhookPublisherConfig(PublisherConfig):
    """`publish: [{type: webhook, url: URL}]`: each event POSTed as a CloudEvent."""

    url: str = Field(description="`http://` or `https://` URL each event is POSTed to.")
    mode: Literal["structured", "binary"] = Field(
        default="structured",
        description="CloudEvents HTTP binding: `structured` (the envelope as the body,"
        " `application/cloudevents+json`) or `binary` (`data` as the body, the attributes"
        " in `ce-*` headers).",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Headers added to every request (write secrets as `${VAR}`); never logged.",
    )
    headers_env: dict[str, str] = Field(
        default_factory=dict,
        description="Headers whose values are read from environment variables at start"
        " (`{Authorization: ALERTS_AUTH}`); never logged.",
    )
    secret_env: str | None = Field(
        default=None,
        description="Environment variable holding the Standard Webhooks signing secret"
        " (`whsec_...`); several, separated by spaces, sign with each while you rotate.",
    )
    secret_file: str | None = Field(
        default=None,
        description="A file of signing secrets, one a line, relative to the pipeline file"
        " (a mounted secret); used with or instead of `secret_env`.",
    )
    timeout: Duration = Field(
        default=timedelta(seconds=10), description="Longest wait for one request's answer."
    )
    retries: int = Field(
        default=3,
        ge=0,
        description="Further tries of one request after a timeout, a connection failure,"
        " 408, 425, 429 or 5xx, before the batch is left to the outbox's own backoff.",
    )
    backoff: Duration = Field(
        default=timedelta(milliseconds=500),
        description="Wait before the first of those tries, doubling each time (a"
        " `Retry-After` answer of up to 30 s is honoured instead).",
    )
    verify: bool | str = Field(
        default=True,
        description="Check the receiver's TLS certificate (`false` to skip, or the path of"
        " a CA bundle).",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _one_header_source(self) -> WebhookPublisherConfig:
        both = {h.lower() for h in self.headers} & {h.lower() for h in self.headers_env}
        if both:
            raise ValueError(f"header {sorted(both)[0]!r} is in both `headers` and `headers_env`")
        return self


class WebhookPublisher(Resource):
    """POSTs each completion event to ``url`` (see the module docs)."""

    config_model: ClassVar[type[BaseModel]] = WebhookPublisherConfig

    def __init__(self, name: str, config: Any, env: PluginEnv) -> None:
        if not isinstance(config, WebhookPublisherConfig):
            config = WebhookPublisherConfig.model_validate(config)
        self.name = name
        self.config = config
        self.env = env
        self.where = _without_query(config.url)
        self._client: httpx.AsyncClient | None = None
        self._headers: dict[str, str] = {}
        self._keys: list[bytes] = []
        self._done: dict[str, str | None] = {}
        """Events of a batch that then failed, delivered (None) or refused (why): not sent
        again when the outbox offers the batch again."""
        self._closed = False

    async def open(self) -> None:
        if self._closed:
            raise ClosedError(f"webhook publisher {self.name!r} is closed")
        if self._client is not None:
            return
        self._headers = {**self.config.headers, **self._env_headers()}
        self._keys = await asyncio.to_thread(self._signing_keys)  # may read a file
        self._client = await asyncio.to_thread(self._connect)  # loads the CA certificates

    def _connect(self) -> httpx.AsyncClient:
        verify: bool | ssl.SSLContext = self.config.verify is not False
        if isinstance(self.config.verify, str):
            bundle = self.env.base_dir / Path(self.config.verify).expanduser()
            try:
                verify = ssl.create_default_context(cafile=str(bundle))
            except (OSError, ssl.SSLError) as exc:
                raise PublishError(
                    f"webhook publisher {self.name!r}: cannot load the CA bundle"
                    f" {str(bundle)!r} (verify): {exc}"
                ) from exc
        return httpx.AsyncClient(
            timeout=self.config.timeout.total_seconds(), verify=verify, follow_redirects=False
        )

    def _env_headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for header, var in self.config.headers_env.items():
            value = os.environ.get(var)
            if value is None:
                raise PublishError(
                    f"webhook publisher {self.name!r}: the environment variable {var}"
                    f" (headers_env.{header}) is not set",
                    hint=f"export {var}, or drop the header",
                )
            out[header] = value
        return out

    def _signing_keys(self) -> list[bytes]:
        secrets: list[str] = []
        if self.config.secret_env is not None:
            value = os.environ.get(self.config.secret_env)
            if not value:
                raise PublishError(
                    f"webhook publisher {self.name!r}: the environment variable"
                    f" {self.config.secret_env} (secret_env) is not set",
                    hint="export it (whsec_ followed by base64), or drop `secret_env`",
                )
            secrets += value.split()
        if self.config.secret_file is not None:
            path = self.env.base_dir / Path(self.config.secret_file).expanduser()
            try:
                secrets += path.read_text().split()
            except OSError as exc:
                raise PublishError(
                    f"webhook publisher {self.name!r}: cannot read secret_file {str(path)!r}:"
                    f" {exc.strerror or exc}"
                ) from exc
        try:
            return [key("standard", s) for s in secrets]
        except ValueError as exc:
            raise PublishError(f"webhook publisher {self.name!r}: {exc}") from None

    async def publish(self, events: Sequence[Event]) -> None:
        client = self._client
        if self._closed or client is None:
            raise ClosedError(f"webhook publisher {self.name!r} is not open")
        rejected: dict[str, str] = {}
        for event in events:
            if event.id in self._done:
                refusal = self._done[event.id]
            else:
                refusal = self._done[event.id] = await self._deliver(client, event)
            if refusal is not None:
                rejected[event.id] = refusal
        self._done.clear()  # the outbox drops every event of the batch now
        if rejected:
            raise PublishRejected(
                f"webhook publisher {self.name!r}: {self.where} refused {len(rejected)}"
                f" event(s) for good",
                rejected,
            )

    async def _deliver(self, client: httpx.AsyncClient, event: Event) -> str | None:
        """POST one event, trying again ``retries`` times: None when delivered, why when
        refused for good; raises :class:`PublishError` for what may work later."""
        wait = self.config.backoff.total_seconds()
        for attempt in range(self.config.retries + 1):
            try:
                return await self._post(client, event)
            except _Later as exc:
                if attempt == self.config.retries:
                    raise PublishError(f"webhook publisher {self.name!r}: {exc}") from None
                await asyncio.sleep(exc.retry_after if exc.retry_after is not None else wait)
                wait *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(self, client: httpx.AsyncClient, event: Event) -> str | None:
        body, headers = self.request(event)  # signed again: a fresh webhook-timestamp
        try:
            answer = await client.post(self.config.url, content=body, headers=headers)
        except httpx.LocalProtocolError as exc:  # this request can never be sent as it is
            return f"POST {self.where}: the request cannot be sent ({exc})"
        except httpx.HTTPError as exc:
            what = "timed out" if isinstance(exc, httpx.TimeoutException) else str(exc) or "failed"
            raise _Later(f"POST {self.where} {what} ({type(exc).__name__})") from None
        status = answer.status_code
        if 200 <= status < 300:
            return None
        detail = f"HTTP {status} from {self.where}: {answer.text[:BODY_EXCERPT]}".rstrip(": ")
        if 400 <= status < 500 and status not in RETRIED:
            return detail
        raise _Later(detail, _retry_after(answer.headers.get("retry-after")))

    def request(self, event: Event) -> tuple[bytes, dict[str, str]]:
        """The body and headers of ``event``'s request (signed when there is a secret)."""
        headers = dict(self._headers)
        if self.config.mode == "structured":
            body = event.to_json().encode()
            headers["content-type"] = "application/cloudevents+json; charset=utf-8"
        else:
            envelope = event.model_dump(mode="json", exclude_none=True)
            body = _compact(envelope.pop("data"))
            headers["content-type"] = envelope.pop("datacontenttype")
            headers.update({f"ce-{k}": ce_header(str(v)) for k, v in envelope.items()})
        if self._keys:
            stamp = str(int(time.time()))
            headers["webhook-id"] = event.id
            headers["webhook-timestamp"] = stamp
            headers["webhook-signature"] = sign_standard(self._keys, event.id, stamp, body)
        return body, headers

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def ce_header(value: str) -> str:
    """An attribute's value as a ``ce-`` header: percent-encoded (UTF-8) where it is a space,
    ``"``, ``%`` or outside printable ASCII, as the CloudEvents HTTP binding says, so a
    partition value such as ``Zürich`` or one holding a newline is sent, not refused."""
    return "".join(
        ch if "!" <= ch <= "~" and ch not in '"%' else "".join(f"%{b:02X}" for b in ch.encode())
        for ch in value
    )


class _Later(Exception):
    """A request that may succeed later (timeout, connection, 408/425/429, 5xx)."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header given in seconds, at most 30; else None."""
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value.strip()), 30.0)


def _compact(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _without_query(url: str) -> str:
    """The URL as error messages show it: no query (it may hold a token), no user info."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
