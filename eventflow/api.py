"""The Python API: the same pipeline as the YAML file, declared in code.

.. code-block:: python

    from eventflow import Pipeline, RunContext

    pipeline = Pipeline("lake")
    landing = pipeline.sensor("landing", type="directory", path="./landing")
    orders = pipeline.dataset("orders", sensor=landing, key="orders/dt={dt}/_SUCCESS")
    fx = pipeline.dataset("fx", sensor=landing, key="fx/dt={dt}/rates.csv")

    @pipeline.rule(all=[orders, fx], by=["dt"], within="2h", retries=3, produces="report")
    def daily_report(ctx: RunContext) -> None:
        build_report(ctx.partition["dt"])

``eventflow run lake:pipeline`` (``MODULE:ATTRIBUTE``, importable from the current
directory) runs it, and every other command takes it where it takes a file. A decorated
function becomes the rule's task: a ``python`` task that calls it with the
:class:`~eventflow.types.RunContext` (its name is the rule's unless ``name=`` says
otherwise); it stays an ordinary function you can call in tests. A rule can run any other
task type with ``run={"command": [...]}`` instead.

Nothing is checked twice or differently: the declarations become the mapping a YAML file
would parse to, which goes through the same pydantic models and cross-section checks
(:func:`eventflow.config.loader.compile_mapping`). Definitions can also be made apart from a
pipeline (``dataset(...)``, ``@rule(...)``, ``sensor(...)``) and collected by
``Pipeline(..., sensors=[...], datasets=[...], rules=[...])``, the way Dagster's
``Definitions`` collects assets.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, overload

from eventflow.config.loader import compile_mapping
from eventflow.config.report import Problems
from eventflow.durations import format_duration
from eventflow.pipeline import CompiledPipeline
from eventflow.types import RunContext

TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][\w.]*$")
"""``package.module:attribute``: where ``eventflow run`` finds a Python pipeline."""

F = TypeVar("F", bound=Callable[..., Any])
Duration = str | int | float | timedelta


@dataclass(frozen=True)
class Sensor:
    """A sensor declaration: ``type`` picks the plugin, ``options`` are its settings."""

    name: str
    type: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **_plain(self.options)}


@dataclass(frozen=True)
class Dataset:
    """A dataset declaration (see the ``datasets:`` section of the file)."""

    name: str
    sensor: str
    key: str | None = None
    partition: Mapping[str, str] | None = None
    where: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sensor": self.sensor}
        if self.key is not None:
            out["key"] = self.key
        if self.partition:
            out["partition"] = dict(self.partition)
        if self.where is not None:
            out["where"] = self.where
        return out


@dataclass(frozen=True)
class Rule:
    """A rule declaration. As made by ``@rule``, it is also the task function: calling it
    calls the function."""

    name: str
    when: Mapping[str, Any]
    run: Mapping[str, Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    """Rule keys beside ``when`` and ``run``: ``produces``, ``on_update``, ``expect_by``..."""
    function: Callable[..., Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.function is None:
            raise TypeError(f"rule {self.name!r} runs {_task_type(self.run)}, not a function")
        return self.function(*args, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {"when": _plain(self.when), "run": _plain(self.run), **_plain(self.options)}


@dataclass(frozen=True)
class Publisher:
    """Where completion events go: ``type`` picks the publisher plugin."""

    type: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **_plain(self.options)}


Definition = Sensor | Dataset | Rule | Publisher


# --- declaring ----------------------------------------------------------------------------


def sensor(name: str, *, type: str, **options: Any) -> Sensor:
    """A sensor: ``sensor("landing", type="directory", path="./landing")``."""
    return Sensor(name, type, options)


def dataset(
    name: str,
    *,
    sensor: Sensor | str,
    key: str | None = None,
    partition: Mapping[str, str] | None = None,
    where: str | None = None,
) -> Dataset:
    """A dataset announced by ``sensor``, its partition read from ``key`` and/or ``partition``."""
    return Dataset(name, _name(sensor), key, partition, where)


def publisher(type: str, **options: Any) -> Publisher:
    """A completion-event publisher: ``publisher("file", path="out/events.jsonl")``."""
    return Publisher(type, options)


@overload
def rule(name: str, *, run: Mapping[str, Any], **kwargs: Any) -> Rule: ...


@overload
def rule(name: str | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], Rule]: ...


def rule(
    name: str | None = None,
    *,
    all: Sequence[Dataset | str] | None = None,
    any: Sequence[Dataset | str] | None = None,
    by: Sequence[str] | None = None,
    within: Duration | None = None,
    when: Mapping[str, Any] | None = None,
    run: Mapping[str, Any] | None = None,
    retries: int | None = None,
    timeout: Duration | None = None,
    backoff: Mapping[str, Any] | None = None,
    concurrency: int | None = None,
    produces: Dataset | str | None = None,
    **options: Any,
) -> Rule | Callable[[Callable[..., Any]], Rule]:
    """A rule. As a decorator, the function is its task; with ``run={...}``, a rule that
    runs another task type. ``all``/``any``/``by``/``within`` are ``when``'s keys (pass
    ``when={...}`` for keys that have no argument here); ``retries``, ``timeout``,
    ``backoff`` and ``concurrency`` go to ``run``; other keyword arguments (``on_update``,
    ``expect_by``, ...) are keys of the rule, as in the file."""
    condition: dict[str, Any] = dict(when or {})
    for key, value in (("all", all), ("any", any)):
        if value is not None:
            condition[key] = [_name(d) for d in value]
    if by is not None:
        condition["by"] = list(by)
    if within is not None:
        condition["within"] = within
    shared = {
        k: v
        for k, v in (
            ("retries", retries),
            ("timeout", timeout),
            ("backoff", backoff),
            ("concurrency", concurrency),
        )
        if v is not None
    }
    extra = dict(options)
    if produces is not None:
        extra["produces"] = _name(produces)
    if run is not None:
        if name is None:
            raise TypeError("a rule that is not a decorator needs a name: rule('name', run=...)")
        return Rule(name, condition, {**run, **shared}, extra)

    def decorate(function: Callable[..., Any]) -> Rule:
        task = {"python": _target(function), **shared}
        return Rule(name or function.__name__, condition, task, extra, function)

    return decorate


# --- the pipeline -------------------------------------------------------------------------


class Pipeline:
    """A pipeline declared in Python; :meth:`compile` checks it like a file."""

    def __init__(
        self,
        name: str,
        *,
        state: str | None = None,
        engine: Mapping[str, Any] | None = None,
        retention: Mapping[str, Any] | None = None,
        sensors: Iterable[Sensor] = (),
        datasets: Iterable[Dataset] = (),
        rules: Iterable[Rule] = (),
        publish: Iterable[Publisher] = (),
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """``settings`` are further top-level keys of the file, as they are written there."""
        self.name = name
        self.settings: dict[str, Any] = dict(settings or {})
        for key, value in (("state", state), ("engine", engine), ("retention", retention)):
            if value is not None:
                self.settings[key] = value
        self.sensors: dict[str, Sensor] = {}
        self.datasets: dict[str, Dataset] = {}
        self.rules: dict[str, Rule] = {}
        self.publishers: list[Publisher] = []
        self._duplicates: list[str] = []
        self.add(*sensors, *datasets, *rules, *publish)
        self._defined_in = _caller_file()

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, {len(self.rules)} rules)"

    def add(self, *definitions: Definition) -> None:
        """Add sensors, datasets, rules and publishers made apart from the pipeline."""
        for d in definitions:
            if isinstance(d, Publisher):
                self.publishers.append(d)
                continue
            table: dict[str, Any] = (
                self.sensors
                if isinstance(d, Sensor)
                else self.datasets
                if isinstance(d, Dataset)
                else self.rules
            )
            if d.name in table:
                self._duplicates.append(f"{type(d).__name__.lower()} {d.name!r}")
            table[d.name] = d

    def sensor(self, name: str, *, type: str, **options: Any) -> Sensor:
        made = sensor(name, type=type, **options)
        self.add(made)
        return made

    def dataset(self, name: str, **kwargs: Any) -> Dataset:
        """:func:`dataset`, added to this pipeline."""
        made = dataset(name, **kwargs)
        self.add(made)
        return made

    def publish(self, type: str, **options: Any) -> Publisher:
        made = publisher(type, **options)
        self.add(made)
        return made

    def rule(self, name: str | None = None, **kwargs: Any) -> Any:
        """:func:`rule`, added to this pipeline: ``@pipeline.rule(all=[...])``."""
        made = rule(name, **kwargs)
        if isinstance(made, Rule):
            self.add(made)
            return made

        def decorate(function: Callable[..., Any]) -> Rule:
            declared = made(function)
            self.add(declared)
            return declared

        return decorate

    def to_dict(self) -> dict[str, Any]:
        """The mapping the equivalent YAML file parses to."""
        return {
            "name": self.name,
            **_plain(self.settings),
            "sensors": {n: s.to_dict() for n, s in self.sensors.items()},
            "datasets": {n: d.to_dict() for n, d in self.datasets.items()},
            "rules": {n: r.to_dict() for n, r in self.rules.items()},
            "publish": [p.to_dict() for p in self.publishers],
        }

    def compile(self, file: str | Path | None = None) -> CompiledPipeline:
        """Validate and compile, as ``load_pipeline`` does a file. ``file`` (default: the
        module that made the pipeline) names where problems are and is the directory that
        relative paths and the default state store are resolved against."""
        where = Path(file) if file is not None else self._defined_in
        if self._duplicates:
            problems = Problems(str(where))
            for what in self._duplicates:
                problems.add(f"{what} is declared twice", hint="give each a name of its own")
            raise problems.error()
        return compile_mapping(self.to_dict(), where)


# --- loading ``MODULE:ATTRIBUTE`` ---------------------------------------------------------


def is_target(text: str) -> bool:
    """Whether ``text`` names a Python pipeline (``module:attribute``) rather than a file."""
    return bool(TARGET.match(text)) and not Path(text).exists()


def load_target(target: str) -> CompiledPipeline:
    """Import ``module:attribute`` (the current directory first on ``sys.path``) and compile
    the :class:`Pipeline` it names; every failure is a ConfigError naming the target."""
    module_name, _, attribute = target.partition(":")
    problems = Problems(target)
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        at = f" ({last[0].filename}:{last[0].lineno})" if last else ""
        problems.add(
            f"cannot import {module_name}: {type(exc).__name__}: {exc}{at}",
            hint="run from the directory that holds the module, or install it",
        )
        raise problems.error() from exc
    for part in attribute.split("."):
        if not hasattr(obj, part):
            problems.add(f"{module_name} has no attribute {attribute!r}")
            raise problems.error()
        obj = getattr(obj, part)
    if not isinstance(obj, Pipeline):
        problems.add(
            f"{target} is a {type(obj).__name__}, not an eventflow Pipeline",
            hint="point at the object made by eventflow.Pipeline(...)",
        )
        raise problems.error()
    return obj.compile()


# --- helpers ------------------------------------------------------------------------------


def _name(item: Sensor | Dataset | str) -> str:
    return item if isinstance(item, str) else item.name


def _task_type(run: Mapping[str, Any]) -> str:
    shared = {"retries", "timeout", "backoff", "concurrency"}
    return next((k for k in run if k not in shared), "a task")


def _target(function: Callable[..., Any]) -> str:
    """``module:qualname`` of a task function, checked to be importable by that name."""
    qualname = function.__qualname__
    module = function.__module__
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise TypeError(
            f"{qualname} cannot be a task: define it at the top level of a module, so the"
            " python task can import it"
        )
    if module == "__main__":
        raise TypeError(
            f"{qualname} is defined in the __main__ script: put the pipeline in a module and"
            " run it with `eventflow run module:pipeline`"
        )
    return f"{module}:{qualname}"


def _plain(value: Any) -> Any:
    """Mappings as dicts, tuples as lists, durations as text: what YAML would have given."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, timedelta):
        return format_duration(value)
    return value


def _caller_file() -> Path:
    """The file of the code that made the pipeline (the caller of ``Pipeline()``)."""
    frame = inspect.currentframe()
    here = Path(__file__).resolve()
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith("<") and Path(filename).resolve() != here:
            return Path(filename)
        frame = frame.f_back
    return Path.cwd() / "pipeline.py"


__all__ = [
    "Dataset",
    "Pipeline",
    "Publisher",
    "Rule",
    "RunContext",
    "Sensor",
    "dataset",
    "is_target",
    "load_target",
    "publisher",
    "rule",
    "sensor",
]
