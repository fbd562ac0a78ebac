"""Load a pipeline file into a :class:`~eventflow.pipeline.CompiledPipeline`, or report all
that is wrong.

Loading runs in stages that all report into one collector, so a file with five mistakes
gets five messages at once, in line order, each ``FILE:LINE: dotted.path: what (hint: fix)``:

1. YAML is parsed keeping the line of every key (:mod:`.yaml_lines`);
2. ``${NAME}`` / ``${NAME:-default}`` are replaced in string values (:mod:`.interpolate`);
3. the pipeline model validates the file (:mod:`.validation` places pydantic's errors);
4. plugin sections are validated by their plugin's model (:mod:`.plugins`);
5. references, join variables, templates, expressions and cycles are checked (:mod:`.checks`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from eventflow import environments
from eventflow.config.checks import RuleView, Sections, check, check_names
from eventflow.config.interpolate import interpolate_tree
from eventflow.config.models import (
    DatasetConfig,
    DeadlineAlert,
    PipelineConfig,
    RuleConfig,
    When,
)
from eventflow.config.plugins import Plugins, Task
from eventflow.config.report import ConfigPath, Problems
from eventflow.config.rules import alert_name, alert_spec, compile_rule
from eventflow.config.validation import report
from eventflow.config.yaml_lines import parse_yaml
from eventflow.durations import format_duration
from eventflow.errors import ConfigError, ConfigProblem
from eventflow.pipeline import DEFAULT_ENVIRONMENT, CompiledPipeline, RuleRuntime, SensorSpec
from eventflow.quality.suite import compile_checks
from eventflow.rules.core import RuleSpec
from eventflow.run_hooks import HOOKS, hook_name

DEFAULT_STATE = "sqlite:///.eventflow/state.db"
"""The state store when the file names none; relative to the file's directory."""


M = TypeVar("M", bound=BaseModel)


def load_pipeline(
    path: str | Path, environ: Mapping[str, str] | None = None, env: str | None = None
) -> CompiledPipeline:
    """Read, validate and compile the pipeline file at ``path``.

    ``path`` may also be ``module:attribute``, a pipeline declared in Python
    (:mod:`eventflow.api`). ``environ`` supplies ``${NAME}`` values (default:
    ``os.environ``); ``env`` selects an environment of the file (default: ``EVENTFLOW_ENV``,
    else ``default``; :mod:`eventflow.environments`). Raises
    :class:`~eventflow.errors.ConfigError` carrying every problem.
    """
    if isinstance(path, str | Path) and _python_target(str(path)):
        from eventflow.api import load_target

        return load_target(str(path))
    file = Path(path)
    problems = Problems(str(path))
    pipeline: CompiledPipeline | None = None
    text = _read(file, problems)
    if text is not None:
        raw = parse_yaml(text, problems)
        environ = os.environ if environ is None else environ
        name = env or environ.get(environments.ENV_VARIABLE) or DEFAULT_ENVIRONMENT
        laid = environments.overlay(raw, name, environ, problems) if raw is not None else None
        if laid is not None:
            raw = interpolate_tree(laid[0], laid[1], problems)
            pipeline = _compile(raw, file, problems, name)
    if problems or pipeline is None:
        raise problems.error()
    return pipeline


def compile_mapping(raw: dict[str, Any], file: Path) -> CompiledPipeline:
    """Validate and compile a pipeline given as the mapping a file parses to (the Python
    API), with the same models and checks; ``file`` is where problems are reported and the
    directory relative paths are resolved against."""
    problems = Problems(str(file))
    pipeline = _compile(raw, file, problems)
    if problems or pipeline is None:
        raise problems.error()
    return pipeline


def _python_target(text: str) -> bool:
    """``module:attribute`` names a pipeline declared in Python (``eventflow.api``)."""
    from eventflow.api import is_target

    return is_target(text)


def check_file(
    path: str | Path, environ: Mapping[str, str] | None = None, env: str | None = None
) -> list[ConfigProblem]:
    """Every problem of the pipeline file at ``path`` (empty when it loads), for ``validate``."""
    try:
        load_pipeline(path, environ, env)
    except ConfigError as exc:
        return exc.problems
    return []


def _read(file: Path, problems: Problems) -> str | None:
    try:
        return file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        problems.add("no such file", hint="check the path, or run from the pipeline's directory")
    except UnicodeDecodeError as exc:
        problems.add(f"the file is not UTF-8 text (byte {exc.start})")
    except OSError as exc:
        problems.add(f"cannot read the file: {exc.strerror or exc}")
    return None


def _check_tasks(rule: str, section: object) -> list[tuple[ConfigPath, Mapping[str, object]]]:
    """The ``command`` checks of a rule's raw section: each one's path and task fields."""
    checks = _mapping(section).get("checks")
    if not isinstance(checks, list):
        return []
    return [
        (("rules", rule, "checks", i), {k: c[k] for k in ("command", "cwd", "env") if k in c})
        for i, c in enumerate(checks)
        if isinstance(c, Mapping) and "command" in c
    ]


def _compile(
    raw: dict[str, Any], file: Path, problems: Problems, env: str = DEFAULT_ENVIRONMENT
) -> CompiledPipeline | None:
    config = _validate_pipeline(raw, problems)
    check_names(raw, problems)
    plugins = Plugins(problems)
    plugins.state(raw.get("state"))
    sensors = plugins.sensors(raw.get("sensors"))
    publishers = plugins.publishers(raw.get("publish"))
    raw_rules = _mapping(raw.get("rules"))
    tasks: dict[str, Task] = {}
    for name, section in raw_rules.items():
        task = plugins.task(name, _mapping(section).get("run"))
        if task is not None:
            tasks[name] = task
        alert = _mapping(_mapping(section).get("on_deadline")).get("run")
        if alert is not None:
            path = ("rules", name, "on_deadline", "run")
            task = plugins.task(name, alert, path)
            if task is not None:
                tasks[alert_name(name)] = task
        for kind in HOOKS:  # `on_failure:` / `on_missed:`, tasks of their own
            hook = _mapping(section).get(kind)
            if hook is not None:
                task = plugins.task(name, hook, ("rules", name, kind))
                if task is not None:
                    tasks[hook_name(name, kind)] = task
    sections = Sections(
        sensors=[str(name) for name in _mapping(raw.get("sensors"))],
        datasets={n: _quiet(DatasetConfig, v) for n, v in _mapping(raw.get("datasets")).items()},
        rules={n: _rule_view(v) for n, v in raw_rules.items()},
        tasks={n: t.fields for n, t in tasks.items()},
        task_variables={n: getattr(t.plugin, "template_variables", {}) for n, t in tasks.items()},
        check_tasks={n: _check_tasks(n, v) for n, v in raw_rules.items()},
    )
    compiled = check(sections, problems)
    suites = {}
    if config is not None:
        _check_replay_memory(config, sensors, problems)
        suites = compile_checks(config, raw_rules, plugins, problems, sensors)
    if problems or config is None:
        return None

    rules: dict[str, RuleRuntime] = {}
    for name, rc in config.rules.items():
        task, by = tasks.get(name), compiled.by.get(name)
        if task is None or by is None:  # pragma: no cover - every such case is reported
            problems.add(f"rule `{name}` could not be compiled", ("rules", name))
            return None
        compiled_rule = compile_rule(name, rc, by)
        rules[name] = RuleRuntime(
            spec=compiled_rule.spec,
            run=rc.run,
            task_type=task.type,
            task_plugin=task.plugin,
            task_config=task.config,
            produces=rc.produces,
            filters=compiled_rule.filters,
            schedule=compiled_rule.schedule,
            schedule_start=compiled_rule.schedule_start,
            params=compiled_rule.params,
            checks=suites.get(name),
            renamed_from=rc.renamed_from,
        )
        if isinstance(rc.on_deadline, DeadlineAlert) and alert_name(name) in tasks:
            alert_task = tasks[alert_name(name)]
            rules[alert_name(name)] = RuleRuntime(
                spec=alert_spec(name, by),
                run=rc.on_deadline.run,
                task_type=alert_task.type,
                task_plugin=alert_task.plugin,
                task_config=alert_task.config,
            )
        for kind in HOOKS:
            hook_run = getattr(rc, kind)
            if hook_run is not None and hook_name(name, kind) in tasks:
                hook_task = tasks[hook_name(name, kind)]
                rules[hook_name(name, kind)] = RuleRuntime(
                    spec=RuleSpec(hook_name(name, kind), "any", (), by),
                    run=hook_run,
                    task_type=hook_task.type,
                    task_plugin=hook_task.plugin,
                    task_config=hook_task.config,
                )
    absolute = file.resolve()
    return CompiledPipeline(
        name=config.name or file.stem,
        file=absolute,
        base_dir=absolute.parent,
        state_dsn=config.state or DEFAULT_STATE,
        engine=config.engine,
        sensors=sensors,
        datasets=compiled.datasets,
        rules=rules,
        publishers=publishers,
        raw=config,
        environment=env,
        hidden=problems.hidden(),
    )


def _check_replay_memory(
    config: PipelineConfig, sensors: Mapping[str, SensorSpec], problems: Problems
) -> None:
    """A sensor that accepts a signed request for ``replay_window`` (webhooks) dedupes a
    replay by the event log: the log must keep ids longer than that."""
    keep = config.retention.events
    for spec in sensors.values():
        window = getattr(spec.config, "replay_window", None)
        if keep is not None and isinstance(window, timedelta) and keep <= window:
            problems.add(
                f"`retention.events` keeps events {format_duration(keep)}, not longer than"
                f" sensor `{spec.name}` accepts a signed request"
                f" ({format_duration(window)}): a replay would fire again",
                ("retention", "events"),
                hint="keep events longer, or give the sensor a shorter `tolerance`",
            )


def _validate_pipeline(raw: dict[str, Any], problems: Problems) -> PipelineConfig | None:
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        report(exc.errors(include_url=False), PipelineConfig, raw, problems, ())
        return None


def _quiet(model: type[M], data: Any) -> M | None:
    """``model`` validated from ``data``, or None: its errors are reported by the full pass."""
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _rule_view(raw: Any) -> RuleView:
    """What the cross-section checks can use of a rule, even one with errors elsewhere."""
    rule = _quiet(RuleConfig, raw)
    if rule is not None:
        return RuleView(rule.when, rule.produces, rule, dict(rule.params))
    section = _mapping(raw)
    produces = section.get("produces")
    params = {k: v for k, v in _mapping(section.get("params")).items() if isinstance(v, str)}
    return RuleView(
        _salvage_when(section.get("when")),
        produces if isinstance(produces, str) else None,
        params=params,
    )


def _salvage_when(raw: Any) -> When | None:
    """``when`` validated without the keys that have errors (say a bad ``within``), so
    its references can still be checked; None when that does not validate either."""
    try:
        return When.model_validate(raw)
    except ValidationError as exc:
        if not isinstance(raw, Mapping):
            return None
        bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
        if not bad:
            return None
        return _quiet(When, {k: v for k, v in raw.items() if k not in bad})


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
