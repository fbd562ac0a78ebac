"""The ``prefect`` task: run a Prefect 3 deployment with parameters and finish with its flow run.

.. code-block:: yaml

    run:
      prefect:
        url: http://127.0.0.1:4200/api          # PREFECT_API_URL
        deployment: report-flow/report          # FLOW_NAME/DEPLOYMENT_NAME
        parameters: {dt: "{dt}", batch: "{batch_id}"}
        headers: {Authorization: "Bearer ${PREFECT_API_KEY}"}   # Prefect Cloud

It speaks Prefect's REST API (no ``prefect`` package needed). The flow run is created from the
deployment with the idempotency key :func:`~eventflow.tasks.handoff.downstream_key`, for which
Prefect returns the existing flow run rather than a second one; it is found again by that key.
A failed or cancelled flow run is run again by setting it back to ``Scheduled``
(``AwaitingRetry``, as Prefect's own "Retry" does): the worker or served flow that polls the
deployment picks it up, with the parameters it was created with. eventflow's timeout and
``eventflow cancel`` set it to ``Cancelling``. The loop around these calls is
:class:`~eventflow.tasks.handoff.HandoffTask`.
"""

from __future__ import annotations

import urllib.parse
from datetime import timedelta
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from eventflow.durations import Duration
from eventflow.patterns import render, render_deep
from eventflow.tasks import Text
from eventflow.tasks.handoff import (
    DownstreamRun,
    HandoffError,
    HandoffSettings,
    HandoffTask,
    Outcome,
    downstream_key,
    request_json,
)
from eventflow.tasks.http import BaseUrl
from eventflow.types import RunContext

OUTCOMES: dict[str, Outcome] = {
    "SCHEDULED": "running",
    "PENDING": "running",
    "RUNNING": "running",
    "PAUSED": "running",
    "CANCELLING": "running",
    "COMPLETED": "succeeded",
    "FAILED": "failed",
    "CRASHED": "failed",
    "CANCELLED": "cancelled",
}
"""Prefect's state types as hand-off outcomes."""
CLOUD_API = "api.prefect.cloud"


class PrefectRun(HandoffSettings):
    """What a ``prefect`` task runs and how it reaches Prefect."""

    url: BaseUrl = Field(
        description="Prefect's API URL (`PREFECT_API_URL`): `http://HOST:4200/api`, or"
        " `https://api.prefect.cloud/api/accounts/ID/workspaces/ID`."
    )
    deployment: str = Field(
        description="The deployment as `FLOW_NAME/DEPLOYMENT_NAME` (`prefect deployment ls`)."
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="The flow run's parameters; `{var}` in their strings is replaced. They"
        " must fit the flow's signature (Prefect checks them).",
    )
    headers: dict[str, Text] = Field(
        default_factory=dict,
        description="Request headers, sent as written (`Authorization` for Prefect Cloud or a"
        " server's auth string); never logged.",
    )
    tags: tuple[str, ...] = Field(
        default=(), description="Tags of the flow run, besides `eventflow` and the run's key."
    )
    ui_url: str | None = Field(
        default=None,
        description="Base URL of Prefect's UI, for links to flow runs. Default: the API URL"
        " without `/api` (Prefect Cloud: its app's workspace page).",
    )
    request_timeout: Duration = Field(
        default=timedelta(seconds=30), description="Limit of each request to Prefect's API."
    )

    @field_validator("deployment")
    @classmethod
    def _deployment(cls, value: str) -> str:
        flow, _, name = value.partition("/")
        if not flow.strip() or not name.strip() or "/" in name:
            raise ValueError(
                f"{value!r} is not FLOW_NAME/DEPLOYMENT_NAME (e.g. `report-flow/report`)"
            )
        return value


class PrefectConfig(BaseModel):
    """``prefect: {url: ..., deployment: ..., ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefect: PrefectRun = Field(description="The deployment to run and how to reach Prefect.")


class PrefectTask(HandoffTask):
    """Runs each attempt as a Prefect flow run of the configured deployment."""

    config_model: ClassVar[type[BaseModel]] = PrefectConfig
    config: PrefectConfig

    def build(self) -> PrefectHandoff:
        return PrefectHandoff(self.config.prefect)

    def settings(self) -> HandoffSettings:
        return self.config.prefect


class PrefectHandoff:
    """Prefect's REST API for the hand-off loop; one ``httpx.AsyncClient`` for all attempts."""

    system: ClassVar[str] = "prefect"

    def __init__(self, config: PrefectRun) -> None:
        self.config = config
        self.ui_url = config.ui_url.rstrip("/") if config.ui_url else ui_base(config.url)
        self.client = httpx.AsyncClient(
            headers=config.headers,
            timeout=config.request_timeout.total_seconds(),
        )
        self._deployment: dict[str, Any] | None = None

    async def close(self) -> None:
        await self.client.aclose()

    async def find(self, ctx: RunContext) -> DownstreamRun | None:
        deployment = await self.deployment()
        body = {
            "flows": {"id": {"any_": [deployment["flow_id"]]}},
            "flow_runs": {"idempotency_key": {"any_": [downstream_key(ctx)]}},
            "sort": "EXPECTED_START_TIME_DESC",
            "limit": 1,
        }
        _, found = await self.call("POST", "flow_runs/filter", "find the flow run", json=body)
        return self.downstream(found[0]) if found else None

    async def submit(self, ctx: RunContext) -> DownstreamRun:
        deployment = await self.deployment()
        key = downstream_key(ctx)
        body = {
            "parameters": render_deep(self.config.parameters, ctx.variables),
            "idempotency_key": key,
            "tags": ["eventflow", key, *(render(t, ctx.variables) for t in self.config.tags)],
        }
        path = f"deployments/{deployment['id']}/create_flow_run"
        _, run = await self.call("POST", path, "create the flow run", json=body)
        return self.downstream(run)

    async def rerun(self, run: DownstreamRun, ctx: RunContext) -> DownstreamRun:
        """Set the flow run back to ``Scheduled`` (``AwaitingRetry``, what Prefect's "Retry"
        does): the same flow run runs again, with its parameters, ``run_count`` one higher."""
        message = f"eventflow attempt {ctx.attempt} of run {ctx.run_id}"
        await self.set_state(run, {"type": "SCHEDULED", "name": "AwaitingRetry"}, message)
        again = await self.poll(run)
        if again.outcome != "running":
            raise HandoffError(
                f"prefect did not re-run flow run {run.id}: it stayed {again.state}",
                retriable=False,
            )
        return again

    async def poll(self, run: DownstreamRun) -> DownstreamRun:
        _, found = await self.call("GET", f"flow_runs/{run.id}", "read the flow run")
        return self.downstream(found)

    async def cancel(self, run: DownstreamRun) -> None:
        """Ask for ``Cancelling`` (eventflow's timeout, or ``eventflow cancel``): the worker
        stops the flow run's process and marks it ``Cancelled`` (Prefect cancels a run that has
        not started at once)."""
        await self.set_state(run, {"type": "CANCELLING"}, "cancelled by eventflow")

    async def set_state(self, run: DownstreamRun, state: dict[str, str], message: str) -> None:
        """Propose ``state``. Prefect may accept it, replace it (a run not started goes
        straight to ``Cancelled``), abort it (a run already terminal) or ask to wait."""
        body = {"state": {**state, "message": message}}
        path = f"flow_runs/{run.id}/set_state"
        what = f"set flow run {run.id} {state['type']}"
        _, result = await self.call("POST", path, what, json=body)
        if isinstance(result, dict) and result.get("status") == "WAIT":
            raise HandoffError(f"prefect: {what}: asked to wait", retriable=True)

    async def deployment(self) -> dict[str, Any]:
        """The configured deployment, read once."""
        if self._deployment is None:
            flow, name = self.config.deployment.split("/", 1)
            path = f"deployments/name/{_segment(flow)}/{_segment(name)}"
            _, found = await self.call("GET", path, f"read deployment {self.config.deployment}")
            self._deployment = found
        return self._deployment

    async def call(self, method: str, path: str, what: str, **kwargs: Any) -> tuple[int, Any]:
        """One request to Prefect's API, its failures as ``HandoffError``."""
        return await request_json(
            self.client, method, f"{self.config.url}/{path}", what=f"prefect: {what}", **kwargs
        )

    def downstream(self, run: dict[str, Any]) -> DownstreamRun:
        """A flow run of the API as a :class:`DownstreamRun`."""
        state = run.get("state") or {}
        kind = str(state.get("type") or "SCHEDULED")
        outcome = OUTCOMES.get(kind, "running")
        message = str(state.get("message") or "").strip()
        detail = message.splitlines()[0][:300] if message and outcome != "succeeded" else ""
        return DownstreamRun(
            id=str(run["id"]),
            url=f"{self.ui_url}/runs/flow-run/{run['id']}",
            state=str(state.get("name") or kind.title()),
            outcome=outcome,
            detail=detail,
        )


def ui_base(api_url: str) -> str:
    """Where Prefect's UI shows what ``api_url`` serves: a server's URL without ``/api``;
    for Prefect Cloud, ``https://app.prefect.cloud/account/A/workspace/W``."""
    parsed = urllib.parse.urlsplit(api_url)
    parts = [p for p in parsed.path.split("/") if p]
    if parsed.hostname == CLOUD_API and parts[:1] == ["api"] and len(parts) >= 5:
        account, workspace = parts[2], parts[4]
        return f"https://app.prefect.cloud/account/{account}/workspace/{workspace}"
    if parts[-1:] == ["api"]:
        parts = parts[:-1]
    path = "/".join(parts)
    return urllib.parse.urlunsplit(
        (parsed.scheme, parsed.netloc, f"/{path}" if path else "", "", "")
    )


def _segment(name: str) -> str:
    return urllib.parse.quote(name, safe="")
