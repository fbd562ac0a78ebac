"""The ``dagster`` task: launch a Dagster job run through its GraphQL API and wait for it.

.. code-block:: yaml

    run:
      dagster:
        url: http://127.0.0.1:3000
        job: report
        repository_location: etl           # optional when one code location has the job
        repository_name: __repository__    # optional likewise
        partition: "{dt}"                  # optional: the partition key of a partitioned job
        run_config: {ops: {report: {config: {batch: "{batch_id}"}}}}
        tags: {team: data}
        headers: {Dagster-Cloud-Api-Token: "${DAGSTER_TOKEN}"}

Each run is tagged ``eventflow/run_key`` (:func:`~eventflow.tasks.handoff.downstream_key`,
the same for every attempt) and ``eventflow/attempt``; the partition goes in
``dagster/partition``. ``find`` asks for the newest run with the run key, so a run launched
just before a crash is adopted rather than launched again. A later attempt after a failed or
cancelled run re-executes it from the failure (``launchRunReexecution``): one new Dagster run
per attempt, in the first run's run group, with the parent's run config and tags and the new
attempt tag. ``cancel`` is ``terminateRun``.

Dagster answers HTTP 200 when it refuses: a top-level ``errors`` list, or a result whose
``__typename`` is an error type (``PythonError``, ``RunConfigValidationInvalid``,
``PipelineNotFoundError``, ``UnauthorizedError``, ...). Both fail the attempt with Dagster's
message; only an unreachable server or code location, a timeout, a 5xx or a 429 is retried.
Header values are never logged nor put in a message (they carry tokens).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

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
from eventflow.tasks.http import Url
from eventflow.types import RunContext

RUN_KEY_TAG = "eventflow/run_key"
ATTEMPT_TAG = "eventflow/attempt"
PARTITION_TAG = "dagster/partition"
MESSAGE_LIMIT = 500
"""Characters of Dagster's error message kept in a failure's one line."""

OUTCOMES: dict[str, Outcome] = {
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "CANCELED": "cancelled",
}
"""Dagster's terminal run statuses; every other one (QUEUED, STARTING, CANCELING, ...) is
``running``."""

_RUN_FIELDS = "runId status stepStats { stepKey status }"
_ERRORS = "... on Error { message } ... on PythonError { className }"
_LAUNCH_ERRORS = f"""{_ERRORS}
    ... on RunConfigValidationInvalid {{ errors {{ message }} }}
    ... on InvalidStepError {{ invalidStepKey }}
    ... on InvalidOutputError {{ stepKey invalidOutputName }}
"""
_FIND = f"""query($key: String!) {{ result: runsOrError(
    filter: {{tags: [{{key: "{RUN_KEY_TAG}", value: $key}}]}}, limit: 1) {{
  __typename ... on Runs {{ results {{ {_RUN_FIELDS} }} }} {_ERRORS} }} }}"""
_POLL = f"""query($id: ID!) {{ result: runOrError(runId: $id) {{
  __typename ... on Run {{ {_RUN_FIELDS} }} {_ERRORS} }} }}"""
_LAUNCH = f"""mutation($params: ExecutionParams!) {{ result: launchRun(executionParams: $params) {{
  __typename ... on LaunchRunSuccess {{ run {{ {_RUN_FIELDS} }} }} {_LAUNCH_ERRORS} }} }}"""
_REEXECUTE = f"""mutation($params: ReexecutionParams!) {{
  result: launchRunReexecution(reexecutionParams: $params) {{
  __typename ... on LaunchRunSuccess {{ run {{ {_RUN_FIELDS} }} }} {_LAUNCH_ERRORS} }} }}"""
_TERMINATE = f"""mutation($id: String!, $policy: TerminateRunPolicy) {{
  result: terminateRun(runId: $id, terminatePolicy: $policy) {{
  __typename ... on TerminateRunFailure {{ message run {{ {_RUN_FIELDS} }} }} {_ERRORS} }} }}"""
_REPOSITORIES = """query { result: repositoriesOrError {
  __typename ... on RepositoryConnection { nodes { name location { name } jobs { name } } }
  ... on Error { message } } }"""

_NOT_YET_RUNNING = frozenset({"NOT_STARTED", "STARTING"})
"""Statuses of a run whose worker has not started it: Dagster's safe termination refuses them."""
_TRANSIENT_PYTHON_ERRORS = re.compile(r"Unreachable|Unavailable|Timeout")
"""``PythonError`` classes that mean a code location is (re)starting: worth retrying."""


class DagsterJob(HandoffSettings):
    """The Dagster job a ``dagster`` task launches, and how to reach Dagster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Url = Field(
        description="Dagster's web server (`http://127.0.0.1:3000`); GraphQL is at `/graphql`."
    )
    job: str = Field(description="The job to launch.")
    repository_location: str | None = Field(
        default=None, description="Its code location; optional when one location has the job."
    )
    repository_name: str | None = Field(
        default=None, description="Its repository; optional when one repository has the job."
    )
    partition: Text | None = Field(
        default=None,
        description="Partition key of a partitioned job (tag `dagster/partition`); `{var}`"
        " is replaced.",
    )
    run_config: dict[str, Any] = Field(
        default_factory=dict, description="The run config; `{var}` in its strings is replaced."
    )
    tags: dict[str, Text] = Field(
        default_factory=dict, description="More run tags; `{var}` in the values is replaced."
    )
    headers: dict[str, Text] = Field(
        default_factory=dict,
        description="Extra request headers (`Dagster-Cloud-Api-Token` for Dagster+); never logged.",
    )

    @field_validator("url")
    @classmethod
    def _base(cls, value: str) -> str:
        return value.rstrip("/")


class DagsterConfig(BaseModel):
    """``dagster: {url: ..., job: ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dagster: DagsterJob


class DagsterTask(HandoffTask):
    """Runs one attempt of a ``dagster`` task (see the module docs)."""

    config_model: ClassVar[type[BaseModel]] = DagsterConfig
    config: DagsterConfig

    def build(self) -> Dagster:
        return Dagster(self.settings())

    def settings(self) -> DagsterJob:
        return self.config.dagster


class Dagster:
    """The Dagster side of a hand-off: one HTTP client, the job's selector found once."""

    system: ClassVar[str] = "dagster"

    def __init__(self, job: DagsterJob) -> None:
        self.job = job
        self._client = httpx.AsyncClient(headers=job.headers, timeout=httpx.Timeout(30.0))
        self._selector: dict[str, str] | None = None

    async def close(self) -> None:
        await self._client.aclose()

    async def find(self, ctx: RunContext) -> DownstreamRun | None:
        result = await self._call("runsOrError", _FIND, {"key": downstream_key(ctx)}, "Runs")
        runs = result["results"]
        return self._downstream(runs[0]) if runs else None

    async def submit(self, ctx: RunContext) -> DownstreamRun:
        params = {
            "selector": await self._job_selector(),
            "runConfigData": render_deep(self.job.run_config, ctx.variables),
            "executionMetadata": {"tags": _tags(self._tags(ctx))},
        }
        result = await self._call("launchRun", _LAUNCH, {"params": params}, "LaunchRunSuccess")
        return self._downstream(result["run"])

    async def rerun(self, run: DownstreamRun, ctx: RunContext) -> DownstreamRun:
        params = {
            "parentRunId": run.id,
            "strategy": "FROM_FAILURE",
            "extraTags": _tags({ATTEMPT_TAG: str(ctx.attempt)}),
        }
        result = await self._call(
            "launchRunReexecution", _REEXECUTE, {"params": params}, "LaunchRunSuccess"
        )
        return self._downstream(result["run"])

    async def poll(self, run: DownstreamRun) -> DownstreamRun:
        return self._downstream(await self._call("runOrError", _POLL, {"id": run.id}, "Run"))

    async def cancel(self, run: DownstreamRun) -> None:
        """``terminateRun``. Dagster cannot terminate a run whose worker is still starting
        (``NOT_STARTED``, ``STARTING``): that one is marked cancelled at once, and its worker
        does not start executing it. A run that has already ended is left as it is."""
        try:
            await self._terminate(run.id, "SAFE_TERMINATE")
        except _Refused as refused:
            status = (refused.result.get("run") or {}).get("status")  # TerminateRunFailure's
            if status in OUTCOMES:  # it ended meanwhile
                return
            if status not in _NOT_YET_RUNNING:
                raise
            await self._terminate(run.id, "MARK_AS_CANCELED_IMMEDIATELY")

    async def _terminate(self, run_id: str, policy: str) -> None:
        variables = {"id": run_id, "policy": policy}
        await self._call("terminateRun", _TERMINATE, variables, "TerminateRunSuccess")

    def _tags(self, ctx: RunContext) -> dict[str, str]:
        """The configured tags, then eventflow's (which win): run key, attempt, partition."""
        tags = {key: render(value, ctx.variables) for key, value in self.job.tags.items()}
        tags[RUN_KEY_TAG] = downstream_key(ctx)
        tags[ATTEMPT_TAG] = str(ctx.attempt)
        if self.job.partition is not None:
            tags[PARTITION_TAG] = render(self.job.partition, ctx.variables)
        return tags

    def _downstream(self, run: dict[str, Any]) -> DownstreamRun:
        status = str(run["status"])
        outcome = OUTCOMES.get(status, "running")
        return DownstreamRun(
            id=run["runId"],
            url=f"{self.job.url}/runs/{run['runId']}",
            state=status,
            outcome=outcome,
            detail=_run_detail(outcome, run.get("stepStats") or []),
        )

    async def _job_selector(self) -> dict[str, str]:
        """The job's code location and repository: as configured, else the only ones that
        have the job (asked once)."""
        if self._selector is None:
            location, repository = self.job.repository_location, self.job.repository_name
            if location is None or repository is None:
                location, repository = await self._locate(location, repository)
            self._selector = {
                "repositoryLocationName": location,
                "repositoryName": repository,
                "jobName": self.job.job,
            }
        return self._selector

    async def _locate(self, location: str | None, repository: str | None) -> tuple[str, str]:
        result = await self._call("repositoriesOrError", _REPOSITORIES, {}, "RepositoryConnection")
        found = [
            (node["location"]["name"], node["name"])
            for node in result["nodes"]
            if any(job["name"] == self.job.job for job in node["jobs"])
            and location in (None, node["location"]["name"])
            and repository in (None, node["name"])
        ]
        if len(found) == 1:
            return found[0]
        if not found:
            raise HandoffError(
                f"Dagster at {self.job.url} has no job `{self.job.job}`"
                " (check `job`, `repository_location` and `repository_name`)",
                retriable=False,
            )
        listed = ", ".join(f"{loc}/{repo}" for loc, repo in found)
        raise HandoffError(
            f"Dagster job `{self.job.job}` is in several repositories ({listed}):"
            " set `repository_location` and `repository_name`",
            retriable=False,
        )

    async def _call(
        self, field: str, query: str, variables: dict[str, Any], success: str
    ) -> dict[str, Any]:
        """The ``result`` of one GraphQL document, when its ``__typename`` is ``success``;
        raise :class:`HandoffError` for anything else."""
        data = await self._graphql(field, query, variables)
        result = data.get("result") or {}
        typename = result.get("__typename")
        if typename == success:
            return dict(result)
        retriable = typename == "PythonError" and bool(
            _TRANSIENT_PYTHON_ERRORS.search(str(result.get("className")))
        )
        raise _Refused(
            f"Dagster {field}: {typename}: {_one_line(_result_message(result))}",
            retriable=retriable,
            result=result,
        )

    async def _graphql(self, field: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """The ``data`` of a GraphQL answer. Dagster answers a refused query with HTTP 200 (or
        400) and ``errors``: that is a failure with its messages, not a success."""
        status, body = await request_json(
            self._client,
            "POST",
            f"{self.job.url}/graphql",
            what=f"Dagster {field}",
            ok=lambda code: code < 500 and code != 429,
            json={"query": query, "variables": variables},
        )
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            text = "; ".join(str(e.get("message", e)) for e in errors)
            raise HandoffError(f"Dagster {field}: {_one_line(text)}", retriable=False)
        if status != 200 or not isinstance(body.get("data"), dict):
            hint = " (check the token in `headers`)" if status in (401, 403) else ""
            raise HandoffError(
                f"Dagster {field}: HTTP {status}, not a GraphQL answer{hint}", retriable=False
            )
        return dict(body["data"])


class _Refused(HandoffError):
    """Dagster answered with an error result (``PythonError``, ``RunConflict``, ...)."""

    def __init__(self, message: str, *, retriable: bool, result: dict[str, Any]) -> None:
        super().__init__(message, retriable=retriable)
        self.result = result


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": key, "value": value} for key, value in tags.items()]


def _run_detail(outcome: Outcome, steps: list[dict[str, Any]]) -> str:
    if outcome == "failed":
        failed = [s["stepKey"] for s in steps if s.get("status") == "FAILURE"]
        return (
            f"Dagster run failed (failed steps: {', '.join(failed)})"
            if failed
            else ("Dagster run failed")
        )
    return "Dagster run was canceled" if outcome == "cancelled" else ""


def _result_message(result: dict[str, Any]) -> str:
    """What an error result says: its ``message``, its config ``errors``, or its fields."""
    if result.get("errors"):
        return "; ".join(str(e.get("message")) for e in result["errors"])
    if result.get("message"):
        return str(result["message"])
    fields = {k: v for k, v in result.items() if k != "__typename"}
    return ", ".join(f"{k}={v}" for k, v in fields.items()) or "no message"


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 3] + "..."
