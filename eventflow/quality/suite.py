"""A rule's ``checks:`` compiled: each check with its runner plugin (``command`` and
``python`` checks reuse the task runners), its compiled expression, or where each of its
``exists`` locations is looked for (a local file, or objects through a sensor's client)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jmespath
from jmespath.parser import ParsedResult

from eventflow.quality.config import CheckConfig, ConnectionConfig, OnCheckFailure
from eventflow.types import ObjectSensor

if TYPE_CHECKING:
    from eventflow.config.models import PipelineConfig
    from eventflow.config.plugins import Plugins
    from eventflow.config.report import Problems
    from eventflow.pipeline import SensorSpec


_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://")


@dataclass(frozen=True)
class Location:
    """One ``exists`` entry: a file pattern (``sensors`` empty), or objects looked for
    through the first of ``sensors`` (object sensors, the produced dataset's first) whose
    source holds them. ``relative``: a key in that sensor's source, not a URL."""

    pattern: str
    sensors: tuple[str, ...] = ()
    relative: bool = False


@dataclass(frozen=True)
class CheckSpec:
    """One check as the checker runs it."""

    config: CheckConfig
    task_type: str | None = None
    """``command`` or ``python``: the task plugin that runs it."""
    task_plugin: Any = None
    task_config: Any = None
    expression: ParsedResult | None = None
    """A ``value`` check's JMESPath."""
    locations: tuple[Location, ...] = ()
    """An ``exists`` check's entries."""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def blocking(self) -> bool:
        return self.config.severity == "error"

    @property
    def max_attempts(self) -> int:
        return self.config.retries + 1


@dataclass(frozen=True)
class CheckSuite:
    """The checks of one rule's produced partitions."""

    checks: tuple[CheckSpec, ...]
    on_failure: OnCheckFailure = "block"
    connections: Mapping[str, ConnectionConfig] = field(default_factory=dict)


def compile_checks(
    config: PipelineConfig,
    raw_rules: Mapping[str, Any],
    plugins: Plugins,
    problems: Problems,
    sensors: Mapping[str, SensorSpec] | None = None,
) -> dict[str, CheckSuite]:
    """The suite of every rule with ``checks:``; what is wrong goes to ``problems`` (a
    check without ``produces``, two checks of one name, an unknown connection, a command
    the task plugin refuses)."""
    suites: dict[str, CheckSuite] = {}
    for rule, rc in config.rules.items():
        if not rc.checks:
            continue
        base = ("rules", rule, "checks")
        if rc.produces is None:
            problems.add(
                f"rule `{rule}` has `checks` but produces nothing",
                base,
                hint="checks guard the dataset a rule `produces`: add `produces: DATASET`",
            )
            continue
        specs: list[CheckSpec] = []
        seen: set[str] = set()
        raw_checks = raw_rules.get(rule, {}).get("checks") or []
        for i, check in enumerate(rc.checks):
            path = (*base, i)
            if check.name in seen:
                problems.add(
                    f"two checks of rule `{rule}` are named `{check.name}`",
                    (*path, "name"),
                    hint="give each check its own name",
                )
            seen.add(check.name)
            spec = _compile_check(check, raw_checks[i], config, plugins, problems, path)
            if spec is not None and check.exists is not None:
                spec = _with_locations(spec, rc.produces, config, sensors or {}, problems, path)
            if spec is not None:
                specs.append(spec)
        suites[rule] = CheckSuite(tuple(specs), rc.on_check_failure, dict(config.connections))
    return suites


def _compile_check(
    check: CheckConfig,
    raw: Mapping[str, Any],
    config: PipelineConfig,
    plugins: Plugins,
    problems: Problems,
    path: tuple[str | int, ...],
) -> CheckSpec | None:
    if check.connection is not None and check.connection not in config.connections:
        known = ", ".join(f"`{n}`" for n in config.connections) or "none is defined"
        problems.add(
            f"no connection `{check.connection}`",
            (*path, "connection"),
            hint=f"name one under the top-level `connections:` ({known})",
        )
        return None
    if check.kind in ("command", "python"):
        task_raw = {k: raw[k] for k in ("command", "python", "cwd", "env") if k in raw}
        task = plugins.task(check.name, task_raw, path)
        if task is None:
            return None
        return CheckSpec(check, task.type, task.plugin, task.config)
    if check.value is not None:
        try:
            expression = jmespath.compile(check.value)
        except jmespath.exceptions.JMESPathError as exc:
            problems.add(
                f"`value` is not a JMESPath expression: {exc}",
                (*path, "value"),
                hint="e.g. `inputs[0].payload.rows`",
            )
            return None
        return CheckSpec(check, expression=expression)
    return CheckSpec(check)


def _with_locations(
    spec: CheckSpec,
    produces: str,
    config: PipelineConfig,
    sensors: Mapping[str, SensorSpec],
    problems: Problems,
    path: tuple[str | int, ...],
) -> CheckSpec | None:
    """Where each ``exists`` entry is looked for: a URL (``s3://...``) through the object
    sensors of its scheme, a key of the produced dataset's source when that is an object
    store (an S3 dataset), else a file. A URL no sensor can read is a problem."""
    objects = {n: s for n, s in sensors.items() if _is_object_sensor(s)}
    produced = config.datasets.get(produces)
    own = produced.sensor if produced is not None and produced.sensor in objects else None
    locations = []
    assert spec.config.exists is not None
    for i, entry in enumerate(spec.config.exists):
        scheme = _SCHEME.match(entry)
        if scheme is None:
            locations.append(Location(entry, (own,), relative=True) if own else Location(entry))
            continue
        kind = scheme.group(1)
        names = sorted(n for n, s in objects.items() if s.type == kind)
        if not names:
            problems.add(
                f"`exists` names {kind}:// objects but no `{kind}` sensor gives the client"
                " settings to look for them",
                (*path, "exists", i),
                hint=f"declare a sensor of type `{kind}` (its endpoint_url, region and profile"
                " are used), or name a local file",
            )
            return None
        if own in names:
            names.remove(own)
            names.insert(0, own)
        locations.append(Location(entry, tuple(names)))
    return CheckSpec(spec.config, locations=tuple(locations))


def _is_object_sensor(spec: SensorSpec) -> bool:
    return isinstance(spec.plugin, type) and issubclass(spec.plugin, ObjectSensor)
