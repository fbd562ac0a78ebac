"""A pipeline file compiled into what the engine runs: plugins resolved, expressions compiled.

:func:`eventflow.config.loader.load_pipeline` builds a :class:`CompiledPipeline` after validating
everything; the engine, dispatcher and CLI read only this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from jmespath.parser import ParsedResult

from eventflow.config.models import EngineConfig, PipelineConfig, RunConfig
from eventflow.datasets import DatasetSpec
from eventflow.patterns import glob_match
from eventflow.quality.suite import CheckSuite
from eventflow.rules.core import RuleSpec
from eventflow.rules.timing import Schedule
from eventflow.versions import PipelineVersion
from eventflow.versions import compute as compute_version

DEFAULT_ENVIRONMENT = "default"
"""The environment of a pipeline run without ``--env``."""

PRODUCED_SENSOR_PREFIX = "rules."
"""Observations of produced datasets come from the pseudo-sensor ``rules.<rule>``."""
EMIT_SENSOR = "cli.emit"
"""Observations made by ``eventflow emit`` come from this pseudo-sensor."""


@dataclass(frozen=True)
class SensorSpec:
    name: str
    type: str
    plugin: Any
    config: Any
    line: int | None = None


@dataclass(frozen=True)
class PublisherSpec:
    name: str
    type: str
    plugin: Any
    config: Any
    types: tuple[str, ...] = ("eventflow.*",)


@dataclass(frozen=True)
class RuleRuntime:
    """A rule as the engine and dispatcher need it."""

    spec: RuleSpec
    run: RunConfig
    task_type: str
    task_plugin: Any
    task_config: Any
    produces: str | None = None
    filters: Mapping[str, ParsedResult] = field(default_factory=dict)
    """Per input dataset: the JMESPath filter its events must pass for this rule."""
    schedule: Schedule | None = None
    """Partitions expected on a schedule (``expect``), whose deadlines run without input."""
    schedule_start: datetime | None = None
    params: Mapping[str, ParsedResult] = field(default_factory=dict)
    """The rule's ``params``: template variables evaluated over the inputs at run start."""
    checks: CheckSuite | None = None
    """The data-quality checks its produced partitions pass before they are announced."""
    renamed_from: str | None = None
    """The rule's former name (``renamed_from:``): the runs made under it are its runs."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def max_attempts(self) -> int:
        return self.run.retries + 1


@dataclass(frozen=True)
class CompiledPipeline:
    name: str
    file: Path
    base_dir: Path
    state_dsn: str
    engine: EngineConfig
    sensors: dict[str, SensorSpec]
    datasets: dict[str, DatasetSpec]
    rules: dict[str, RuleRuntime]
    publishers: list[PublisherSpec]
    raw: PipelineConfig = field(repr=False)
    environment: str = DEFAULT_ENVIRONMENT
    """The environment this pipeline was loaded for (``--env``; :mod:`eventflow.environments`)."""
    hidden: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Values that came from environment variables, with the reference written in the file:
    the version's definition shows the reference (:mod:`eventflow.versions`)."""

    @cached_property
    def version(self) -> PipelineVersion:
        """The pipeline's version and its rules' (:mod:`eventflow.versions`)."""
        return compute_version(self)

    @cached_property
    def renamed_rules(self) -> dict[str, str]:
        """``renamed_from`` of the rules: former name -> name."""
        return {r.renamed_from: n for n, r in self.raw.rules.items() if r.renamed_from}

    def current_name(self, rule: str) -> str:
        """The name rule ``rule`` has now (runs keep the name they were made under)."""
        if rule in self.rules:
            return rule
        base, sep, alert = rule.partition(":")
        renamed = self.renamed_rules.get(base)
        return rule if renamed is None else f"{renamed}{sep}{alert}"

    @cached_property
    def datasets_by_sensor(self) -> dict[str, list[DatasetSpec]]:
        out: dict[str, list[DatasetSpec]] = {}
        for ds in self.datasets.values():
            out.setdefault(ds.sensor, []).append(ds)
        return out

    @cached_property
    def rules_by_dataset(self) -> dict[str, list[RuleRuntime]]:
        out: dict[str, list[RuleRuntime]] = {}
        for rule in self.rules.values():
            for ds in rule.spec.datasets:
                out.setdefault(ds, []).append(rule)
        return out

    @cached_property
    def _routes(self) -> dict[str, tuple[str, ...]]:
        return {}

    def publishers_for(self, event_type: str) -> tuple[str, ...]:
        """Names of the publishers whose ``types`` globs take this event type (memoised:
        a pipeline publishes a handful of types, each many times)."""
        names = self._routes.get(event_type)
        if names is None:
            names = tuple(p.name for p in self.publishers if glob_match(event_type, p.types))
            self._routes[event_type] = names
        return names

    @property
    def runs_dir(self) -> Path:
        return self.base_dir / self.engine.runs_dir
