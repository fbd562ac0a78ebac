"""The ``airflow`` task: hand a fire to an Apache Airflow 3 DAG and finish when its run does.

.. code-block:: yaml

    run:
      airflow:
        url: http://127.0.0.1:8080          # the API server
        dag: report
        conf: {dt: "{dt}", batch: "{batch_id}"}
        auth: {username_env: AIRFLOW_USER, password_env: AIRFLOW_PASSWORD}  # or {token_env: ...}
        logical_date: null                 # or a template: "{dt}T00:00:00Z"
      timeout: 10m

It speaks the REST API v2 (``/api/v2``). The DAG run's id is ``downstream_key(ctx)``, the
same for every attempt, so a trigger that Airflow answers with 409 means the run exists and
it is adopted. ``conf`` is the rendered ``conf`` plus eventflow's own key ``eventflow``
(pipeline, rule, run id, attempt, partition, params and the input references). A later
attempt after a failure *clears* the DAG run (every task instance runs again, in the same
run, with the conf of the first trigger); a timeout sets the run's state to ``failed``,
which makes Airflow stop its running tasks.

Authentication: a token from ``POST /auth/token`` for the user and password named by
``auth.username_env`` / ``auth.password_env`` (fetched again when Airflow answers 401, i.e.
when it expired), or a static token from ``auth.token_env``. Credentials and tokens are read
from the environment when needed and never logged nor put into a message.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any, ClassVar

import httpx
from pydantic import Field, field_validator, model_validator

from eventflow.config.models import Model
from eventflow.errors import ClosedError
from eventflow.patterns import render, render_deep
from eventflow.tasks.handoff import (
    DownstreamRun,
    Handoff,
    HandoffError,
    HandoffSettings,
    HandoffTask,
    Outcome,
    downstream_key,
    request_json,
)
from eventflow.tasks.http import BaseUrl
from eventflow.types import RunContext

REQUEST_TIMEOUT = 30.0
"""Seconds one API request may take before it counts as a (retriable) timeout."""
OWN_KEY = "eventflow"
"""The key of ``conf`` that eventflow fills with the run's facts."""
_OUTCOMES: dict[str, Outcome] = {"success": "succeeded", "failed": "failed"}
"""Airflow's terminal DAG run states; every other one (queued, running) is ``running``."""


class AirflowAuth(Model):
    """Where the credentials are: a user and password, or a ready token, in the environment."""

    username_env: str | None = Field(
        default=None, description="Environment variable holding the user name."
    )
    password_env: str | None = Field(
        default=None, description="Environment variable holding the password."
    )
    token_env: str | None = Field(
        default=None,
        description="Environment variable holding a ready API token (instead of a user).",
    )

    @model_validator(mode="after")
    def _one_way(self) -> AirflowAuth:
        user = self.username_env is not None or self.password_env is not None
        if self.token_env is not None and user:
            raise ValueError("give either `token_env` or `username_env` and `password_env`")
        if self.token_env is None and (self.username_env is None or self.password_env is None):
            raise ValueError(
                "give `username_env` and `password_env` (a token from /auth/token),"
                " or `token_env` (a ready token)"
            )
        return self


class AirflowRun(HandoffSettings):
    """The DAG an ``airflow`` task triggers and how to reach its API server."""

    url: BaseUrl = Field(description="The Airflow API server, e.g. `http://127.0.0.1:8080`.")
    dag: str = Field(min_length=1, description="The DAG id.")
    conf: dict[str, Any] = Field(
        default_factory=dict,
        description="The DAG run's `conf`; `{var}` in its strings is replaced. eventflow"
        " adds the key `eventflow` (run id, attempt, partition, params, inputs).",
    )
    auth: AirflowAuth = Field(
        description="Names of environment variables: `{username_env, password_env}` (a token"
        " from `/auth/token`, fetched again when it expired) or `{token_env}` (a ready token)."
    )
    logical_date: str | None = Field(
        default=None,
        description="The DAG run's logical date (ISO 8601 with a zone; `{var}` is replaced);"
        " null: none.",
    )

    @field_validator("conf")
    @classmethod
    def _own_key_free(cls, value: dict[str, Any]) -> dict[str, Any]:
        if OWN_KEY in value:
            raise ValueError(f"`{OWN_KEY}` in conf is eventflow's own key: name yours otherwise")
        return value


class AirflowConfig(Model):
    """``airflow: {url: ..., dag: ..., ...}``."""

    airflow: AirflowRun = Field(description="The DAG to trigger and wait for.")


class AirflowHandoff:
    """The Airflow side of a hand-off: one ``httpx.AsyncClient`` and the current token."""

    system: ClassVar[str] = "airflow"

    def __init__(self, config: AirflowRun) -> None:
        self.config = config
        self._client = httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT, headers={"User-Agent": "eventflow"}
        )
        self._token: str | None = None
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        await self._client.aclose()

    # -- the hand-off ---------------------------------------------------------------------

    async def find(self, ctx: RunContext) -> DownstreamRun | None:
        key = downstream_key(ctx)
        status, body = await self._call(
            "GET", self._run_path(key), f"read DAG run {key!r}", accept=(404,)
        )
        return None if status == 404 else self._run(body)

    async def submit(self, ctx: RunContext) -> DownstreamRun:
        key = downstream_key(ctx)
        trigger = {
            "dag_run_id": key,
            "logical_date": self._logical_date(ctx),
            "conf": self._conf(ctx),
        }
        status, body = await self._call(
            "POST",
            f"{self._dag_path()}/dagRuns",
            f"trigger DAG {self.config.dag!r}",
            accept=(409,),
            json=trigger,
        )
        return await self._existing(ctx, key) if status == 409 else self._run(body)

    async def rerun(self, run: DownstreamRun, ctx: RunContext) -> DownstreamRun:
        _, body = await self._call(
            "POST",
            f"{self._run_path(run.id)}/clear",
            f"clear DAG run {run.id!r}",
            json={"dry_run": False},
        )
        return self._run(body)

    async def poll(self, run: DownstreamRun) -> DownstreamRun:
        _, body = await self._call("GET", self._run_path(run.id), f"read DAG run {run.id!r}")
        current = self._run(body)
        if current.outcome != "failed":
            return current
        return DownstreamRun(
            current.id, current.url, current.state, current.outcome, await self._failed(run.id)
        )

    async def cancel(self, run: DownstreamRun) -> None:
        await self._call(
            "PATCH", self._run_path(run.id), f"stop DAG run {run.id!r}", json={"state": "failed"}
        )

    # -- Airflow's API ----------------------------------------------------------------------

    def _dag_path(self) -> str:
        return f"/api/v2/dags/{_segment(self.config.dag)}"

    def _run_path(self, run_id: str) -> str:
        return f"{self._dag_path()}/dagRuns/{_segment(run_id)}"

    def _run(self, body: Any) -> DownstreamRun:
        """A DAG run as the API returns it; ``url`` is its page in Airflow's UI."""
        run_id, state = str(body["dag_run_id"]), str(body["state"])
        page = f"{self.config.url}/dags/{_segment(self.config.dag)}/runs/{_segment(run_id)}"
        return DownstreamRun(run_id, page, state, _OUTCOMES.get(state, "running"))

    def _conf(self, ctx: RunContext) -> dict[str, Any]:
        rendered = render_deep(self.config.conf, ctx.variables)
        assert isinstance(rendered, dict)  # render_deep keeps a mapping's shape
        own = {
            "pipeline": ctx.pipeline,
            "rule": ctx.rule,
            "run_id": ctx.run_id,
            "attempt": ctx.attempt,
            "partition": dict(ctx.partition),
            "params": dict(ctx.params),
            "inputs": [ref.to_dict() for ref in ctx.inputs],
        }
        return {**rendered, OWN_KEY: own}

    def _logical_date(self, ctx: RunContext) -> str | None:
        template = self.config.logical_date
        return None if template is None else render(template, ctx.variables)

    async def _existing(self, ctx: RunContext, key: str) -> DownstreamRun:
        """After a 409: the run of that id, or a clear error when the conflict is another
        run's (one with the same logical date)."""
        found = await self.find(ctx)
        if found is None:
            raise HandoffError(
                f"Airflow refused DAG run {key!r} of DAG {self.config.dag!r} as a duplicate"
                " but has no run of that id: another run has the same logical_date"
                " (hint: make `logical_date` unique per partition, or null)",
                retriable=False,
            )
        return found

    async def _failed(self, run_id: str) -> str:
        """One line naming the failed task instances, Airflow's closest to a reason."""
        _, body = await self._call(
            "GET",
            f"{self._run_path(run_id)}/taskInstances",
            f"list the failed tasks of DAG run {run_id!r}",
            params={"state": "failed"},
        )
        tasks = [str(t["task_id"]) for t in body.get("task_instances", [])]
        return f"failed tasks: {', '.join(tasks)}" if tasks else ""

    # -- requests and tokens ---------------------------------------------------------------

    async def _call(
        self, method: str, path: str, what: str, *, accept: tuple[int, ...] = (), **kwargs: Any
    ) -> tuple[int, Any]:
        """One API request with a token: ``(status, JSON body)`` of a 2xx answer or one in
        ``accept``. A 401 (the token expired) fetches a new token and sends the request again,
        once; a refused token fails for good, any other answer is a :class:`HandoffError`."""
        if self._closed:
            raise ClosedError("this airflow task runner is closed")
        status, body = await self._send(method, path, what, accept, kwargs)
        if status == 401 and self.config.auth.token_env is None:
            self._token = None
            status, body = await self._send(method, path, what, accept, kwargs)
        if status in (401, 403):
            raise HandoffError(self._refused(status, body), retriable=False)
        return status, body

    async def _send(
        self, method: str, path: str, what: str, accept: tuple[int, ...], kwargs: dict[str, Any]
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {await self._bearer()}"}
        return await request_json(
            self._client,
            method,
            f"{self.config.url}{path}",
            what=f"could not {what}",
            ok=lambda status: 200 <= status < 300 or status in (*accept, 401, 403),
            headers=headers,
            **kwargs,
        )

    async def _bearer(self) -> str:
        auth = self.config.auth
        if auth.token_env is not None:
            return _env(auth.token_env, "auth.token_env")
        if self._token is None:
            self._token = await self._login(auth)
        return self._token

    async def _login(self, auth: AirflowAuth) -> str:
        """A token from the simple auth manager's ``POST /auth/token``."""
        assert auth.username_env is not None
        assert auth.password_env is not None
        credentials = {
            "username": _env(auth.username_env, "auth.username_env"),
            "password": _env(auth.password_env, "auth.password_env"),
        }
        status, body = await request_json(
            self._client,
            "POST",
            f"{self.config.url}/auth/token",
            what="could not get an Airflow token",
            ok=lambda status: 200 <= status < 300 or status in (400, 401, 403),
            json=credentials,
        )
        if not 200 <= status < 300:
            raise HandoffError(self._refused(status, body), retriable=False)
        return str(body["access_token"])

    def _refused(self, status: int, body: Any) -> str:
        auth = self.config.auth
        where = auth.token_env or f"{auth.username_env}/{auth.password_env}"
        detail = body.get("detail") if isinstance(body, dict) else None
        reason = f": {detail}" if isinstance(detail, str) else ""
        return (
            f"Airflow at {self.config.url} refused the credentials in {where}"
            f" (HTTP {status}{reason})"
        )


class AirflowTask(HandoffTask):
    """Runs an ``airflow`` task (see the module docs)."""

    config_model: ClassVar[type[Model]] = AirflowConfig
    config: AirflowConfig

    def build(self) -> Handoff:
        return AirflowHandoff(self.config.airflow)

    def settings(self) -> HandoffSettings:
        return self.config.airflow


def _segment(value: str) -> str:
    """``value`` percent-encoded as one URL path segment (a DAG or run id)."""
    return urllib.parse.quote(value, safe="")


def _env(name: str, field: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise HandoffError(
            f"the environment variable {name} ({field}) is not set: export it where eventflow runs",
            retriable=False,
        )
    return value
