"""``/api/backfills``: list, preview, submit and cancel backfills of the running pipeline.

The handlers go through :mod:`eventflow.views.backfills`, as ``eventflow backfill`` and
``eventflow backfills`` do. Reading needs the read credential; submitting and cancelling the
operate one (the routes are POSTs, so :mod:`eventflow.server.auth` asks for it and the
guard refuses cross-site posts), and the request names the principal that made it. A
request submitted here wakes this process's backfill worker at once.

A preview plans the backfill in this process (the sensors' listings and the event log): one
runs at a time, in small batches that let the live events go first; a second one asked
meanwhile answers 429 with ``Retry-After``, so a reader cannot pile plans on the pipeline.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eventflow import backfill as bf
from eventflow.backfill_requests import BACKFILL_STATUSES
from eventflow.backfill_worker import PLAN_BATCH
from eventflow.events import utcnow
from eventflow.server.api import BadRequest, _limit
from eventflow.views import backfills as views

if TYPE_CHECKING:
    from eventflow.runtime import Runtime


def _principal(request: Request) -> str:
    principal = getattr(request.state, "principal", None)
    return f"api:{principal.name}" if principal is not None else "api"


class BackfillApi:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._previewing = asyncio.Lock()

    def routes(self) -> list[Route]:
        return [
            # One route for both methods, so a 405 on this path names both in `Allow`.
            Route("/api/backfills", self.collection, methods=["GET", "POST"]),
            Route("/api/backfills/preview", self.preview, methods=["GET"]),
            Route("/api/backfills/{backfill_id}", self.get, methods=["GET"]),
            Route("/api/backfills/{backfill_id}/cancel", self.cancel, methods=["POST"]),
        ]

    async def collection(self, request: Request) -> Response:
        return await (self.submit if request.method == "POST" else self.list)(request)

    async def list(self, request: Request) -> Response:
        status = request.query_params.get("status")
        if status is not None and status not in (*BACKFILL_STATUSES, "active"):
            raise BadRequest(400, f"status must be one of {', '.join(BACKFILL_STATUSES)}, active")
        found = await views.backfills(self.runtime.store, status=status, limit=_limit(request, 50))
        return JSONResponse({"backfills": [r.to_dict() for r in found]})

    async def get(self, request: Request) -> Response:
        found = await views.backfill(self.runtime.store, request.path_params["backfill_id"])
        return JSONResponse(found.to_dict())

    async def preview(self, request: Request) -> Response:
        """The dry run: what a backfill of ``rule`` from ``from`` to ``to`` would fire now."""
        params = request.query_params
        rule, lo, hi = params.get("rule"), params.get("from"), params.get("to")
        if not rule or not lo or not hi:
            raise BadRequest(400, "give rule, from and to (the partition range)")
        if self._previewing.locked():
            raise BadRequest(
                429, "another backfill preview is being planned; try again", {"Retry-After": "2"}
            )
        async with self._previewing:
            try:
                found = await views.preview(
                    self.runtime.pipeline, self.runtime.store, rule, lo, hi,
                    force=params.get("force") in ("1", "true"), batch_size=PLAN_BATCH,
                )  # fmt: skip
            except bf.BackfillError as exc:
                raise BadRequest(400, str(exc)) from None
        return JSONResponse(found.to_dict())

    async def submit(self, request: Request) -> Response:
        body = await _body(request)
        rule, lo, hi = body.get("rule"), body.get("from"), body.get("to")
        if not all(isinstance(v, str) and v for v in (rule, lo, hi)):
            raise BadRequest(400, "`rule`, `from` and `to` must be strings")
        rate, force = body.get("rate"), body.get("force", False)
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)):
            raise BadRequest(400, "`rate` must be a number of partitions a second")
        if not isinstance(force, bool):
            raise BadRequest(400, "`force` must be true or false")
        try:
            found = await views.submit(
                self.runtime.pipeline, self.runtime.store, str(rule), str(lo), str(hi),
                _principal(request), utcnow(), force=force,
                rate=None if rate is None else float(rate),
            )  # fmt: skip
        except bf.BackfillError as exc:
            raise BadRequest(400, str(exc)) from None
        if self.runtime.backfills is not None:
            self.runtime.backfills.wake()
        return JSONResponse(found.to_dict(), status_code=202)

    async def cancel(self, request: Request) -> Response:
        store = self.runtime.store
        found = await views.backfill(store, request.path_params["backfill_id"])
        if not found.active:
            raise BadRequest(
                409, f"backfill {found.id} is {found.status}; only pending or running ones cancel"
            )
        cancelled = await views.cancel(store, found.id, _principal(request), utcnow())
        if self.runtime.backfills is not None:
            self.runtime.backfills.wake()
        return JSONResponse(cancelled.to_dict(), status_code=202)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(400, f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "the body must be a JSON object")
    return body
