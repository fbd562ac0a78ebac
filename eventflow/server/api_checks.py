"""The JSON API of data-quality checks: ``GET /api/checks``, ``POST
/api/checks/{run_id}/rerun`` and ``POST /api/checks/{run_id}/override`` (operate
credential; audited in the gate, the log and the HTTP access log, like a cancel)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, get_args

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from eventflow.errors import StoreError
from eventflow.events import utcnow
from eventflow.quality import gates
from eventflow.records import GateStatus
from eventflow.server.api import BadRequest, _limit
from eventflow.views import checks as views

if TYPE_CHECKING:
    from eventflow.runtime import Runtime


class ChecksApi:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store

    async def get_checks(self, request: Request) -> Response:
        status = request.query_params.get("status")
        if status is not None and status not in get_args(GateStatus):
            raise BadRequest(400, f"status must be one of {', '.join(get_args(GateStatus))}")
        found = await views.gates(
            self.runtime.pipeline,
            self.store,
            rule=request.query_params.get("rule"),
            status=status,  # type: ignore[arg-type]  # checked above
            limit=_limit(request, 50),
        )
        return JSONResponse({"items": [h.to_dict() for h in found]})

    async def rerun(self, request: Request) -> Response:
        return await self._act(request, "rerun")

    async def override(self, request: Request) -> Response:
        return await self._act(request, "override")

    async def _act(self, request: Request, action: str) -> Response:
        """``action`` on the gate of the run, by the request's principal; 404 when there is
        no gate, 409 when the action does not apply to its status."""
        run_id = request.path_params["run_id"]
        reason = await _reason(request)
        principal = getattr(request.state, "principal", None)
        by = f"api:{principal.name}" if principal is not None else "api"
        if await gates.get_gate(self.store, run_id) is None:
            raise BadRequest(404, f"run {run_id} produced no partition held by checks")
        try:
            gate = await gates.act(self.store, run_id, action, by, utcnow(), reason)
        except StoreError as exc:
            raise BadRequest(409, exc.message) from None
        checker = getattr(self.runtime, "checker", None)
        if checker is not None:
            checker.wake()
        engine = self.runtime.engine
        if action == "override" and engine is not None:
            engine.wake()
        held = views.Held(gate, ())
        return JSONResponse(held.to_dict(), status_code=202)


async def _reason(request: Request) -> str:
    """The optional ``{"reason": "..."}`` of the body."""
    raw = await request.body()
    if not raw.strip():
        return ""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(400, f"the body is not JSON: {exc}") from None
    reason = body.get("reason", "") if isinstance(body, dict) else None
    if not isinstance(reason, str):
        raise BadRequest(400, 'the body must be {"reason": "..."} (a string)')
    return reason
