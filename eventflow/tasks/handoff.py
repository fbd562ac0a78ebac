"""Hand-off tasks: start a run in another system and finish with it, exactly once.

A hand-off task (``airflow``, ``dagster``, ``prefect``, the ``http`` task's poll mode) does
not fire and forget. Each attempt:

1. looks for the downstream run this eventflow run already started (by a key derived from
   the pipeline and the run id, the same for every attempt: :func:`downstream_key`), so an
   attempt repeated after a crash or a shutdown *adopts* the run it started before instead of
   starting a second one;
2. starts it when there is none, or re-runs it when the one found failed or was cancelled
   (the same run where the system can, a new one tagged with the attempt where it cannot);
3. notes the downstream run on the eventflow run (``RunContext.note``: durable, shown by
   ``eventflow runs``, the API and the page);
4. polls its state with backoff and jitter until it is terminal, within the rule's
   ``run.timeout``; a timeout, or an operator's ``eventflow cancel``, cancels the downstream
   run;
5. succeeds only when the downstream run succeeded, so the rule's ``produces`` dataset is
   announced only then.

Errors the system answers with are :class:`HandoffError`: a retriable one (connection refused,
timeout, 5xx, 429) is retried with backoff for ``retry_for`` while the downstream run goes on;
any other (4xx, a GraphQL error, an unknown DAG) fails the attempt with its message. A
shutdown leaves the downstream run alone: the next start adopts it.

The system-specific part is a :class:`Handoff`; :class:`HandoffTask` is the loop.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field

from eventflow import backoff
from eventflow.crashpoints import crash_point
from eventflow.durations import Duration
from eventflow.events import JSON
from eventflow.lifecycle import Resource
from eventflow.log import get_logger
from eventflow.tasks import timeout_detail
from eventflow.types import PluginEnv, RunContext, TaskResult, operator_cancelled

Outcome = Literal["running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[Outcome] = frozenset({"succeeded", "failed", "cancelled"})
CLEANUP_SECONDS = 30.0
"""How long cancelling a downstream run may take after eventflow's timeout ended an attempt."""
T = TypeVar("T")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class DownstreamRun:
    """A run in the downstream system, as its adapter last saw it."""

    id: str
    """The system's own run id (Airflow's ``dag_run_id``, Dagster's run id, Prefect's flow run
    id)."""
    url: str | None
    """Where a human sees the run (the system's page of it)."""
    state: str
    """The system's own name of its state (``queued``, ``STARTED``, ``Completed``)."""
    outcome: Outcome
    """The state mapped by the adapter: ``running`` for every state that is not terminal."""
    detail: str = ""
    """Why it failed, in the system's words (one line)."""
    facts: Mapping[str, JSON] = field(default_factory=dict)
    """More of what the adapter knows and the run should show (Flink's savepoint path)."""

    def to_dict(self, system: str) -> dict[str, JSON]:
        return {
            **self.facts,
            "system": system,
            "id": self.id,
            "url": self.url,
            "state": self.state,
            "outcome": self.outcome,
        }


class HandoffError(Exception):
    """The downstream system refused a request or could not be reached.

    ``retriable``: a connection error, a timeout, a 5xx or 429 answer; the loop retries it with
    backoff. Otherwise (a 4xx, a GraphQL error, bad credentials, an unknown DAG or job) the
    attempt fails with this message, which must not hold a secret.
    """

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class Handoff(Protocol):
    """What a hand-off task knows of its system. One per rule's task runner, reused by every
    attempt; it holds the connection pool. It never logs nor returns a secret."""

    system: ClassVar[str]
    """The system's name in notes, results and logs: ``airflow``, ``dagster``, ``prefect``."""

    async def find(self, ctx: RunContext) -> DownstreamRun | None:
        """The downstream run this eventflow run started (by :func:`downstream_key`; the
        newest when there are several), or None."""
        ...

    async def submit(self, ctx: RunContext) -> DownstreamRun:
        """Start the downstream run under :func:`downstream_key` with the run's parameters; a
        run that already exists under that key is returned, not an error."""
        ...

    async def rerun(self, run: DownstreamRun, ctx: RunContext) -> DownstreamRun:
        """Run ``run`` (failed or cancelled) again for attempt ``ctx.attempt``: the same run
        where the system can, else a new one tagged with the key and the attempt."""
        ...

    async def poll(self, run: DownstreamRun) -> DownstreamRun:
        """The run's current state."""
        ...

    async def cancel(self, run: DownstreamRun) -> None:
        """Ask the system to stop the run."""
        ...

    async def close(self) -> None:
        """Release the connection pool; a second call does nothing."""
        ...


def downstream_key(ctx: RunContext) -> str:
    """``eventflow__<pipeline>__<run_id>``: the downstream id (or tag, or idempotency key) of
    the eventflow run, the same for every attempt; two pipelines (production and staging)
    never share one. Only ``[A-Za-z0-9_.-]``, which every system accepts in a run id."""
    pipeline = _UNSAFE.sub("-", ctx.pipeline).strip("-") or "pipeline"
    return f"eventflow__{pipeline}__{ctx.run_id}"


class HandoffSettings(BaseModel):
    """How a hand-off task waits for its downstream run (a base of each task's own options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    poll: Duration = Field(
        default=timedelta(seconds=1),
        description="First wait between two status polls; each next wait is 1.5 times longer"
        " (with jitter), up to `poll_max`.",
    )
    poll_max: Duration = Field(
        default=timedelta(seconds=15), description="Longest wait between two status polls."
    )
    retry_for: Duration = Field(
        default=timedelta(minutes=5),
        description="How long the system may stay unreachable (connection errors, timeouts,"
        " 5xx and 429 answers, retried with backoff) before the attempt fails.",
    )


class HandoffTask(Resource):
    """A task runner that hands each attempt to a :class:`Handoff` and waits for it.

    Subclasses set ``config_model`` and implement :meth:`build` (the adapter, made at the
    first attempt) and :meth:`settings` (their :class:`HandoffSettings`).
    """

    config_model: ClassVar[type[BaseModel]]

    def __init__(self, config: Any, env: PluginEnv) -> None:
        self.config = (
            config
            if isinstance(config, self.config_model)
            else self.config_model.model_validate(config)
        )
        self.env = env
        self.rng = random.Random()
        self._handoff: Handoff | None = None

    def build(self) -> Handoff:
        """The adapter of this task's system and options."""
        raise NotImplementedError

    def settings(self) -> HandoffSettings:
        """This task's polling and retry options."""
        raise NotImplementedError

    async def close(self) -> None:
        handoff, self._handoff = self._handoff, None
        if handoff is not None:
            await handoff.close()

    def _adapter(self) -> Handoff:
        if self._handoff is None:
            self._handoff = self.build()
        return self._handoff

    async def run(self, ctx: RunContext) -> TaskResult:
        handoff = self._adapter()
        settings = self.settings()
        log = get_logger(component="handoff", system=handoff.system).bind(
            run_id=ctx.run_id, rule=ctx.rule, attempt=ctx.attempt
        )
        attempt = _Attempt(handoff, ctx, settings, log, self.rng)
        try:
            async with asyncio.timeout(ctx.timeout) as scope:
                downstream = await attempt.start()
                downstream = await attempt.wait(downstream)
        except TimeoutError:
            if not scope.expired():
                raise
            return await attempt.timed_out(ctx.timeout or 0)
        except asyncio.CancelledError as exc:
            if operator_cancelled(exc):  # a shutdown leaves it running: the next start adopts it
                await asyncio.shield(attempt.stop_downstream("cancelled"))
            raise
        except HandoffError as exc:
            return attempt.result(attempt.current, ok=False, detail=str(exc))
        ok = downstream.outcome == "succeeded"
        detail = "" if ok else _failure(handoff.system, downstream)
        return attempt.result(downstream, ok=ok, detail=detail)


class _Attempt:
    """One attempt of a hand-off task: what it found or started, and its waits."""

    def __init__(
        self,
        handoff: Handoff,
        ctx: RunContext,
        settings: HandoffSettings,
        log: Any,
        rng: random.Random,
    ) -> None:
        self.handoff = handoff
        self.ctx = ctx
        self.settings = settings
        self.log = log
        self.rng = rng
        self.current: DownstreamRun | None = None

    async def start(self) -> DownstreamRun:
        """Adopt the downstream run of an earlier attempt, re-run it when it failed, or start
        one; noted on the eventflow run before the first poll."""
        found = await self.call("find", lambda: self.handoff.find(self.ctx))
        if found is None:
            run = await self.call("submit", lambda: self.handoff.submit(self.ctx))
            self.log.info("handoff_submitted", downstream_id=run.id, state=run.state)
            crash_point("handoff.after_submit")
        elif found.outcome in ("failed", "cancelled"):
            run = await self.call("rerun", lambda: self.handoff.rerun(found, self.ctx))
            self.log.info("handoff_rerun", downstream_id=run.id, previous=found.id, state=run.state)
        else:
            run = found
            self.log.info("handoff_adopted", downstream_id=run.id, state=run.state)
        await self.noted(run)
        crash_point("handoff.after_note")
        return run

    async def wait(self, run: DownstreamRun) -> DownstreamRun:
        """Poll ``run`` until it is terminal (waits grow by 1.5 up to ``poll_max``)."""
        polls = 0
        while run.outcome not in TERMINAL:
            polls += 1
            await asyncio.sleep(
                backoff.delay(
                    polls,
                    first=self.settings.poll.total_seconds(),
                    cap=self.settings.poll_max.total_seconds(),
                    factor=1.5,
                    rng=self.rng,
                )
            )
            latest = await self.call("poll", functools.partial(self.handoff.poll, run))
            if latest.state != run.state:
                await self.noted(latest)
            run = latest
        self.log.info("handoff_finished", downstream_id=run.id, state=run.state)
        return run

    async def timed_out(self, limit: float) -> TaskResult:
        """eventflow's timeout ended the attempt: cancel the downstream run and fail."""
        detail = timeout_detail(limit)
        problem = await self.stop_downstream("timeout")
        if problem:
            detail += f"; the downstream run could not be cancelled: {problem}"
        return self.result(self.current, ok=False, detail=detail, timed_out=True)

    async def stop_downstream(self, reason: str) -> str:
        """Cancel the downstream run (found again when the attempt ended before its id was
        known); returns why that failed, or "". Takes at most CLEANUP_SECONDS."""
        try:
            async with asyncio.timeout(CLEANUP_SECONDS):
                run = self.current or await self.handoff.find(self.ctx)
                if run is not None and run.outcome not in TERMINAL:
                    await self.handoff.cancel(run)
                    self.log.warning("handoff_cancelled", downstream_id=run.id, reason=reason)
                    await self.noted(await self.handoff.poll(run))
        except (HandoffError, TimeoutError) as exc:
            problem = str(exc) or type(exc).__name__
            self.log.error("handoff_cancel_failed", error=problem, reason=reason)
            return problem
        return ""

    async def call(self, what: str, request: Callable[[], Awaitable[T]]) -> T:
        """``request()``, again after a retriable error, with backoff, for up to
        ``retry_for`` of errors in a row."""
        retry_for = self.settings.retry_for.total_seconds()
        first_error: float | None = None
        failures = 0
        while True:
            try:
                return await request()
            except HandoffError as exc:
                now = time.monotonic()
                first_error = now if first_error is None else first_error
                if not exc.retriable or now - first_error >= retry_for:
                    raise
                failures += 1
                wait = backoff.delay(failures, first=0.5, cap=30.0, rng=self.rng)
                self.log.warning("handoff_retried", request=what, error=str(exc), wait=wait)
                await asyncio.sleep(wait)

    async def noted(self, run: DownstreamRun) -> None:
        self.current = run
        await self.ctx.note({"downstream": run.to_dict(self.handoff.system)})

    def result(
        self, run: DownstreamRun | None, *, ok: bool, detail: str, timed_out: bool = False
    ) -> TaskResult:
        output: dict[str, JSON] = {}
        if run is not None:
            output["downstream"] = run.to_dict(self.handoff.system)
        if timed_out:
            output["timed_out"] = True
        return TaskResult(ok, detail, output)


def _failure(system: str, run: DownstreamRun) -> str:
    why = f": {run.detail}" if run.detail else ""
    return f"{system} run {run.id} ended {run.state}{why}"


# --- helpers for adapters that speak HTTP -----------------------------------------------------


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str,
    ok: Callable[[int], bool] = lambda status: 200 <= status < 300,
    **kwargs: Any,
) -> tuple[int, Any]:
    """Send one request and return ``(status, decoded JSON body or None)``; failures are
    :class:`HandoffError` saying ``what`` was asked (retriable for connection errors,
    timeouts, 5xx and 429). The URL is shown without its query; headers never are."""
    where = safe_url(url)
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise HandoffError(f"{what}: {method} {where} timed out", retriable=True) from exc
    except httpx.TransportError as exc:
        raise HandoffError(
            f"{what}: {method} {where} failed: {describe(exc)}", retriable=True
        ) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise HandoffError(
            f"{what}: {method} {where} failed: {describe(exc)}", retriable=False
        ) from exc
    status = response.status_code
    body = _json_or_none(response)
    if ok(status):
        return status, body
    retriable = status >= 500 or status == 429
    message = _message(body) or response.text[:200].strip()
    suffix = f": {message}" if message else ""
    raise HandoffError(
        f"{what}: {method} {where} answered HTTP {status}{suffix}", retriable=retriable
    )


def safe_url(url: str) -> str:
    """The URL without user info, query or fragment: safe to show."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "(invalid URL)"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"


def describe(exc: BaseException) -> str:
    """``TypeName: message`` of an exception (its cause's text when it has none)."""
    text = str(exc) or repr(exc.__cause__ or "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(body: Any) -> str:
    """The error text of a JSON error answer (``detail``, ``message`` or ``error``), one line."""
    if isinstance(body, dict):
        for key in ("detail", "message", "error", "title", "exception_message"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip().splitlines()[0][:300]
            if value:
                return str(value)[:300]
    return ""


__all__ = [
    "TERMINAL",
    "DownstreamRun",
    "Handoff",
    "HandoffError",
    "HandoffSettings",
    "HandoffTask",
    "Outcome",
    "describe",
    "downstream_key",
    "request_json",
    "safe_url",
]
