"""Apache Flink jobs, read from the REST API of a session cluster or of a job's own cluster.

Every ``poll_interval`` the sensor reads ``/jobs/overview`` and, for each job whose name
matches ``jobs``, announces what is new since its cursor, each as one observation:

- **state changes** (``JOB/state/STATE``, STATE lower-case: ``created``, ``running``,
  ``restarting``, ``failed``, ``finished``, ``canceled``, ...), from the job's
  ``timestamps`` (when it last entered each state), so states passed between two polls are
  announced too, in order;
- **completed checkpoints and savepoints** (``JOB/checkpoint/ID``, ``JOB/savepoint/ID``)
  from ``/jobs/:id/checkpoints``;
- with ``watermarks``, **periods of event time the watermark passed**
  (``JOB/watermark/dt=2024-01-01/hr=00``): the job's watermark is the lowest input
  watermark of its vertices (``/jobs/:id/vertices/:vid/watermarks``); a period is announced
  once, in order, when it is past the period's end plus ``lateness``.

A job name's ``/`` is written ``%2F`` in keys. The cursor (per job id: last state and its
time, last checkpoint id, last period) is written with each observation, and each
observation's source position is made of the same values, so a restart neither misses nor
repeats one. A job that cannot be read (a 404, a vertex without metrics, an answer of an
unexpected shape) is logged and skipped for that poll; the other jobs go on. A job that
ended is read once more for its last checkpoints, then no longer; when it leaves the
cluster's job list, its cursor is forgotten. When the REST API itself is down (a
mini-cluster's exists only while its job runs) the sensor reports itself unhealthy and tries
again with backoff, and announces what it missed when the API is back.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from eventflow.plugin import (
    JSON,
    Observation,
    PluginEnv,
    SensorContext,
    backoff,
    glob_match,
    sensor_gauges,
)

from .config import FlinkSensorConfig, WatermarkPeriods
from .rest import FlinkRest, FlinkUnreachable, JobProblem
from .track import (
    LAST_TIME,
    TERMINAL,
    JobCursor,
    new_checkpoints,
    new_states,
    passed,
    watermark_of,
)

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

__all__ = ["FlinkSensor", "FlinkSensorConfig", "WatermarkPeriods"]

BACKOFF_MAX = 10.0
"""Longest wait between two attempts to reach a REST API that is down (seconds): a job's
mini-cluster may come and go within a minute."""
STRIKES = 3
"""Polls in a row the checkpoints of a job that ended may fail to be read before they are
given up."""
PATIENCE = 5
"""Polls in a row a job may fail to be read before a warning is logged (debug before)."""
WARN_EVERY = 60
"""While a job stays unreadable, a warning every this many polls."""
CURSOR_PREFIX = "job:"


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _iso(ms: Any) -> str | None:
    """Epoch ms as ISO-8601 text; None for what is not a time (0, -1, Long.MAX_VALUE)."""
    if not isinstance(ms, int) or isinstance(ms, bool) or not 0 < ms <= LAST_TIME:
        return None
    return _time(ms).isoformat()


class FlinkSensor:
    """Polls a Flink REST API for job states, checkpoints and watermarks."""

    config_model: ClassVar[type[BaseModel]] = FlinkSensorConfig

    def __init__(self, name: str, config: Any, env: PluginEnv) -> None:
        if not isinstance(config, FlinkSensorConfig):
            config = FlinkSensorConfig.model_validate(config)
        self.name = name
        self.config = config
        self.cursors: dict[str, JobCursor] = {}
        self._strikes: dict[str, int] = {}
        self._vertices: dict[str, list[str]] = {}
        self._listed: dict[str, int] = {}
        """Each job's ``last-modification`` in the job list of this poll."""
        self._read: dict[str, int] = {}
        """The ``last-modification`` at which each job's own page was last read."""

    # --- running ---------------------------------------------------------------------

    async def run(self, ctx: SensorContext) -> None:
        """Poll until cancelled; an unreachable API is reported and retried, not raised."""
        await self.open(ctx)
        try:
            self._log.info(
                "flink_watch_started",
                url=self.config.url,
                jobs=len(self.cursors),
                poll_interval=self.config.poll_interval.total_seconds(),
            )
            await self._poll_loop()
        finally:
            await self.close()

    async def open(self, ctx: SensorContext) -> None:
        """Make the client and load the cursor (``run`` does it before it polls)."""
        self._ctx = ctx
        self._log: FilteringBoundLogger = ctx.log.bind(sensor=self.name)
        self._gauges = sensor_gauges(self.name)
        self._rest = FlinkRest(self.config)
        for key, value in (await ctx.load_cursor()).items():
            if key.startswith(CURSOR_PREFIX) and isinstance(value, dict):
                self.cursors[key[len(CURSOR_PREFIX) :]] = JobCursor.from_json(value)

    async def close(self) -> None:
        """Close the client (idempotent)."""
        rest = getattr(self, "_rest", None)
        if rest is not None and not rest.closed:
            await rest.close()
            self._log.info("flink_watch_stopped")

    async def _poll_loop(self) -> None:
        interval = self.config.poll_interval.total_seconds()
        failures = 0
        while True:
            try:
                await self.poll()
            except FlinkUnreachable as problem:
                failures += 1
                self._ctx.set_health(False, str(problem))
                log = self._log.error if failures == 1 else self._log.warning
                log("flink_unreachable", url=self.config.url, error=problem.message,
                    hint=problem.hint, failures=failures)  # fmt: skip
                cap = max(interval, BACKOFF_MAX)
                await asyncio.sleep(backoff.delay(failures, first=interval, cap=cap))
                continue
            if failures:
                self._log.info("flink_reachable", url=self.config.url, failures=failures)
            failures = 0
            self._ctx.set_health(True)
            await asyncio.sleep(interval)

    async def poll(self) -> int:
        """Read the job list and announce what is new of each job; returns the number of
        observations emitted. Raises FlinkUnreachable when the job list cannot be read."""
        started = time.monotonic()
        requests = self._rest.requests
        jobs = await self._rest.overview()
        emitted = 0
        listed: set[str] = set()
        for job in sorted(jobs, key=lambda j: (_int(j.get("start-time")), j["jid"])):
            name = str(job.get("name", ""))
            if not glob_match(name, self.config.jobs):
                continue
            listed.add(job["jid"])
            modified = _int(job.get("last-modification"))
            emitted += await self._poll_job(job["jid"], name, str(job.get("state", "")), modified)
        gone = [jid for jid in self.cursors if jid not in listed]
        if gone:
            for jid in gone:
                self._drop(jid)
            await self._ctx.forget([CURSOR_PREFIX + jid for jid in gone])
            self._log.info("flink_jobs_forgotten", jobs=gone)
        self._gauges.polled()
        self._log.debug(
            "flink_polled",
            jobs=len(listed),
            emitted=emitted,
            requests=self._rest.requests - requests,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return emitted

    def _drop(self, jid: str) -> None:
        self.cursors.pop(jid, None)
        self._strikes.pop(jid, None)
        self._vertices.pop(jid, None)
        self._listed.pop(jid, None)
        self._read.pop(jid, None)

    # --- one job -----------------------------------------------------------------------

    async def _poll_job(self, jid: str, name: str, state: str, modified: int = 0) -> int:
        """Announce what is new of one job; a problem with it is logged, never raised (but
        FlinkUnreachable is: then the API itself went away)."""
        cursor = self.cursors.get(jid) or JobCursor(name=name)
        if cursor.done:
            return 0
        self.cursors[jid] = cursor
        self._listed[jid] = modified
        ended = state in TERMINAL
        # A job that ended: its last checkpoints before its end. Checkpoints exist only once
        # a job runs (before, the REST API answers 500).
        steps = [self._states]
        if ended:
            steps.insert(0, self._checkpoints)
        elif state == "RUNNING":
            steps.append(self._checkpoints)
        if self.config.watermarks is not None and state == "RUNNING":
            steps.append(self._watermarks)
        emitted = 0
        problems: list[str] = []
        for step in steps:
            try:
                emitted += await step(jid, name, state)
            except JobProblem as problem:
                problems.append(str(problem))
            except (KeyError, TypeError, ValueError) as exc:  # an answer of another shape
                problems.append(f"job {jid}: unexpected answer: {exc!r}")
        strikes = self._strikes.get(jid, 0) + 1 if problems else 0
        self._strikes[jid] = strikes
        if problems:
            # Right after a job starts its checkpoints answer 500 for a poll or two: a
            # problem is worth a warning once it lasts.
            log = self._log.warning if strikes % WARN_EVERY == PATIENCE else self._log.debug
            log("flink_job_unreadable", job_id=jid, job_name=name, state=state,
                error="; ".join(problems), failures=strikes)  # fmt: skip
        # The job list and a job's own page are cached apart by the REST API: the list may
        # say FAILED while the job's page still says RUNNING. The job is done only once its
        # page said it ended (and that state was announced) and its checkpoints were read.
        if ended and self.cursors[jid].state in TERMINAL and (not problems or strikes >= STRIKES):
            self.cursors[jid] = cursor = replace(self.cursors[jid], done=True)
            await self._emit_cursor(jid, cursor)
            self._vertices.pop(jid, None)
        return emitted

    async def _states(self, jid: str, name: str, state: str) -> int:
        cursor = self.cursors[jid]
        # The job list's state alone would miss RUNNING, RESTARTING, RUNNING between two
        # polls; its last-modification moves with every change of the job (or its tasks).
        modified = self._listed.get(jid, 0)
        if state == cursor.state and modified and modified == self._read.get(jid):
            return 0
        detail = await self._rest.job(jid)
        if _int(detail.get("now")) >= modified:  # the page was taken after that change
            self._read[jid] = modified
        vertices = detail.get("vertices")
        if isinstance(vertices, list):
            self._vertices[jid] = [str(v["id"]) for v in vertices if isinstance(v, dict)]
        timestamps = detail.get("timestamps")
        if not isinstance(timestamps, dict):
            raise JobProblem(f"job {jid}: /jobs/{jid} has no `timestamps`")
        found = new_states(cursor, timestamps)
        for entered, at in found:
            cursor = replace(cursor, state=entered, state_at=at)
            self.cursors[jid] = cursor
            payload = {"job_id": jid, "job_name": name, "state": entered.lower(),
                       "at": _iso(at), "start_time": _iso(detail.get("start-time")),
                       "end_time": _iso(detail.get("end-time"))}  # fmt: skip
            await self._emit(
                jid, cursor, f"state/{entered.lower()}", {"job": jid, "state": entered, "at": at},
                at, payload, kind="state",
            )  # fmt: skip
            self._log.info("flink_job_state", job_id=jid, job_name=name, state=entered)
        return len(found)

    async def _checkpoints(self, jid: str, name: str, state: str) -> int:
        if not self.config.checkpoints:
            return 0
        body = await self._rest.checkpoints(jid)
        found = new_checkpoints(self.cursors[jid], body)
        for item in found:
            cid = int(item["id"])
            cursor = replace(self.cursors[jid], checkpoint=cid)
            self.cursors[jid] = cursor
            kind = "savepoint" if item.get("is_savepoint") else "checkpoint"
            acked = _int(item.get("latest_ack_timestamp")) or _int(item.get("trigger_timestamp"))
            payload = {
                "job_id": jid,
                "job_name": name,
                "id": cid,
                "kind": kind,
                "checkpoint_type": item.get("checkpoint_type"),
                "external_path": item.get("external_path"),
                "triggered_at": _iso(item.get("trigger_timestamp")),
                "completed_at": _iso(acked),
                "checkpointed_size": item.get("checkpointed_size"),
                "state_size": item.get("state_size"),
                "duration_ms": item.get("end_to_end_duration"),
            }
            await self._emit(jid, cursor, f"{kind}/{cid}", {"job": jid, "checkpoint": cid},
                             acked or None, payload, kind=kind)  # fmt: skip
        return len(found)

    async def _watermarks(self, jid: str, name: str, state: str) -> int:
        periods = self.config.watermarks
        assert periods is not None
        vertices = self._vertices.get(jid)
        if vertices is None:
            detail = await self._rest.job(jid)
            vertices = [str(v["id"]) for v in detail.get("vertices") or []]
            self._vertices[jid] = vertices
        readings = await asyncio.gather(*(self._rest.watermarks(jid, v) for v in vertices))
        watermark = watermark_of(readings)
        if watermark is None:
            return 0
        cursor = self.cursors[jid]
        step = passed(cursor, watermark, periods.every_ms, periods.lateness_ms, periods.since_ms)
        if step.cursor is None:
            return 0
        every = periods.every_ms
        for end in step.ends:
            start = end - every
            label = _time(start).strftime(periods.key)
            cursor = replace(step.cursor, period=end)
            payload = {"job_id": jid, "job_name": name, "start": _iso(start), "end": _iso(end),
                       "watermark": _iso(watermark),
                       "end_of_input": watermark > LAST_TIME}  # fmt: skip
            await self._emit(jid, cursor, f"watermark/{label}",
                             {"job": jid, "period": start, "every": every}, end, payload,
                             kind="watermark")  # fmt: skip
            self._log.info("flink_watermark_passed", job_id=jid, job_name=name,
                           period=label)  # fmt: skip
        self.cursors[jid] = step.cursor
        if not step.ends and step.keep:
            await self._emit_cursor(jid, step.cursor)
        return len(step.ends)

    # --- emitting ----------------------------------------------------------------------

    async def _emit(
        self,
        jid: str,
        cursor: JobCursor,
        what: str,
        position: dict[str, JSON],
        at: int | None,
        payload: dict[str, JSON],
        *,
        kind: str,
    ) -> None:
        name = cursor.name
        attributes: dict[str, JSON] = {"kind": kind, "job_id": jid, "job_name": name,
                                       "url": self.config.url}  # fmt: skip
        await self._ctx.emit(
            Observation(
                sensor=self.name,
                position=position,
                key=f"{name.replace('/', '%2F')}/{what}",
                time=_time(at) if at else None,
                payload=payload,
                attributes=attributes,
                cursor=(CURSOR_PREFIX + jid, cursor.to_json()),
            )
        )

    async def _emit_cursor(self, jid: str, cursor: JobCursor) -> None:
        """Write the cursor of a job without announcing anything."""
        await self._ctx.emit(
            Observation(sensor=self.name, position={"job": jid, "cursor": True},
                        cursor=(CURSOR_PREFIX + jid, cursor.to_json()))
        )  # fmt: skip


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
