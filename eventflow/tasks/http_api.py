"""The requests of the ``http`` task (:mod:`eventflow.tasks.http`): one request per attempt,
or a job submitted to an asynchronous API and polled, as a :class:`Handoff`.

Both judge an answer the same way: its status must be one of ``expect`` (any 2xx by default)
and ``success``, a JMESPath expression, truthy on its JSON body. A failure names the status
and the start of the body, never a header.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import jmespath.exceptions

from eventflow.datasets import OPTIONS, compile_expression
from eventflow.patterns import render, render_deep
from eventflow.tasks import timeout_detail
from eventflow.tasks._logs import write_capped
from eventflow.tasks.handoff import (
    DownstreamRun,
    HandoffError,
    Outcome,
    describe,
    downstream_key,
    request_json,
    safe_url,
)
from eventflow.types import RunContext, TaskResult

if TYPE_CHECKING:
    from eventflow.tasks.http import HttpPoll, HttpRequest

BODY_LIMIT = 65_536
"""Bytes of the response body kept in the attempt's stdout file and read by ``success``."""
EXCERPT = 200
"""Characters of an answer's body shown in a failure's detail."""
REQUEST_TIMEOUT = 30.0
"""Limit in seconds of each request of a job (submit, status, cancel, find) without
``timeout``."""


@dataclass(frozen=True, slots=True)
class HttpJob(DownstreamRun):
    """A job of an asynchronous API, with what its status and cancel URLs are rendered with."""

    variables: Mapping[str, str] = field(default_factory=dict)
    """The run's variables and ``key`` of the attempt that submitted or found the job."""

    def with_id(self) -> dict[str, str]:
        """What the job's status and cancel URLs are rendered with: its variables and ``id``."""
        return {**self.variables, "id": self.id}


class HttpApi:
    """The ``http`` task's client and requests; ``close`` is idempotent."""

    system: ClassVar[str] = "http"

    def __init__(self, request: HttpRequest, body_limit: int = BODY_LIMIT) -> None:
        self.request = request
        self.body_limit = body_limit
        self.client = httpx.AsyncClient(headers={"User-Agent": _user_agent()})

    async def close(self) -> None:
        await self.client.aclose()

    # --- one request per attempt ------------------------------------------------------------

    async def send(self, ctx: RunContext) -> TaskResult:
        """Send the request once; the attempt's result (the first ``body_limit`` bytes of the
        body, at most ``log_max_bytes``, go to its stdout file)."""
        request = self.request
        variables = job_variables(ctx)
        url = render(request.url, variables, url_value)
        limit = _smallest(request.timeout, ctx.timeout)
        try:
            async with (
                asyncio.timeout(limit) as scope,
                self.client.stream(
                    request.method,
                    url,
                    headers=self.headers(variables, ctx.run_id),
                    json=self.body(variables),
                    timeout=httpx.Timeout(limit),
                ) as response,
            ):
                status = response.status_code
                head = await _read_head(response, self.body_limit + 1)
        except TimeoutError:
            if not scope.expired():
                raise
            return _timed_out(limit)
        except httpx.TimeoutException:
            return _timed_out(limit)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            where = safe_url(url)
            return TaskResult(False, f"{request.method} {where} failed: {describe(exc)}")
        write_capped(ctx.stdout_path, head, min(self.body_limit, ctx.log_max_bytes))
        text = head.decode("utf-8", "replace")
        if not self.expected(status):
            detail = f"HTTP {status}: {excerpt(text)}".rstrip(": ")
        else:
            body = _json(head) if len(head) <= self.body_limit else None
            try:
                detail = body_problem(request.success, status, body, excerpt(text))
            except HandoffError as exc:
                detail = str(exc)
        return TaskResult(not detail, detail, {"status_code": status})

    # --- a job: the Handoff protocol -----------------------------------------------------

    async def find(self, ctx: RunContext) -> DownstreamRun | None:
        """The job an earlier attempt submitted: by ``poll.find``, else the one noted."""
        poll, variables = self.poll_options(), job_variables(ctx)
        if poll.find is None:
            noted = ctx.notes.get("downstream")
            if not isinstance(noted, Mapping) or noted.get("system") != self.system:
                return None
            found = noted.get("id")
        else:
            _, answer = await self.call("find", "GET", poll.find.url, variables)
            found = evaluate(poll.find.id, answer)
        if found is None or found == "":
            return None
        return await self.poll(self.job(_text(found), variables))

    async def submit(self, ctx: RunContext) -> DownstreamRun:
        return await self.submit_as(ctx, ctx.run_id)

    async def rerun(self, run: DownstreamRun, ctx: RunContext) -> DownstreamRun:
        """Submit a new job (its own ``Idempotency-Key``, ``<run_id>.<attempt>``: an API
        that keeps keys would answer the failed job again)."""
        return await self.submit_as(ctx, f"{ctx.run_id}.{ctx.attempt}")

    async def submit_as(self, ctx: RunContext, key: str) -> HttpJob:
        request, poll, variables = self.request, self.poll_options(), job_variables(ctx)
        status, answer = await self.call(
            "submit",
            request.method,
            request.url,
            variables,
            key=key,
            json=self.body(variables),
            ok=self.expected,
        )
        problem = body_problem(request.success, status, answer, excerpt(_compact(answer)))
        if problem:
            raise HandoffError(f"submit: {problem}", retriable=False)
        found = evaluate(poll.id, answer)
        if found is None or found == "":
            raise HandoffError(
                f"submit: HTTP {status} has no job id at `{poll.id}`: {excerpt(_compact(answer))}",
                retriable=False,
            )
        return self.job(_text(found), variables)

    async def poll(self, run: DownstreamRun) -> DownstreamRun:
        poll, job = self.poll_options(), _job(run)
        status, answer = await self.call("status", "GET", poll.url, job.with_id())
        value = evaluate(poll.state, answer)
        if value is None:
            raise HandoffError(
                f"status: HTTP {status} has no state at `{poll.state}`:"
                f" {excerpt(_compact(answer))}",
                retriable=False,
            )
        state = _text(value)
        outcome: Outcome = "running"
        if state in poll.success:
            outcome = "succeeded"
        elif state in poll.failure:
            outcome = "failed"
        detail = excerpt(_compact(answer)) if outcome == "failed" else ""
        return dataclasses.replace(job, state=state, outcome=outcome, detail=detail)

    async def cancel(self, run: DownstreamRun) -> None:
        cancel = self.poll_options().cancel
        if cancel is None:
            raise HandoffError(
                f"no `poll.cancel` is configured: job {run.id} goes on", retriable=False
            )
        await self.call("cancel", cancel.method, cancel.url, _job(run).with_id())

    # --- pieces ------------------------------------------------------------------------------

    def poll_options(self) -> HttpPoll:
        poll = self.request.poll
        if poll is None:
            raise HandoffError(
                "this http task has no `poll:`: it sends one request", retriable=False
            )
        return poll

    def job(self, job_id: str, variables: Mapping[str, str]) -> HttpJob:
        url = render(self.poll_options().url, {**variables, "id": job_id}, url_value)
        return HttpJob(job_id, safe_url(url), "submitted", "running", variables=variables)

    def expected(self, status: int) -> bool:
        expect = self.request.expect
        return status in expect if expect else 200 <= status < 300

    def headers(self, variables: Mapping[str, str], key: str) -> httpx.Headers:
        """eventflow's headers, replaced by the configured ones of the same name."""
        headers = httpx.Headers(
            {
                "Idempotency-Key": key,
                "X-Eventflow-Run-Id": variables["run_id"],
                "X-Eventflow-Attempt": variables["attempt"],
            }
        )
        headers.update({k: render(v, variables) for k, v in self.request.headers.items()})
        return headers

    def body(self, variables: Mapping[str, str]) -> Any:
        body = self.request.body
        return None if body is None else render_deep(body, variables)

    async def call(
        self,
        what: str,
        method: str,
        template: str,
        variables: Mapping[str, str],
        *,
        key: str | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        """One request of a job (``template`` rendered with ``variables``); see
        :func:`~eventflow.tasks.handoff.request_json`."""
        own = self.request.timeout
        return await request_json(
            self.client,
            method,
            render(template, variables, url_value),
            what=what,
            headers=self.headers(variables, key or variables["run_id"]),
            timeout=own.total_seconds() if own else REQUEST_TIMEOUT,
            **kwargs,
        )


def job_variables(ctx: RunContext) -> dict[str, str]:
    """What ``{var}`` of the task's templates can be: the run's variables and ``key``."""
    return {**ctx.variables, "key": downstream_key(ctx)}


def evaluate(expression: str, body: Any) -> Any:
    """``expression`` over a JSON answer; an error evaluating it fails the attempt."""
    try:
        return compile_expression(expression).search(body, OPTIONS)
    except jmespath.exceptions.JMESPathError as exc:
        raise HandoffError(f"`{expression}` failed on the answer: {exc}", retriable=False) from exc


def body_problem(expression: str | None, status: int, body: Any, shown: str) -> str:
    """Why an answer's body fails ``success`` (``expression``), or ``""``. ``body`` is the
    decoded JSON, None when it is not JSON; ``shown`` is its excerpt."""
    if expression is None:
        return ""
    if body is None:
        return f"HTTP {status}: the answer is not JSON, so `{expression}` cannot hold: {shown}"
    if truthy(evaluate(expression, body)):
        return ""
    return f"HTTP {status}: `{expression}` is false for the answer: {shown}"


def truthy(value: Any) -> bool:
    """JMESPath's truth: false, null and empty text, lists and objects are false; 0 is true."""
    return value is not None and value is not False and value not in ("", [], {})


def excerpt(text: str) -> str:
    """The start of a body on one line, for a failure's detail."""
    line = " ".join(text.split())
    return line if len(line) <= EXCERPT else line[:EXCERPT] + "..."


def url_value(value: str) -> str:
    """``value`` percent-encoded as one path segment or query value (RFC 3986 unreserved
    characters kept): what a ``{var}`` of the URL becomes."""
    return urllib.parse.quote(value, safe="")


def _job(run: DownstreamRun) -> HttpJob:
    if not isinstance(run, HttpJob):
        raise TypeError(f"{run.id} is not a job of an http task")
    return run


def _text(value: Any) -> str:
    """A job id or state as text: a string as it is, anything else as JSON (``true``, 3)."""
    return value if isinstance(value, str) else json.dumps(value)


def _compact(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


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
