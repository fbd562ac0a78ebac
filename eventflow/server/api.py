"""The JSON API, health checks and ``/metrics`` (described by :mod:`eventflow.server.openapi`)."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from eventflow import metrics
from eventflow.actions import EmitError, emit_item
from eventflow.errors import EventflowError
from eventflow.events import utcnow
from eventflow.records import RUN_STATUSES, RunRecord
from eventflow.server.hooks import HOOKS, HookRequest
from eventflow.views import (
    events,
    matches,
    paging,
    pauses,
    reliability,
    rules,
    runs,
    sensors,
    status,
    workers,
)

if TYPE_CHECKING:
    from eventflow.runtime import Runtime

STATUSES = RUN_STATUSES
MATCH_STATUSES = matches.MATCH_STATUSES
MAX_LIMIT = 10_000


class BadRequest(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def problem(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def limit_of(request: Request, default: int) -> int:
    """The ``limit`` query parameter (1 to 10,000), ``default`` when absent."""
    return _limit(request, default)


def _limit(request: Request, default: int) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(400, f"limit must be an integer, not {raw!r}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequest(400, f"limit must be between 1 and {MAX_LIMIT}")
    return value


def _partition(request: Request) -> dict[str, str]:
    """``partition=VAR=VALUE`` (repeated), or the older ``partition.VAR=VALUE``."""
    found = {}
    for pair in request.query_params.getlist("partition"):
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise BadRequest(400, f"partition must be VAR=VALUE, not {pair!r}")
        found[name] = value
    for name, value in request.query_params.items():
        if name.startswith("partition."):
            found[name[len("partition.") :]] = value
    return found


def _time(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return paging.parse_time(raw, utcnow())
    except ValueError as exc:
        raise BadRequest(400, f"{name}: {exc}") from None


def _choice(request: Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query_params.get(name)
    if value is not None and value not in allowed:
        raise BadRequest(400, f"{name} must be one of {', '.join(allowed)}")
    return value


class Api:
    """Handlers over one runtime: its pipeline, its store, its sensors."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.pipeline = runtime.pipeline
        self.store = runtime.store
        self._scraped = 0.0

    # -- health -----------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Ready when the store answers and every sensor reaches its source or is still
        within its retry budget."""
        checks: dict[str, Any] = {}
        ready = self.runtime.engine is not None
        if ready:
            try:
                await self.store.next_timer_due()
                checks["store"] = {"ok": True, "detail": "open"}
            except EventflowError as exc:
                ready = False
                checks["store"] = {"ok": False, "detail": str(exc)}
        else:
            checks["store"] = {"ok": False, "detail": "starting"}
        for sensor in sensors.sensors(self.runtime):
            if sensor.state == "starting":
                checks[f"sensor:{sensor.sensor}"] = {"ok": False, "detail": "not started"}
            else:
                checks[f"sensor:{sensor.sensor}"] = {
                    "ok": sensor.ok,
                    "healthy": sensor.healthy,
                    "detail": sensor.detail,
                }
            ready = ready and sensor.ok
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    async def metrics(self, request: Request) -> Response:
        if self.runtime.engine is not None and time.monotonic() - self._scraped > 1.0:
            self._scraped = time.monotonic()
            # On a store error the gauges keep their last values; /readyz says why.
            with contextlib.suppress(EventflowError):
                metrics.refresh_store(await self.store.counts())
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # -- reading ----------------------------------------------------------------------------

    async def get_status(self, request: Request) -> Response:
        view = await status.status(self.pipeline, self.store, limit=_limit(request, 50))
        return JSONResponse(view.to_dict())

    async def get_rules(self, request: Request) -> Response:
        found = await rules.rules(self.pipeline, self.store)
        paused = pauses.by_name(await pauses.pauses(self.store), "rule")
        figures = await reliability.reliability(self.pipeline, self.store)
        return JSONResponse(
            {
                "rules": [pauses.with_pause(r.to_dict(), paused.get(r.rule)) for r in found],
                "reliability": [r.to_dict() for r in figures],
            }
        )

    async def get_matches(self, request: Request) -> Response:
        """A page of partial matches: ``items``, ``next`` and ``total``; ``matches`` repeats
        ``items`` for the clients of the list before paging."""
        params = request.query_params
        try:
            page = await matches.match_page(
                self.pipeline,
                self.store,
                rule=params.get("rule"),
                status=_choice(request, "status", MATCH_STATUSES),
                partition=_partition(request),
                since=_time(request, "since"),
                until=_time(request, "until"),
                limit=_limit(request, 100),
                cursor=params.get("cursor"),
            )
        except paging.BadCursor as exc:
            raise BadRequest(400, str(exc)) from None
        body = page.to_dict(matches.PartialMatch.to_dict)
        return JSONResponse({**body, "matches": body["items"]})

    async def get_runs(self, request: Request) -> Response:
        """A page of runs: ``items``, ``next`` (the ``cursor`` of the following page) and
        ``total``; ``runs`` repeats ``items`` for the clients of the list before paging."""
        params = request.query_params
        try:
            page = await runs.run_page(
                self.store,
                rule=params.get("rule"),
                status=_choice(request, "status", STATUSES),  # type: ignore[arg-type]
                partition=_partition(request),
                since=_time(request, "since"),
                until=_time(request, "until"),
                limit=_limit(request, 50),
                cursor=params.get("cursor"),
            )
        except paging.BadCursor as exc:
            raise BadRequest(400, str(exc)) from None
        body = page.to_dict(runs.RunView.to_dict)
        return JSONResponse({**body, "runs": body["items"]})

    async def get_run(self, request: Request) -> Response:
        return JSONResponse((await self._run(request)).to_dict())

    async def get_run_logs(self, request: Request) -> Response:
        run = await self._run(request)
        raw = request.query_params.get("attempt")
        attempt = None
        if raw is not None:
            try:
                attempt = int(raw)
            except ValueError:
                raise BadRequest(400, f"attempt must be an integer, not {raw!r}") from None
            if not 1 <= attempt <= max(run.attempt, 1):
                raise BadRequest(404, f"run {run.run_id} has no attempt {attempt}")
        return JSONResponse(runs.run_logs(self.pipeline, run, attempt).to_dict())

    async def get_sensors(self, request: Request) -> Response:
        """This worker's sensors, and (``reported``) every worker's from the store."""
        paused = pauses.by_name(await pauses.pauses(self.store), "sensor")
        found = await workers.workers(self.store)
        reported = workers.sensor_statuses(self.pipeline, found)
        return JSONResponse(
            {
                "sensors": [
                    pauses.with_pause(s.to_dict(), paused.get(s.sensor))
                    for s in sensors.sensors(self.runtime)
                ],
                "reported": [s.to_dict() for s in reported],
            }
        )

    async def get_workers(self, request: Request) -> Response:
        found = await workers.workers(self.store)
        return JSONResponse({"workers": [w.to_dict() for w in found]})

    async def _run(self, request: Request) -> RunRecord:
        return await runs.run(self.store, request.path_params["run_id"])

    # -- acting -----------------------------------------------------------------------------

    async def retry_run(self, request: Request) -> Response:
        run = await self._run(request)
        if run.status not in ("failed", "cancelled"):
            raise BadRequest(
                409, f"run {run.run_id} is {run.status}; only failed or cancelled runs retry"
            )
        record = await self.store.retry_run(run.run_id, utcnow())
        metrics.manual_retry(record.rule)
        if self.runtime.dispatcher is not None:
            self.runtime.dispatcher.wake()
        return JSONResponse(record.to_dict())

    async def cancel_run(self, request: Request) -> Response:
        """Ask for a pending or running run to be cancelled, as ``eventflow cancel`` does;
        the request names the principal that made it."""
        run = await self._run(request)
        if run.status not in ("pending", "running"):
            raise BadRequest(
                409, f"run {run.run_id} is {run.status}; only pending or running runs cancel"
            )
        principal = getattr(request.state, "principal", None)
        by = f"api:{principal.name}" if principal is not None else "api"
        record = await self.store.request_cancel(run.run_id, by, utcnow())
        if self.runtime.dispatcher is not None:
            self.runtime.dispatcher.cancel_requested()
        return JSONResponse(record.to_dict(), status_code=202)

    async def events(self, request: Request) -> Response:
        """``GET`` a page of the event log, ``POST`` an emit: one route, so that its 405
        answers name both methods."""
        if request.method == "POST":
            return await self.emit(request)
        return await self.get_events(request)

    async def get_events(self, request: Request) -> Response:
        """A page of the event log, newest first: ``items``, ``next`` and ``total``."""
        try:
            page = await events.event_page(
                self.store,
                dataset=request.query_params.get("dataset"),
                sensor=request.query_params.get("sensor"),
                partition=_partition(request),
                since=_time(request, "since"),
                until=_time(request, "until"),
                limit=_limit(request, 50),
                cursor=request.query_params.get("cursor"),
            )
        except paging.BadCursor as exc:
            raise BadRequest(400, str(exc)) from None
        return JSONResponse(page.to_dict(events.EventView.to_dict))

    async def emit(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(400, f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest(400, "the body must be a JSON object")
        dataset, partition = body.get("dataset"), body.get("partition", {})
        emit_id = body.get("id") or uuid.uuid4().hex
        if not isinstance(dataset, str):
            raise BadRequest(400, "`dataset` must be a string")
        if not isinstance(partition, dict) or not all(
            isinstance(v, str) for v in partition.values()
        ):
            raise BadRequest(400, "`partition` must be an object of strings")
        if not isinstance(emit_id, str):
            raise BadRequest(400, "`id` must be a string")
        try:
            item = emit_item(self.pipeline, dataset, partition, emit_id, body.get("payload"))
        except EmitError as exc:
            raise BadRequest(400, str(exc)) from None
        await self.store.add_inbox(item)
        if self.runtime.engine is not None:
            self.runtime.engine.wake()
        return JSONResponse({"id": emit_id, "status": "accepted"}, status_code=202)

    # -- webhooks -------------------------------------------------------------------------

    async def hook(self, request: Request) -> Response:
        name = request.path_params["sensor"]
        response = await self._hook(request, name)
        metrics.webhook(name if name in self.pipeline.sensors else "-", response.status_code)
        return response

    async def _hook(self, request: Request, name: str) -> Response:
        hook = HOOKS.get(name)
        if hook is None:
            spec = self.pipeline.sensors.get(name)
            if spec is None or spec.type != "http":
                return problem(404, f"no webhook sensor named {name!r}")
            return problem(503, f"webhook sensor {name} is not running", **{"Retry-After": "5"})
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > hook.max_body:
            return problem(413, f"the body is larger than {hook.max_body} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > hook.max_body:
                return problem(413, f"the body is larger than {hook.max_body} bytes")
        answer = await hook(
            HookRequest(
                sensor=name,
                path=request.path_params.get("path", ""),
                headers={k.lower(): v for k, v in request.headers.items()},
                query=dict(request.query_params),
                body=bytes(body),
            )
        )
        return JSONResponse(dict(answer.body), answer.status, headers=dict(answer.headers) or None)
