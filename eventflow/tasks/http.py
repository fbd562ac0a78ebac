"""The ``http`` task: send one HTTP request per attempt (Airflow's or Dagster's REST API, a
webhook).

.. code-block:: yaml

    run:
      http:
        url: https://airflow.example.com/api/v2/dags/report/dagRuns
        method: POST                       # the default
        json: {dag_run_id: "{run_id}", logical_date: null, conf: {dt: "{dt}"}}
        headers: {Authorization: "Bearer ${AIRFLOW_TOKEN}"}
        timeout: 30s                       # optional; the smaller of this and run.timeout
        expect: [200, 409]                 # optional; default: any 2xx

``{var}`` in the URL, the header values and the strings of the JSON body is replaced by the
run's variables. In the URL each value is percent-encoded as one path segment or query value
(every character but letters, digits and ``-._~``): a ``/`` in a value does not add a path
segment, a ``&`` or ``#`` does not end a query value; the JSON body is encoded as JSON, so a
value's quotes stay inside its string. Every request carries ``Idempotency-Key`` and
``X-Eventflow-Run-Id`` (the run id, the same for every attempt) and ``X-Eventflow-Attempt``;
configured headers of the same name replace them. The first 64 KiB of the response body go
to the attempt's stdout file. Header values are never logged nor put in a result (they carry
secrets), and error messages show the URL without its query string.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
import urllib.parse
from datetime import timedelta
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from eventflow.durations import Duration
from eventflow.errors import ClosedError
from eventflow.lifecycle import Resource
from eventflow.patterns import render, render_deep
from eventflow.tasks import Text, timeout_detail
from eventflow.tasks._logs import write_capped
from eventflow.tasks.handoff import describe, safe_url
from eventflow.types import PluginEnv, RunContext, TaskResult

BODY_LIMIT = 65_536
"""Bytes of the response body kept in the attempt's stdout file."""
_METHOD = re.compile(r"^[A-Z]+$")


class HttpRequest(BaseModel):
    """The request an ``http`` task sends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        description="`http://` or `https://` URL; `{var}` is replaced by the value"
        " percent-encoded (a `/` in it stays within its path segment)."
    )
    method: str = Field(default="POST", description="HTTP method.")
    body: Any = Field(
        default=None,
        alias="json",
        description="JSON body; `{var}` in its strings is replaced. None: no body.",
    )
    headers: dict[str, Text] = Field(
        default_factory=dict, description="Extra request headers; `{var}` is replaced."
    )
    timeout: Duration | None = Field(
        default=None,
        description="Limit of the whole request; the smaller of this and the rule's"
        " `run.timeout` applies.",
    )
    expect: tuple[int, ...] | None = Field(
        default=None,
        min_length=1,
        description="Status codes that mean success; default: any 2xx.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        value = value.strip().upper()
        if not _METHOD.match(value):
            raise ValueError(f"{value!r} is not an HTTP method")
        return value

    @field_validator("expect")
    @classmethod
    def _codes(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        for code in value or ():
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code")
        return value


class HttpConfig(BaseModel):
    """``http: {url: ..., ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    http: HttpRequest


class HttpTask(Resource):
    """Runs one attempt of an ``http`` task (see the module docs).

    One ``httpx.AsyncClient`` per runner, created at the first attempt and reused (its
    connection pool serves every run of the rule); ``close`` releases it and is idempotent.
    """

    config_model: ClassVar[type[BaseModel]] = HttpConfig
    body_limit: ClassVar[int] = BODY_LIMIT

    def __init__(self, config: Any, env: PluginEnv) -> None:
        self.config: HttpConfig = (
            config if isinstance(config, HttpConfig) else HttpConfig.model_validate(config)
        )
        self.env = env
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._closed:
            raise ClosedError("this http task runner is closed")
        if self._client is None:
            self._client = httpx.AsyncClient(headers={"User-Agent": _user_agent()})
        return self._client

    async def run(self, ctx: RunContext) -> TaskResult:
        client = self._http()
        request = self.config.http
        url = render(request.url, ctx.variables, url_value)
        headers = httpx.Headers(
            {
                "Idempotency-Key": ctx.run_id,
                "X-Eventflow-Run-Id": ctx.run_id,
                "X-Eventflow-Attempt": str(ctx.attempt),
            }
        )
        headers.update({k: render(v, ctx.variables) for k, v in request.headers.items()})
        body = None if request.body is None else render_deep(request.body, ctx.variables)
        limit = _smallest(request.timeout, ctx.timeout)
        keep = min(self.body_limit, ctx.log_max_bytes)
        try:
            async with (
                asyncio.timeout(limit) as scope,
                client.stream(
                    request.method, url, headers=headers, json=body, timeout=httpx.Timeout(limit)
                ) as response,
            ):
                status = response.status_code
                head = await _read_head(response, keep + 1)
        except TimeoutError:
            if not scope.expired():
                raise
            return _timed_out(limit)
        except httpx.TimeoutException:
            return _timed_out(limit)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            where = safe_url(url)
            return TaskResult(False, f"{request.method} {where} failed: {describe(exc)}")
        write_capped(ctx.stdout_path, head, keep)
        ok = status in request.expect if request.expect else 200 <= status < 300
        return TaskResult(ok, "" if ok else f"HTTP {status}", {"status_code": status})


def url_value(value: str) -> str:
    """``value`` percent-encoded as one path segment or query value (RFC 3986 unreserved
    characters kept): what a ``{var}`` of the URL becomes."""
    return urllib.parse.quote(value, safe="")


async def _read_head(response: httpx.Response, size: int) -> bytes:
    """The first ``size`` bytes of the body; the rest is not read (the response is closed)."""
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= size:
            break
    return bytes(data[:size])


def _user_agent() -> str:
    try:
        return f"eventflow/{importlib.metadata.version('eventflow')}"
    except importlib.metadata.PackageNotFoundError:
        return "eventflow"


def _smallest(own: timedelta | None, run: float | None) -> float | None:
    limits = [t for t in (own.total_seconds() if own else None, run) if t is not None]
    return min(limits) if limits else None


def _timed_out(limit: float | None) -> TaskResult:
    return TaskResult(False, timeout_detail(limit or 0), {"timed_out": True})
