"""The JSON API of dead letters: ``GET /api/deadletters`` (a page), ``GET
/api/deadletters/{event_id}`` (one in full), ``POST /api/deadletters/{event_id}/redrive``,
``POST /api/deadletters/{event_id}/discard`` and the bulk ``POST /api/deadletters/redrive``
(operate credential; audited with the request's principal in the dead letter's history and
the log, like a cancel). Described in :mod:`eventflow.server.openapi_deadletters`."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from eventflow.events import utcnow
from eventflow.server.api import BadRequest, _limit, _time
from eventflow.views import deadletters as views
from eventflow.views import paging

if TYPE_CHECKING:
    from eventflow.runtime import Runtime

BULK = {"event_ids", "sensor", "since", "until", "all", "dry_run"}
"""The fields of the bulk redrive's body."""


class _Named(Route):
    """A route of ``/api/deadletters/{event_id}`` that leaves the names of fixed routes
    beside it (``redrive``) to them, so that ``GET /api/deadletters/redrive`` is answered
    405 with ``Allow: POST``, not as the dead letter ``redrive``."""

    def __init__(self, *args: Any, reserved: Collection[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reserved = frozenset(reserved)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE and child["path_params"].get("event_id") in self.reserved:
            return Match.NONE, {}
        return match, child


class DeadLettersApi:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/deadletters", self.list, methods=["GET"]),
            Route("/api/deadletters/redrive", self.redrive_many, methods=["POST"]),
            _Named("/api/deadletters/{event_id}", self.show, methods=["GET"], reserved={"redrive"}),
            Route("/api/deadletters/{event_id}/redrive", self.redrive, methods=["POST"]),
            Route("/api/deadletters/{event_id}/discard", self.discard, methods=["POST"]),
        ]

    async def list(self, request: Request) -> Response:
        """A page of dead letters: ``items``, ``next`` and ``total``; ``deadletters``
        repeats ``items`` for the clients of the list before paging."""
        status = request.query_params.get("status")
        if status is not None and status not in views.STATUS_CHOICES:
            raise BadRequest(400, f"status must be one of {', '.join(views.STATUS_CHOICES)}")
        try:
            page = await views.deadletter_page(
                self.store,
                sensor=request.query_params.get("sensor"),
                since=_time(request, "since"),
                until=_time(request, "until"),
                status=status,
                limit=_limit(request, 50),
                cursor=request.query_params.get("cursor"),
            )
        except paging.BadCursor as exc:
            raise BadRequest(400, str(exc)) from None
        body = page.to_dict(views.DeadLetterView.to_dict)
        return JSONResponse({**body, "deadletters": body["items"]})

    async def show(self, request: Request) -> Response:
        found = await self._letter(request)
        return JSONResponse(found.to_detail())

    async def redrive(self, request: Request) -> Response:
        return await self._act_on_one(request, "redrive")

    async def discard(self, request: Request) -> Response:
        return await self._act_on_one(request, "discard")

    async def redrive_many(self, request: Request) -> Response:
        """The bulk redrive: ``event_ids``, or ``sensor``/``since``/``until``/``all``;
        ``dry_run`` previews what the current pipeline makes of each."""
        body = await _body(request)
        unknown = set(body) - BULK
        if unknown:
            raise BadRequest(400, f"unknown fields {sorted(unknown)}; known: {sorted(BULK)}")
        ids = body.get("event_ids", [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise BadRequest(400, "`event_ids` must be an array of strings")
        sensor = body.get("sensor")
        if sensor is not None and not isinstance(sensor, str):
            raise BadRequest(400, "`sensor` must be a string")
        flags = {name: body.get(name, False) for name in ("all", "dry_run")}
        if not all(isinstance(v, bool) for v in flags.values()):
            raise BadRequest(400, "`all` and `dry_run` must be true or false")
        since, until = _body_time(body, "since"), _body_time(body, "until")
        if ids and (sensor or since or until or flags["all"]):
            raise BadRequest(400, "give `event_ids`, or `sensor`/`since`/`until`/`all`, not both")
        try:
            chosen = await views.select(
                self.store, ids=ids, sensor=sensor, since=since, until=until, all_=flags["all"]
            )
        except views.NothingSelected as exc:
            raise BadRequest(400, str(exc)) from None
        results = await views.act(
            self.runtime.pipeline,
            self.store,
            chosen,
            "redrive",
            _principal(request),
            utcnow(),
            dry_run=flags["dry_run"],
        )
        if any(r.done for r in results):
            self._wake()
        return JSONResponse({"items": [r.to_dict() for r in results]})

    async def _letter(self, request: Request) -> views.DeadLetterView:
        event_id = request.path_params["event_id"]
        found = await views.deadletter_detail(self.store, event_id)
        if found is None:
            raise BadRequest(404, f"no dead letter {event_id!r}")
        return found

    async def _act_on_one(self, request: Request, action: views.Action) -> Response:
        """``action`` on one dead letter by the request's principal: 202 (a redrive, carried
        out by the engine) or 200 (a discard) with the dead letter; 404 when there is none,
        409 when its state refuses the action."""
        letter = (await self._letter(request)).letter
        chosen = [(letter.event_id, letter)]
        (result,) = await views.act(
            self.runtime.pipeline, self.store, chosen, action, _principal(request), utcnow()
        )
        if not result.done:
            raise BadRequest(409, result.detail)
        if action == "redrive":
            self._wake()
        found = await self._letter(request)
        return JSONResponse(found.to_detail(), status_code=202 if action == "redrive" else 200)

    def _wake(self) -> None:
        if self.runtime.engine is not None:
            self.runtime.engine.wake()


def _principal(request: Request) -> str:
    principal = getattr(request.state, "principal", None)
    return f"api:{principal.name}" if principal is not None else "api"


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(400, f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "the body must be a JSON object")
    return body


def _body_time(body: dict[str, Any], name: str) -> Any:
    raw = body.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise BadRequest(400, f"`{name}` must be a string")
    try:
        return paging.parse_time(raw, utcnow())
    except ValueError as exc:
        raise BadRequest(400, f"{name}: {exc}") from None
