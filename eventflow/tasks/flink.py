"""The ``flink`` task: run a jar on an Apache Flink session cluster and finish with its job.

.. code-block:: yaml

    run:
      flink:
        url: http://127.0.0.1:8081               # the cluster's REST API
        jar: jobs/report.jar                     # relative to the pipeline file
        entry_class: com.example.Report          # default: the jar's manifest
        args: [--dt, "{dt}", --batch, "{batch_id}"]
        stop: {savepoint: true, drain: false}    # how eventflow stops the job
      timeout: 30m

It speaks Flink's REST API. The jar is uploaded once per content: its name on the cluster
carries the first 16 hex digits of its SHA-256 (``eventflow-<hash>-report.jar``), so a second
run, or a restart of eventflow, finds it in ``/jars`` and uploads nothing. ``args`` are
rendered per run (``{dt}``, the rule's ``params``, ``{run_id}``) and sent as the program's
argument list (``programArgsList``): each item is one argument, no shell ever splits or
expands it.

The job's name is ``downstream_key(ctx)`` (set as ``pipeline.name`` in the submission's
configuration), the same for every attempt: an attempt repeated after eventflow was killed
looks the name up in ``/jobs/overview`` and adopts the job it finds, running or finished,
instead of submitting a second one. The program must therefore not name its job itself
(Flink SQL and the Table API take ``pipeline.name``; a DataStream program calls
``execute()`` without a name). Each attempt also submits under a job id derived from the key
and the attempt, so a submission retried after a lost answer is refused by Flink as a
duplicate rather than run twice.

The job's final state is the attempt's outcome: ``FINISHED`` succeeds, ``FAILED`` and
``CANCELED`` fail, the former with the job's root exception (``/jobs/:id/exceptions``): its
last ``Caused by`` in the run's error, the whole trace in the run's log (``eventflow runs
FILE RUN_ID``). When the attempt times out or an operator cancels the run, eventflow cancels
the job, or with ``stop.savepoint`` stops it with a savepoint (``POST /jobs/:id/stop``,
followed until the savepoint completed) and records the savepoint's path on the run
(``notes.downstream.savepoint``, ``output.downstream.savepoint`` and the run log). A job
eventflow stopped so ends ``FINISHED`` in Flink, but counts as cancelled: a retry (the rule's
``retries``, ``eventflow retry``) submits a new job rather than adopting it, restored from
that savepoint (``savepointPath``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import urllib.parse
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import Field, field_validator

from eventflow.config.models import Model
from eventflow.errors import ClosedError
from eventflow.events import JSON
from eventflow.patterns import render
from eventflow.tasks import Text
from eventflow.tasks._logs import write_capped
from eventflow.tasks.handoff import (
    DownstreamRun,
    Handoff,
    HandoffError,
    HandoffSettings,
    HandoffTask,
    Outcome,
    describe,
    downstream_key,
    safe_url,
)
from eventflow.tasks.http import BaseUrl
from eventflow.types import RunContext

REQUEST_TIMEOUT = 30.0
"""Seconds one REST request may take before it counts as a (retriable) timeout."""
SUBMIT_TIMEOUT = 300.0
"""Seconds ``/jars/:id/run`` may take: the cluster runs the program's ``main`` (plans the
job) before it answers, 10-40 s for a PyFlink SQL job on a busy machine."""
UPLOAD_TIMEOUT = 300.0
"""Seconds a jar upload may take."""
SAVEPOINT_POLL = 0.5
"""Seconds between two looks at a savepoint that is being written."""
NOT_RUNNING_YET = "Not all required tasks are currently running"
"""Flink's reason for refusing a savepoint of a job whose tasks are still being deployed."""
OWN_CONFIG = "pipeline.name"
"""The Flink option eventflow sets to name the job (so it can find it again)."""
_OUTCOMES: dict[str, Outcome] = {
    "FINISHED": "succeeded",
    "FAILED": "failed",
    "CANCELED": "cancelled",
}
"""Flink's globally terminal job states; every other one (INITIALIZING, CREATED, RUNNING,
FAILING, CANCELLING, RESTARTING, ...) is ``running``."""
_CAUSE = re.compile(r"^Caused by: (.+)$", re.M)
_SUBMITTING: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}
"""One submission at a time per cluster (by URL) in this process: the JobManager runs each
submitted program's ``main`` itself, and two PyFlink programs submitted at once were seen to
swap their arguments or lose their job ("No jobs included in application")."""


def _submission_lock(url: str) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    held = _SUBMITTING.get(url)
    if held is None or held[0] is not loop:
        held = _SUBMITTING[url] = (loop, asyncio.Lock())
    return held[1]


class FlinkStop(Model):
    """How eventflow stops a job at an attempt's timeout or an operator's cancel."""

    savepoint: bool = Field(
        default=False,
        description="Stop the job with a savepoint (`POST /jobs/:id/stop`) and record its"
        " path on the run; false: cancel the job.",
    )
    drain: bool = Field(
        default=False,
        description="With `savepoint`: emit MAX_WATERMARK first, so event-time windows and"
        " partition commits fire before the job ends (for a job that will not be resumed).",
    )


class FlinkRun(HandoffSettings):
    """The jar a ``flink`` task runs and the cluster it runs it on."""

    url: BaseUrl = Field(description="The Flink REST API, e.g. `http://127.0.0.1:8081`.")
    jar: str = Field(
        min_length=1,
        description="The job's jar, a path relative to the pipeline file (uploaded once per"
        " content).",
    )
    entry_class: str | None = Field(
        default=None, description="The program's main class; default: the jar's manifest."
    )
    args: list[Text] = Field(
        default_factory=list,
        description="The program's arguments, one item each (`{var}` is replaced; no shell).",
    )
    configuration: dict[str, Text] = Field(
        default_factory=dict,
        description="Flink options for this job (`flinkConfiguration`; `{var}` is replaced)."
        " eventflow sets `pipeline.name` itself.",
    )
    stop: FlinkStop = Field(
        default_factory=FlinkStop,
        description="How a timeout or an operator's cancel stops the job:"
        " `{savepoint: bool, drain: bool}`.",
    )

    @field_validator("configuration")
    @classmethod
    def _own_key_free(cls, value: dict[str, str]) -> dict[str, str]:
        if OWN_CONFIG in value:
            raise ValueError(
                f"`{OWN_CONFIG}` names the job after the run (how eventflow finds it again);"
                " remove it from `configuration`"
            )
        return value


class FlinkConfig(Model):
    """``flink: {url: ..., jar: ..., args: [...]}``."""

    flink: FlinkRun = Field(description="The jar to run on a Flink cluster and wait for.")


class RunLog:
    """What the attempt's run log (its ``stdout`` file) says of the Flink job, rewritten
    whole at each new line (it stays small)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.lines: list[str] = []

    def add(self, text: str) -> None:
        self.lines.append(text.rstrip("\n"))
        write_capped(self.path, "\n".join(self.lines) + "\n", self.max_bytes)


class FlinkHandoff:
    """The Flink side of a hand-off: one ``httpx.AsyncClient``, the jobs this process
    stopped (with their savepoints), each job's run log and the submissions in flight."""

    system: ClassVar[str] = "flink"

    def __init__(self, config: FlinkRun, base_dir: Path) -> None:
        self.config = config
        self.jar_path = base_dir / config.jar
        self._client = httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT, headers={"User-Agent": "eventflow"}
        )
        self._upload = asyncio.Lock()
        self._stopped: dict[str, str | None] = {}
        """Jobs eventflow stopped: job id -> the savepoint's path (None: cancelled)."""
        self._logs: dict[str, RunLog] = {}
        """The run log of each job's attempt, by job id."""
        self._savepoint_errors: dict[str, str] = {}
        """Why the savepoint of a job eventflow then cancelled failed, by job id."""
        self._in_flight: dict[str, asyncio.Future[Any]] = {}
        """Submissions still waiting for the cluster's answer, by downstream key."""
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        for sending in list(self._in_flight.values()):
            sending.cancel()
        await self._client.aclose()

    # -- the hand-off ---------------------------------------------------------------------

    async def find(self, ctx: RunContext) -> DownstreamRun | None:
        key = downstream_key(ctx)
        sending = self._in_flight.get(key)
        if sending is not None:  # an interrupted submission: its job is the one to find
            with contextlib.suppress(HandoffError):
                await asyncio.shield(sending)
        _, body = await self._call("GET", "/jobs/overview", "list the jobs")
        jobs = [j for j in body.get("jobs", []) if j.get("name") == key]
        if not jobs:
            return None
        newest = max(jobs, key=lambda j: int(j.get("start-time") or 0))
        self._remember_stop(ctx, str(newest["jid"]))
        run = await self.poll(self._run(newest["jid"], newest["state"]))
        self._log_for(ctx, run.id).add(f"flink: found job {run.id} ({key}), {run.state}")
        return run

    async def submit(self, ctx: RunContext, savepoint: str | None = None) -> DownstreamRun:
        key = downstream_key(ctx)
        jar_id = await self._jar(ctx)
        job_id = job_id_of(key, ctx.attempt)
        request: dict[str, Any] = {
            "programArgsList": [render(arg, ctx.variables) for arg in self.config.args],
            "flinkConfiguration": {
                **{k: render(v, ctx.variables) for k, v in self.config.configuration.items()},
                OWN_CONFIG: key,
            },
            "jobId": job_id,
        }
        if self.config.entry_class:
            request["entryClass"] = self.config.entry_class
        if savepoint:
            request["savepointPath"] = savepoint
        log = self._log_for(ctx, job_id)
        log.add(f"flink: submitting job {job_id} ({key}) from {jar_id}")
        if savepoint:
            log.add(f"flink: restoring from the savepoint {savepoint}")
        sending = self._sending(key, jar_id, request)
        try:
            _, body = await asyncio.shield(sending)
        except HandoffError as exc:
            # The cluster may have started the job although the answer was an error (a
            # lost connection, a timeout, a program that waited for its job): adopt it.
            found = await self.find(ctx)
            if found is not None and found.id == job_id:
                return found
            log.add(f"flink: {exc}")
            raise
        submitted = str(body.get("jobid") or job_id)
        self._logs.setdefault(submitted, log)
        run = await self.poll(self._run(submitted, "CREATED"))
        log.add(f"flink: submitted job {run.id}, {run.state}")
        return run

    def _sending(self, key: str, jar_id: str, request: dict[str, Any]) -> asyncio.Future[Any]:
        """The submission as a task of its own: when the attempt is cancelled (a timeout, an
        operator) while the cluster runs the program, the answer is still awaited, by
        :meth:`find`, so the job that comes of it is found and stopped, not left running."""

        async def send() -> tuple[int, Any]:
            async with _submission_lock(self.config.url):
                return await self._call(
                    "POST",
                    f"/jars/{_segment(jar_id)}/run",
                    f"run the jar {self.config.jar!r}",
                    timeout=SUBMIT_TIMEOUT,
                    json=request,
                )

        sending = asyncio.ensure_future(send())
        self._in_flight[key] = sending

        def done(task: asyncio.Future[Any]) -> None:
            if self._in_flight.get(key) is task:
                del self._in_flight[key]
            if not task.cancelled():
                task.exception()  # retrieved here; the awaiting attempt reports it

        sending.add_done_callback(done)
        return sending

    async def rerun(self, run: DownstreamRun, ctx: RunContext) -> DownstreamRun:
        """A new job for this attempt (a Flink job cannot run twice), restored from the
        savepoint eventflow stopped the previous job with, if any; the newest job of the name
        is the one ``find`` adopts."""
        savepoint = run.facts.get("savepoint")
        return await self.submit(ctx, savepoint if isinstance(savepoint, str) else None)

    async def poll(self, run: DownstreamRun) -> DownstreamRun:
        _, body = await self._call("GET", f"/jobs/{_segment(run.id)}", f"read job {run.id}")
        current = self._run(run.id, str(body.get("state", "")))
        if current.state != run.state and run.id in self._logs:
            self._logs[run.id].add(f"flink: job {run.id} is {current.state}")
        if current.state != "FAILED":
            return current
        trace = await self._root_exception(run.id)
        if trace and run.id in self._logs:
            self._logs[run.id].add(f"flink: job {run.id} failed; its root exception:\n{trace}")
        return DownstreamRun(
            current.id, current.url, current.state, current.outcome, last_cause(trace)
        )

    async def cancel(self, run: DownstreamRun) -> None:
        if not self.config.stop.savepoint:
            self._stopped[run.id] = None
            await self._call(
                "PATCH",
                f"/jobs/{_segment(run.id)}",
                f"cancel job {run.id}",
                params={"mode": "cancel"},
            )
            return
        self._stopped[run.id] = None
        try:
            path = await self._stop_with_savepoint(run.id)
        except HandoffError as exc:  # the job must stop all the same: cancel it
            self._savepoint_errors[run.id] = str(exc)
            self._note_line(run.id, f"flink: {exc}; cancelling the job instead")
            await self._call(
                "PATCH",
                f"/jobs/{_segment(run.id)}",
                f"cancel job {run.id}",
                params={"mode": "cancel"},
            )
            return
        self._stopped[run.id] = path
        self._note_line(run.id, f"flink: job {run.id} stopped with a savepoint at {path}")

    # -- Flink's API ------------------------------------------------------------------------

    def _run(self, job_id: str, state: str) -> DownstreamRun:
        """A job as eventflow sees it: a job it stopped counts as cancelled, with its
        savepoint (Flink says FINISHED)."""
        page = f"{self.config.url}/#/job/running/{job_id}/overview"
        outcome = _OUTCOMES.get(state, "running")
        facts: dict[str, JSON] = {}
        if job_id in self._stopped:
            savepoint = self._stopped[job_id]
            facts["stopped"] = "savepoint" if savepoint else "cancel"
            if savepoint:
                facts["savepoint"] = savepoint
            if job_id in self._savepoint_errors:
                facts["savepoint_error"] = self._savepoint_errors[job_id]
            if outcome == "succeeded":
                outcome = "cancelled"
        return DownstreamRun(job_id, page, state, outcome, facts=facts)

    def _remember_stop(self, ctx: RunContext, job_id: str) -> None:
        """Learn from the run's notes that an earlier process stopped ``job_id``."""
        noted = ctx.notes.get("downstream")
        if isinstance(noted, dict) and noted.get("id") == job_id and noted.get("stopped"):
            savepoint = noted.get("savepoint")
            self._stopped.setdefault(job_id, savepoint if isinstance(savepoint, str) else None)

    async def _jar(self, ctx: RunContext) -> str:
        """The id of the jar on the cluster, uploaded when no jar of its content is there."""
        async with self._upload:
            try:
                content = await asyncio.to_thread(self.jar_path.read_bytes)
            except OSError as exc:
                raise HandoffError(
                    f"cannot read the jar {self.config.jar!r} ({self.jar_path}):"
                    f" {exc.strerror or exc}; `jar` is a path relative to the pipeline file",
                    retriable=False,
                ) from exc
            name = jar_name(self.jar_path.name, content)
            _, body = await self._call("GET", "/jars", "list the uploaded jars")
            for item in body.get("files", []):
                if item.get("name") == name:
                    return str(item["id"])
            _, body = await self._call(
                "POST",
                "/jars/upload",
                f"upload the jar {self.config.jar!r}",
                timeout=UPLOAD_TIMEOUT,
                files={"jarfile": (name, content, "application/x-java-archive")},
            )
            uploaded = str(body.get("filename", "")).rsplit("/", 1)[-1]
            self._log_for(ctx, job_id_of(downstream_key(ctx), ctx.attempt)).add(
                f"flink: uploaded {self.config.jar} as {uploaded}"
            )
            return uploaded

    async def _stop_with_savepoint(self, job_id: str) -> str:
        """Stop the job with a savepoint and wait until Flink wrote it; its path. A job whose
        tasks are still being deployed cannot take one yet: asked again until they run (the
        hand-off's cleanup time bounds the wait)."""
        while True:
            try:
                return await self._savepoint(job_id)
            except HandoffError as exc:
                if NOT_RUNNING_YET not in str(exc):
                    raise
            await asyncio.sleep(SAVEPOINT_POLL)

    async def _savepoint(self, job_id: str) -> str:
        request = {"drain": self.config.stop.drain}  # into the cluster's savepoint-dir
        _, body = await self._call(
            "POST", f"/jobs/{_segment(job_id)}/stop", f"stop job {job_id}", json=request
        )
        trigger = str(body["request-id"])
        while True:
            _, status = await self._call(
                "GET",
                f"/jobs/{_segment(job_id)}/savepoints/{_segment(trigger)}",
                f"read the savepoint of job {job_id}",
            )
            if status.get("status", {}).get("id") == "COMPLETED":
                operation = status.get("operation") or {}
                if operation.get("location"):
                    return str(operation["location"])
                cause = operation.get("failure-cause") or {}
                text = str(cause.get("stack-trace") or cause.get("class") or "unknown cause")
                raise HandoffError(
                    f"Flink could not take the savepoint of job {job_id}: {last_cause(text)}",
                    retriable=False,
                )
            await asyncio.sleep(SAVEPOINT_POLL)

    async def _root_exception(self, job_id: str) -> str:
        """The job's root exception, its stack trace as Flink reports it ("" if none)."""
        _, body = await self._call(
            "GET", f"/jobs/{_segment(job_id)}/exceptions", f"read the exceptions of job {job_id}"
        )
        entries = (body.get("exceptionHistory") or {}).get("entries") or []
        if entries:
            first = entries[0]
            return str(first.get("stacktrace") or first.get("exceptionName") or "")
        return str(body.get("root-exception") or "")

    def _log_for(self, ctx: RunContext, job_id: str) -> RunLog:
        log = self._logs.get(job_id)
        if log is None or log.path != ctx.stdout_path:
            log = self._logs[job_id] = RunLog(ctx.stdout_path, ctx.log_max_bytes)
        return log

    def _note_line(self, job_id: str, text: str) -> None:
        if job_id in self._logs:
            self._logs[job_id].add(text)

    async def _call(
        self, method: str, path: str, what: str, *, timeout: float | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        """One REST request: ``(status, JSON body)`` of a 2xx answer, else a
        :class:`HandoffError` with Flink's own message (its last ``Caused by``)."""
        if self._closed:
            raise ClosedError("this flink task runner is closed")
        url = f"{self.config.url}{path}"
        where = safe_url(url)
        try:
            response = await self._client.request(
                method, url, timeout=timeout or REQUEST_TIMEOUT, **kwargs
            )
        except httpx.TimeoutException as exc:
            raise HandoffError(
                f"could not {what}: {method} {where} timed out", retriable=True
            ) from exc
        except httpx.TransportError as exc:
            raise HandoffError(
                f"could not {what}: {method} {where} failed: {describe(exc)}", retriable=True
            ) from exc
        except httpx.HTTPError as exc:
            raise HandoffError(
                f"could not {what}: {method} {where} failed: {describe(exc)}", retriable=False
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        status = response.status_code
        if 200 <= status < 300:
            return status, body if body is not None else {}
        errors = body.get("errors") if isinstance(body, dict) else None
        text = "\n".join(str(e) for e in errors) if errors else response.text[:300]
        message = last_cause(text)
        raise HandoffError(
            f"could not {what}: {method} {where} answered HTTP {status}"
            + (f": {message}" if message else ""),
            retriable=status >= 500 or status == 429,
        )


class FlinkTask(HandoffTask):
    """Runs a ``flink`` task (see the module docs)."""

    config_model: ClassVar[type[Model]] = FlinkConfig
    config: FlinkConfig

    def build(self) -> Handoff:
        return FlinkHandoff(self.config.flink, self.env.base_dir)

    def settings(self) -> HandoffSettings:
        return self.config.flink


def jar_name(file_name: str, content: bytes) -> str:
    """``eventflow-<16 hex digits of the content's SHA-256>-<file name>``: the name of a jar
    on the cluster, the same for the same content."""
    digest = hashlib.sha256(content).hexdigest()[:16]
    return f"eventflow-{digest}-{file_name}"


def job_id_of(key: str, attempt: int) -> str:
    """The job id of an attempt (32 hex digits, as Flink's ``JobID``): the same for the same
    run and attempt, so a submission sent twice is one job."""
    return hashlib.sha256(f"{key}#{attempt}".encode()).hexdigest()[:32]


def last_cause(trace: str) -> str:
    """One line for a Java stack trace: its last ``Caused by`` (the root), else its first
    line; at most 300 characters."""
    causes = _CAUSE.findall(trace)
    line = causes[-1] if causes else (trace.strip().splitlines() or [""])[0]
    return line.strip()[:300]


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")
