"""The few calls of Flink's REST API the sensor makes, with its errors translated.

Two kinds of problem: :class:`FlinkUnreachable` (the API itself is down, refuses the
credential or answers nonsense: the sensor is unhealthy and retries with backoff) and
:class:`JobProblem` (one job cannot be read: a 404 because it is gone, a vertex without
metrics; the sensor logs it and goes on with the other jobs).
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from eventflow.plugin import JSON, SensorError

from .config import FlinkSensorConfig


class FlinkUnreachable(SensorError):
    """The REST API cannot be read at all (its job list does not answer)."""

    retriable = True

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(f"{message}; {hint}")
        self.message = message
        self.hint = hint


class JobProblem(SensorError):
    """One job (or one of its vertices) cannot be read."""

    def __init__(self, message: str, *, gone: bool = False) -> None:
        super().__init__(message)
        self.gone = gone
        """The API answered 404: the job left the cluster (or never was there)."""


class FlinkRest:
    """An HTTP client of one Flink REST API; ``close`` is idempotent."""

    def __init__(self, config: FlinkSensorConfig) -> None:
        self.url = config.url
        headers = {"Accept": "application/json"}
        if config.token_env is not None:
            token = os.environ.get(config.token_env)
            if not token:
                raise SensorError(
                    f"environment variable {config.token_env} (`token_env`) is not set;"
                    " set it to the REST API's bearer token"
                )
            headers["Authorization"] = f"Bearer {token}"
        timeout = config.request_timeout.total_seconds()
        self._client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)
        self.requests = 0

    @property
    def closed(self) -> bool:
        return self._client.is_closed

    async def close(self) -> None:
        await self._client.aclose()

    async def overview(self) -> list[dict[str, Any]]:
        """``GET /jobs/overview``: every job the cluster knows, with its state."""
        body = await self._get("/jobs/overview", job=None)
        jobs = body.get("jobs") if isinstance(body, dict) else None
        if not isinstance(jobs, list):
            raise FlinkUnreachable(
                f"{self.url}/jobs/overview did not answer a job list",
                "check that `url` is the Flink REST API (the web UI's address)",
            )
        return [j for j in jobs if isinstance(j, dict) and isinstance(j.get("jid"), str)]

    async def job(self, jid: str) -> dict[str, Any]:
        """``GET /jobs/:id``: the job's state timestamps and vertices."""
        return _mapping(await self._get(f"/jobs/{jid}", job=jid), f"job {jid}")

    async def checkpoints(self, jid: str) -> dict[str, Any]:
        """``GET /jobs/:id/checkpoints``: the latest and recent checkpoints."""
        return _mapping(await self._get(f"/jobs/{jid}/checkpoints", job=jid), f"job {jid}")

    async def watermarks(self, jid: str, vertex: str) -> list[dict[str, Any]]:
        """``GET /jobs/:id/vertices/:vid/watermarks``: each subtask's input watermark."""
        body = await self._get(f"/jobs/{jid}/vertices/{vertex}/watermarks", job=jid)
        if not isinstance(body, list):
            raise JobProblem(f"job {jid}: vertex {vertex}'s watermarks are not a list")
        return [w for w in body if isinstance(w, dict)]

    async def _get(self, path: str, job: str | None) -> JSON:
        self.requests += 1
        try:
            response = await self._client.get(path)
        except httpx.TransportError as exc:
            if job is not None:  # the job list answered: a slow job's page is its problem
                raise JobProblem(f"job {job}: {path}: {_describe(exc)}") from exc
            raise FlinkUnreachable(
                f"cannot reach the Flink REST API at {self.url}: {_describe(exc)}",
                "is the cluster (or the job's mini-cluster) running? the sensor retries",
            ) from exc
        if response.status_code in (401, 403):
            raise FlinkUnreachable(
                f"the Flink REST API at {self.url} refused the request ({response.status_code})",
                "set `token_env` to the variable holding a valid bearer token",
            )
        if job is not None and response.status_code == 404:
            raise JobProblem(f"job {job}: {path} answered 404 (the job is gone)", gone=True)
        if response.status_code >= 400:
            message = f"{self.url}{path} answered {response.status_code}"
            if job is not None:
                raise JobProblem(f"job {job}: {message}")
            raise FlinkUnreachable(message, "the sensor retries; see the JobManager's log")
        try:
            return response.json()
        except ValueError as exc:
            if job is not None:
                raise JobProblem(f"job {job}: {path} did not answer JSON") from exc
            raise FlinkUnreachable(
                f"{self.url}{path} did not answer JSON",
                "check that `url` is the Flink REST API (the web UI's address)",
            ) from exc


def _mapping(body: JSON, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise JobProblem(f"{what}: the answer is not a JSON object")
    return body


def _describe(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
