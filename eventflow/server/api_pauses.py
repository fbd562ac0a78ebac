"""``POST /api/rules/{name}/pause`` (and ``/resume``), ``POST /api/sensors/{name}/pause``
(and ``/resume``): the operator's pause and resume, as ``eventflow pause`` does them.

The routes need the operate credential (:mod:`eventflow.server.auth`); the request names its
principal in the audit record. The running pipeline acts at once (it is this process).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from eventflow.pauses import PauseActionName, PauseKind, UnknownTarget, act
from eventflow.server.api import BadRequest
from eventflow.views import NotFound
from eventflow.views.pauses import pauses

if TYPE_CHECKING:
    from eventflow.runtime import Runtime


class PauseApi:
    """The four pause and resume handlers over one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def pause_rule(self, request: Request) -> Response:
        return await self._act(request, "rule", "pause")

    async def resume_rule(self, request: Request) -> Response:
        return await self._act(request, "rule", "resume")

    async def pause_sensor(self, request: Request) -> Response:
        return await self._act(request, "sensor", "pause")

    async def resume_sensor(self, request: Request) -> Response:
        return await self._act(request, "sensor", "resume")

    async def _act(self, request: Request, kind: PauseKind, action: PauseActionName) -> Response:
        """The action on ``{name}``: 200 with what was done and the pause now (None: it
        runs); 404 for an unknown name. Doing it twice changes nothing the second time."""
        name = request.path_params["name"]
        reason = await _reason(request)
        principal = getattr(request.state, "principal", None)
        by = f"api:{principal.name}" if principal is not None else "api"
        runtime = self.runtime
        try:
            done = await act(runtime.pipeline, runtime.store, kind, name, action, by, reason)
        except UnknownTarget as exc:
            raise NotFound(exc.message) from None
        runtime.pauses.changed()
        now = next(
            (
                p
                for p in await pauses(runtime.store)
                if (p.pause.kind, p.pause.name) == (kind, name)
            ),
            None,
        )
        return JSONResponse(
            {"action": done.to_dict(), "paused": now.to_dict() if now is not None else None}
        )


async def _reason(request: Request) -> str | None:
    """The body's optional ``reason`` (the body may be empty or ``{}``)."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(400, f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "the body must be a JSON object")
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise BadRequest(400, "`reason` must be a string")
    return reason
