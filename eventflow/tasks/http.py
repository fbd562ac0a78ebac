"""The ``http`` task: send one HTTP request per attempt (a webhook, a REST API), or submit a
job to an asynchronous API (Flink's, Spark's, a warehouse's) and poll it until it ends.

.. code-block:: yaml

    run:
      http:
        url: https://api.example.com/jobs
        method: POST                       # the default
        json: {name: "report-{dt}", args: {dt: "{dt}"}}
        headers: {Authorization: "Bearer ${API_TOKEN}"}
        timeout: 30s                       # optional; the smaller of this and run.timeout
        expect: [200, 202]                 # optional; default: any 2xx
        success: "errors == null"          # optional; JMESPath over the JSON body

The attempt succeeds when the status is one of ``expect`` and ``success`` (when given) is
truthy on the decoded JSON body; a failure's detail names the status and the start of the
body. With ``poll:`` the request submits a job and the attempt is a hand-off
(:mod:`eventflow.tasks.handoff`): the job's id is read from the answer, noted on the run,
polled at ``poll.url`` until its ``state`` is one of ``success`` or ``failure``, cancelled at
the rule's timeout, and adopted (not submitted again) by an attempt after a crash.

``{var}`` in the URLs, the header values and the strings of the JSON body is replaced by the
run's variables and ``{key}`` (``eventflow__<pipeline>__<store>__<run_id>``); the ``poll`` URLs also
take ``{id}``, the job's id. In a URL each value is percent-encoded as one path segment or
query value (every character but letters, digits and ``-._~``): a ``/`` in a value does not
add a path segment, a ``&`` or ``#`` does not end a query value; the JSON body is encoded as
JSON, so a value's quotes stay inside its string. Every request carries ``Idempotency-Key``
and ``X-Eventflow-Run-Id`` (the run id, the same for every attempt; a re-submit after a
failed job sends ``<run_id>.<attempt>`` as its key) and ``X-Eventflow-Attempt``; configured
headers of the same name replace them. Without ``poll`` the first 64 KiB of the response body
go to the attempt's stdout file. Header values are never logged nor put in a result (they
carry secrets), and error messages show the URL without its query string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from eventflow.datasets import ExpressionError, compile_expression
from eventflow.durations import Duration
from eventflow.errors import ClosedError
from eventflow.tasks import Text
from eventflow.tasks.handoff import Handoff, HandoffSettings, HandoffTask
from eventflow.tasks.http_api import BODY_LIMIT, HttpApi
from eventflow.types import PluginEnv, RunContext, TaskResult

_METHOD = re.compile(r"^[A-Z]+$")


def _http_url(value: str) -> str:
    if not value.lower().startswith(("http://", "https://")):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


def _http_method(value: str) -> str:
    value = value.strip().upper()
    if not _METHOD.match(value):
        raise ValueError(f"{value!r} is not an HTTP method")
    return value


def _jmespath(value: str) -> str:
    try:
        compile_expression(value)
    except ExpressionError as exc:
        raise ValueError(f"{exc}; {exc.hint}") from exc
    return value


def _status_codes(value: tuple[int, ...]) -> tuple[int, ...]:
    for code in value:
        if not 100 <= code <= 599:
            raise ValueError(f"{code} is not an HTTP status code")
    return value


def _base_url(value: str) -> str:
    return _http_url(value).rstrip("/")


Url = Annotated[str, AfterValidator(_http_url)]
BaseUrl = Annotated[str, AfterValidator(_base_url)]
"""An http(s) URL that paths are appended to (an API's base): without its trailing ``/``."""
Method = Annotated[str, AfterValidator(_http_method)]
Expression = Annotated[str, AfterValidator(_jmespath)]
"""A JMESPath expression, compiled when the config is loaded (a bad one is a config error)."""


class HttpCall(BaseModel):
    """A URL and its method: the job's ``cancel``, and the start of the task's request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Url = Field(
        description="`http://` or `https://` URL; `{var}` is replaced by the value"
        " percent-encoded (a `/` in it stays within its path segment)."
    )
    method: Method = Field(default="POST", description="HTTP method.")


class HttpFind(BaseModel):
    """How to find the job an earlier attempt submitted, by ``{key}`` (a ``GET``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Url = Field(description="URL listing the job submitted under `{key}`.")
    id: Expression = Field(
        description="JMESPath over the JSON answer: the job's id; null when there is none."
    )


class HttpPoll(HandoffSettings):
    """``poll:``: the request submits a job; the attempt waits for it to end."""

    id: Expression = Field(description="JMESPath over the submit's JSON answer: the job's id.")
    url: Url = Field(description="The job's status URL; `{id}` is the job's id.")
    state: Expression = Field(description="JMESPath over the status answer: the job's state.")
    success: tuple[Text, ...] = Field(min_length=1, description="States of a job that succeeded.")
    failure: tuple[Text, ...] = Field(
        min_length=1, description="States of a job that failed or was cancelled."
    )
    cancel: HttpCall | None = Field(
        default=None,
        description="The request that stops the job (at the rule's timeout); `{id}` is the"
        " job's id. None: a timed-out job goes on.",
    )
    find: HttpFind | None = Field(
        default=None,
        description="How an attempt finds the job an earlier one submitted; None: by the job"
        " noted on the run (`notes.downstream.id`).",
    )

    @model_validator(mode="after")
    def _disjoint(self) -> Self:
        both = sorted(set(self.success) & set(self.failure))
        if both:
            raise ValueError(
                f"{', '.join(both)} is listed in both `success` and `failure`; keep it in one"
            )
        return self


class HttpRequest(HttpCall):
    """The request an ``http`` task sends."""

    body: Any = Field(
        default=None,
        alias="json",
        description="JSON body; `{var}` in its strings is replaced. None: no body.",
    )
    headers: dict[str, Text] = Field(
        default_factory=dict,
        description="Extra request headers (of every request); `{var}` is replaced.",
    )
    timeout: Duration | None = Field(
        default=None,
        description="Limit of each request; the smaller of this and the rule's `run.timeout`"
        " applies.",
    )
    expect: Annotated[tuple[int, ...], AfterValidator(_status_codes)] | None = Field(
        default=None,
        min_length=1,
        description="Status codes that mean success; default: any 2xx.",
    )
    success: Expression | None = Field(
        default=None,
        description="JMESPath over the JSON answer that must be truthy for success (with"
        " `poll`: of the submit), e.g. `errors == null`.",
    )
    poll: HttpPoll | None = Field(
        default=None, description="Submit a job and wait for it to end (see the how-to)."
    )


class HttpConfig(BaseModel):
    """``http: {url: ..., ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    http: HttpRequest


class HttpTask(HandoffTask):
    """Runs one attempt of an ``http`` task (see the module docs): one request, or with
    ``poll`` the hand-off loop over the job.

    One :class:`~eventflow.tasks.http_api.HttpApi` (one ``httpx.AsyncClient``) per runner,
    created at the first attempt and reused (its connection pool serves every run of the
    rule); ``close`` releases it and is idempotent.
    """

    config_model: ClassVar[type[BaseModel]] = HttpConfig
    template_variables: ClassVar[Mapping[tuple[str, ...], tuple[str, ...]]] = {
        ("http",): ("key",),
        ("http", "poll"): ("id",),
    }
    """What ``eventflow validate`` accepts besides the run's variables, by config path."""
    body_limit: ClassVar[int] = BODY_LIMIT
    config: HttpConfig

    def __init__(self, config: Any, env: PluginEnv) -> None:
        super().__init__(config, env)
        self._api: HttpApi | None = None
        self._closed = False

    def build(self) -> Handoff:
        return self.api()

    def settings(self) -> HandoffSettings:
        return self.config.http.poll or HandoffSettings()

    def api(self) -> HttpApi:
        """The runner's requests and their client, made at the first use."""
        if self._closed:
            raise ClosedError("this http task runner is closed")
        if self._api is None:
            self._api = HttpApi(self.config.http, self.body_limit)
        return self._api

    async def close(self) -> None:
        self._closed = True
        api, self._api = self._api, None
        await super().close()
        if api is not None:
            await api.close()

    async def run(self, ctx: RunContext) -> TaskResult:
        if self.config.http.poll is None:
            return await self.api().send(ctx)
        return await super().run(ctx)
