"""A rule's ``checks:`` compiled: each check with its runner plugin (``command`` and
``python`` checks reuse the task runners) or its compiled expression."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jmespath
from jmespath.parser import ParsedResult

from eventflow.quality.config import CheckConfig, ConnectionConfig, OnCheckFailure

if TYPE_CHECKING:
    from eventflow.config.models import PipelineConfig
    from eventflow.config.plugins import Plugins
    from eventflow.config.report import Problems


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
    config: PipelineConfig, raw_rules: Mapping[str, Any], plugins: Plugins, problems: Problems
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
