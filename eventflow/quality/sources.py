"""One check, run with its retries and timeout: what each kind of check runs, and its
result (passed or not, the value, why, and an excerpt of what it printed).

``command`` and ``python`` checks are run by the task runners of ``run.command`` and
``run.python`` (process groups, timeouts, captured output), with a context like a run's:
the partition's variables, ``{run_id}``, the inputs' payloads in ``EVENTFLOW_EVENTS``.
"""

from __future__ import annotations

import asyncio
import glob
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventflow import backoff
from eventflow.errors import EventflowError
from eventflow.events import JSON, format_partition
from eventflow.patterns import render
from eventflow.payloads import InputEvent, params_context
from eventflow.quality.expect import judge, number, timestamp
from eventflow.quality.sql import query
from eventflow.quality.suite import CheckSpec, CheckSuite, Location
from eventflow.records import RunRecord
from eventflow.tasks import timeout_detail
from eventflow.types import ObjectSensor, RunContext, TaskResult, TaskRunner

OUTPUT_EXCERPT = 2000
"""The last characters of what a check printed kept in its result and event."""


@dataclass(frozen=True)
class Target:
    """The partition under check: the run that produced it and where its files go."""

    run: RunRecord
    evaluation: int
    """The gate's evaluation number (its ``attempt``)."""
    events: tuple[InputEvent, ...]
    base_dir: Path
    folder: Path
    pipeline: str
    log_max_bytes: int
    objects: Mapping[str, ObjectSensor] = field(default_factory=dict)
    """The object sensors (S3) by name, whose clients ``exists`` looks for objects with."""

    @property
    def variables(self) -> dict[str, str]:
        return {
            **self.run.partition,
            "run_id": self.run.run_id,
            "rule": self.run.rule,
            "attempt": str(self.run.attempt),
            "partition": format_partition(self.run.partition),
            "pipeline_dir": str(self.base_dir),
        }


@dataclass(frozen=True)
class Attempt:
    passed: bool
    value: JSON = None
    detail: str = ""
    output: str = ""


async def run_check(
    spec: CheckSpec,
    suite: CheckSuite,
    target: Target,
    runner: TaskRunner | None,
    previous: JSON,
    clock: Any,
    rng: random.Random,
) -> dict[str, JSON]:
    """The check's result after up to ``retries + 1`` attempts (the last one counts)."""
    started = time.monotonic()
    attempt = Attempt(False, detail="not run")
    number_ = 0
    for number_ in range(1, spec.max_attempts + 1):
        attempt = await _attempt(spec, suite, target, runner, number_, previous, clock)
        if attempt.passed or number_ == spec.max_attempts:
            break
        policy = spec.config.backoff
        wait = backoff.delay(
            number_,
            first=policy.initial.total_seconds(),
            cap=policy.max.total_seconds(),
            factor=policy.multiplier,
            jitter=policy.jitter,
            rng=rng,
        )
        await asyncio.sleep(wait)
    result: dict[str, JSON] = {
        "check": spec.name,
        "kind": spec.config.kind,
        "severity": spec.config.severity,
        "passed": attempt.passed,
        "value": attempt.value,
        "attempts": number_,
        "duration": round(time.monotonic() - started, 6),
        "at": clock().isoformat(),
    }
    if attempt.detail:
        result["detail"] = attempt.detail
    if attempt.output:
        result["output"] = attempt.output
    return result


async def _attempt(
    spec: CheckSpec,
    suite: CheckSuite,
    target: Target,
    runner: TaskRunner | None,
    number_: int,
    previous: JSON,
    clock: Any,
) -> Attempt:
    timeout = spec.config.timeout.total_seconds() if spec.config.timeout else None
    try:
        if runner is not None:
            got = await _task(spec, target, runner, number_, timeout)
        else:
            got = await asyncio.wait_for(_builtin(spec, suite, target, timeout), timeout)
    except TimeoutError:
        return Attempt(False, detail=timeout_detail(timeout or 0))
    except EventflowError as exc:
        return Attempt(False, detail=str(exc))
    except (OSError, ValueError, ArithmeticError) as exc:
        return Attempt(False, detail=f"{type(exc).__name__}: {exc}")
    if not got.passed:
        return got
    try:
        ok, why = judge(got.value, spec.config.expect, previous, clock())
    except (ValueError, ArithmeticError) as exc:  # a value no bound can be compared with
        return Attempt(False, got.value, f"{type(exc).__name__}: {exc}", got.output)
    return Attempt(ok, got.value, why, got.output)


async def _task(
    spec: CheckSpec, target: Target, runner: TaskRunner, number_: int, timeout: float | None
) -> Attempt:
    """A ``command`` or ``python`` check: its task runner, in a context like a run's."""
    folder = target.folder
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{spec.name}.{target.evaluation}.{number_}"
    items = [e.to_dict() for e in target.events]
    events_file = folder / "events.json"
    events_file.write_text(json.dumps(items, indent=1, default=str))
    ctx = RunContext(
        run_id=target.run.run_id,
        rule=target.run.rule,
        attempt=number_,
        partition=dict(target.run.partition),
        inputs=target.run.inputs,
        events_file=events_file,
        stdout_path=folder / f"{stem}.stdout",
        stderr_path=folder / f"{stem}.stderr",
        timeout=timeout,
        log_max_bytes=target.log_max_bytes,
        variables=target.variables,
        events=target.events,
        pipeline=target.pipeline,
    )
    try:
        result: TaskResult = await runner.run(ctx)
    except Exception as exc:  # a check's bug fails the check, not the checker
        result = TaskResult(False, f"{type(exc).__name__}: {exc}")
    output = _excerpt(ctx.stdout_path, ctx.stderr_path)
    value: JSON = None
    if spec.task_type == "command":
        value = _last_value(ctx.stdout_path)
    elif "value" in result.output:
        value = result.output["value"]
    return Attempt(result.ok, value, "" if result.ok else result.detail, output)


async def _builtin(
    spec: CheckSpec, suite: CheckSuite, target: Target, timeout: float | None
) -> Attempt:
    config = spec.config
    if config.sql is not None:
        assert config.connection is not None
        conn = suite.connections[config.connection]
        value = await query(
            config.connection, conn, config.sql, target.variables, target.base_dir, timeout
        )
        return Attempt(True, value)
    if config.exists is not None:
        return await _exists(spec.locations or tuple(Location(p) for p in config.exists), target)
    assert spec.expression is not None
    items = [e.to_dict() for e in target.events]
    found = spec.expression.search(params_context(items, target.run.partition))
    return Attempt(True, found)


async def _exists(locations: tuple[Location, ...], target: Target) -> Attempt:
    """Every location matches at least one file or object and none is empty; the value:
    the total bytes found."""
    total = 0
    # A value from an event is matched as itself: its `*`, `?` and `[` are no wildcards,
    # and a `..` cannot lead the search out of the pattern's folder.
    for name, value in target.run.partition.items():
        if ".." in Path(value).parts:
            return Attempt(False, 0, f"the partition value {name}={value!r} names a parent folder")
    variables = {k: glob.escape(v) for k, v in target.variables.items()}
    for location in locations:
        rendered = render(location.pattern, variables)
        if location.sensors:
            found = await _objects(location, rendered, target)
        else:
            found = await asyncio.to_thread(_files, rendered, target.base_dir)
        if not found:
            return Attempt(False, 0, f"nothing matches {rendered}")
        for name, size in found:
            if size == 0:
                return Attempt(False, 0, f"{name} is empty")
            total += size
    return Attempt(True, total)


def _files(rendered: str, base_dir: Path) -> list[tuple[str, int]]:
    where = Path(rendered) if Path(rendered).is_absolute() else base_dir / rendered
    paths = sorted(glob.glob(str(where), recursive=True))
    return [(path, Path(path).stat().st_size) for path in paths]


async def _objects(location: Location, rendered: str, target: Target) -> list[tuple[str, int]]:
    """The objects matching ``rendered``, listed by the first of the location's sensors
    whose source holds them (its bucket), else by the first one (its client settings)."""
    sensors = [target.objects[n] for n in location.sensors if n in target.objects]
    if not sensors:
        raise EventflowError(
            f"no sensor to look for {rendered} with", hint="declare the location's sensor"
        )
    if location.relative:
        sensor, url = sensors[0], sensors[0].object_url(rendered)
    else:
        sensor = next((s for s in sensors if rendered.startswith(s.object_url(""))), sensors[0])
        url = rendered
    return await sensor.object_sizes(url)


def _last_value(stdout: Path) -> JSON:
    """The last line a command printed, as a number or a timestamp, else None."""
    try:
        lines = [ln.strip() for ln in stdout.read_text(errors="replace").splitlines()]
    except OSError:
        return None
    last = next((ln for ln in reversed(lines) if ln), None)
    if last is None:
        return None
    n = number(last)
    if n is not None:
        return int(n) if n == int(n) else n
    return last if timestamp(last) is not None else None


def _excerpt(*paths: Path) -> str:
    parts = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if text.strip():
            parts.append(text)
    return "".join(parts)[-OUTPUT_EXCERPT:]
