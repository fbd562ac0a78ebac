"""``GET /api/versions`` and ``GET /api/plan``: the versions that ran on the store, and the
plan of the running version against the one the store ran before it (read credential: they
only read, and nothing here writes).

Both read through :mod:`eventflow.views.versions`, as ``eventflow versions`` and ``eventflow
plan`` do; a plan line's values are shown as the definition holds them (a value from the
environment as its ``${NAME}`` reference, never the value).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from eventflow.server.api import BadRequest, limit_of
from eventflow.views import paging
from eventflow.views.versions import VersionView, current, running_plan, version_page

if TYPE_CHECKING:
    from eventflow.runtime import Runtime


class VersionsApi:
    """The two reading handlers over one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def get_versions(self, request: Request) -> Response:
        """A page of starts, newest first (``items``, ``next``, ``total``), and ``current``:
        the version this process runs, its environment, git commit and the store."""
        runtime = self.runtime
        try:
            page = await version_page(
                runtime.pipeline,
                runtime.store,
                limit=limit_of(request, 50),
                cursor=request.query_params.get("cursor"),
            )
        except paging.BadCursor as exc:
            raise BadRequest(400, str(exc)) from None
        started = runtime.started
        now = current(
            runtime.pipeline,
            started.identity if started else await runtime.store.store_identity(),
            started.start if started else None,
        )
        return JSONResponse({**page.to_dict(VersionView.to_dict), "current": now.to_dict()})

    async def get_plan(self, request: Request) -> Response:
        """The plan of the running pipeline against the version the store ran before it."""
        runtime = self.runtime
        plan = await running_plan(runtime.pipeline, runtime.store, runtime.accept)
        identity = runtime.started.identity if runtime.started else None
        return JSONResponse({**plan.to_dict(), "store": identity.to_dict() if identity else None})
