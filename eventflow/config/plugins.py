"""The second pass over plugin sections: ``sensors``, ``publish`` and each rule's ``run``.

The pipeline model leaves these open; here the ``type`` (or, in ``run``, the task key)
picks a plugin from :mod:`eventflow.registry` and the plugin's ``config_model`` validates
the rest, with errors placed under the section's path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from eventflow import registry
from eventflow.config.models import PublisherConfig, RunConfig
from eventflow.config.report import ConfigPath, Problems, closest, did_you_mean
from eventflow.config.validation import validate
from eventflow.errors import EventflowError
from eventflow.pipeline import PublisherSpec, SensorSpec
from eventflow.store import store_class

SHARED_RUN_OPTIONS = tuple(RunConfig.model_fields)
"""Keys of ``run`` every task type accepts (``retries``, ``timeout``, ...)."""


@dataclass(frozen=True)
class Task:
    """The task a rule runs, resolved: its type key, plugin class and validated config."""

    type: str
    plugin: Any
    config: Any
    fields: dict[str, Any]
    """The keys of ``run`` the task's model validated, as written (templates unrendered)."""


class Plugins:
    """Resolves and validates plugin sections, reporting into ``problems``.

    Registry names are read once per file (each read scans the installed entry points).
    """

    def __init__(self, problems: Problems) -> None:
        self.problems = problems

    @cached_property
    def sensor_types(self) -> list[str]:
        return registry.sensors.names()

    @cached_property
    def publisher_types(self) -> list[str]:
        return registry.publishers.names()

    @cached_property
    def task_types(self) -> list[str]:
        return registry.tasks.names()

    def sensors(self, raw: Any) -> dict[str, SensorSpec]:
        """Every valid sensor of the ``sensors`` section by name."""
        out: dict[str, SensorSpec] = {}
        if not isinstance(raw, Mapping):
            return out
        for name, section in raw.items():
            path: ConfigPath = ("sensors", name)
            found = self._plugin(registry.sensors, self.sensor_types, section, path)
            if found is not None:
                type_, plugin, config = found
                out[name] = SensorSpec(name, type_, plugin, config, self.problems.lines.get(path))
        return out

    def publishers(self, raw: Any) -> list[PublisherSpec]:
        """Every valid publisher of the ``publish`` list, named (see :func:`publisher_names`)."""
        if not isinstance(raw, list):
            return []
        found = [
            self._plugin(registry.publishers, self.publisher_types, section, ("publish", i))
            for i, section in enumerate(raw)
        ]
        named = publisher_names(raw)
        seen: dict[str, int] = {}
        out: list[PublisherSpec] = []
        for i, (name, item) in enumerate(zip(named, found, strict=True)):
            if name is None:
                continue
            if name in seen:
                self.problems.add(
                    f"two publishers are named `{name}` (the other is publish.{seen[name]})",
                    ("publish", i, "name") if _has(raw[i], "name") else ("publish", i),
                    hint="give each publisher a distinct `name:`; it names its outbox queue",
                )
                continue
            seen[name] = i
            if item is not None:
                type_, plugin, config = item
                types = tuple(
                    getattr(config, "types", PublisherConfig.model_fields["types"].default)
                )
                out.append(PublisherSpec(name, type_, plugin, config, types=types))
        return out

    def state(self, raw: Any) -> None:
        """Report a ``state`` DSN whose store cannot be loaded (an unknown scheme, or a store
        whose extra is not installed: ``postgresql://`` without psycopg) or that its store
        cannot read (a bad option). Reading it opens nothing and resolves no path."""
        if not isinstance(raw, str):
            return  # absent (the default SQLite store) or reported by the pipeline model
        try:
            store_class(raw).from_dsn(raw, Path())
        except EventflowError as exc:
            self.problems.add(exc.message, ("state",), hint=exc.hint)

    def task(self, rule: str, raw: Any, path: ConfigPath | None = None) -> Task | None:
        """The task of ``rules.<rule>.run``: exactly one registered task key besides the
        shared options. The task plugin's model validates the keys that are not shared
        options: ``{type: value}`` and the task's own options (``command``'s ``cwd``)."""
        if not isinstance(raw, Mapping):
            return None
        path = path or ("rules", rule, "run")
        known = ", ".join(self.task_types) or "none installed"
        keys = [k for k in raw if k not in SHARED_RUN_OPTIONS]
        tasks = [k for k in keys if k in self.task_types]
        if len(tasks) > 1:
            self.problems.add(
                f"`run` names {len(tasks)} task types ({', '.join(f'`{t}`' for t in tasks)})",
                (*path, tasks[1]),
                hint=f"a rule runs one task: keep one of them (task types: {known})",
            )
            return None
        if not tasks:
            meant = [self._unknown_run_key(path, k, self.task_types) for k in keys]
            if not any(m in self.task_types for m in meant):
                self.problems.add(
                    "`run` names no task type",
                    path,
                    hint=f"add one of: {known}, e.g. `command: [echo, '{{run_id}}']`",
                )
            return None
        type_ = tasks[0]
        plugin = self._get(registry.tasks, type_, (*path, type_))
        model = self._model(plugin, type_, (*path, type_))
        if model is None:
            return None
        fields = {type_: raw[type_]}
        for key in keys:
            if key == type_:
                continue
            if key in model.model_fields or model.model_config.get("extra") != "forbid":
                fields[key] = raw[key]
            else:
                self._unknown_run_key(path, key, [type_, *model.model_fields])
        config = validate(model, fields, self.problems, path)
        return Task(type_, plugin, config, fields) if config is not None else None

    def _unknown_run_key(self, path: ConfigPath, key: str, choices: list[str]) -> str | None:
        """Report a key of ``run`` that is neither a shared option nor the task's; returns
        the key it probably meant."""
        options = [*SHARED_RUN_OPTIONS, *choices]
        self.problems.add(
            f"unknown key `{key}` in `run`", (*path, key), hint=did_you_mean(str(key), options)
        )
        return closest(str(key), options)

    def _plugin(
        self, reg: registry.Registry[Any], known: list[str], raw: Any, path: ConfigPath
    ) -> tuple[str, Any, Any] | None:
        """``(type, plugin, config)`` of one sensor or publisher section, or None (reported)."""
        if not isinstance(raw, Mapping):
            return None  # the pipeline model reported it
        kind = reg.kind
        type_ = raw.get("type")
        if type_ is None:
            self.problems.add(
                f"missing `type`: which {kind} plugin this is",
                path,
                hint=f"add `type:` with one of: {', '.join(known) or f'no {kind}s are installed'}",
            )
            return None
        if not isinstance(type_, str) or type_ not in known:
            self.problems.add(
                f"unknown {kind} type `{type_}`",
                (*path, "type"),
                hint=did_you_mean(str(type_), known, f"{kind} types"),
            )
            return None
        plugin = self._get(reg, type_, (*path, "type"))
        model = self._model(plugin, type_, path)
        if model is None:
            return None
        config = validate(model, dict(raw), self.problems, path)
        return (type_, plugin, config) if config is not None else None

    def _get(self, reg: registry.Registry[Any], name: str, path: ConfigPath) -> Any:
        """The plugin ``name``, or None when it cannot be loaded: the registry's explanation
        (the extra to install, the file that shadows a package) is reported at ``path``."""
        try:
            return reg.get(name)
        except EventflowError as exc:
            self.problems.add(exc.message, path, hint=exc.hint)
            return None

    def _model(self, plugin: Any, type_: str, path: ConfigPath) -> type[BaseModel] | None:
        if plugin is None:
            return None
        model = getattr(plugin, "config_model", None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            self.problems.add(
                f"the plugin `{type_}` ({plugin!r}) has no pydantic `config_model`",
                path,
                hint="this is a bug in the plugin: report it to its authors",
            )
            return None
        return model


def publisher_names(raw: list[Any]) -> list[str | None]:
    """Each publisher's name: its ``name``, else its type, numbered (``file``, ``file-2``)
    when several unnamed publishers share a type; None where there is neither."""
    counts: Counter[str] = Counter()
    out: list[str | None] = []
    for section in raw:
        if not isinstance(section, Mapping):
            out.append(None)
        elif isinstance(section.get("name"), str):
            out.append(section["name"])
        elif isinstance(section.get("type"), str):
            type_ = section["type"]
            counts[type_] += 1
            out.append(type_ if counts[type_] == 1 else f"{type_}-{counts[type_]}")
        else:
            out.append(None)
    return out


def _has(section: Any, key: str) -> bool:
    return isinstance(section, Mapping) and key in section
