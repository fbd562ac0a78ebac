"""The pipeline file as pydantic models: one class per section, every key documented.

Sensor, publisher and task sections are open here (their ``type`` picks a plugin whose own
model validates the rest); :mod:`eventflow.config.loader` does that second pass and the
checks that span sections (references, join variables, cycles).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from eventflow.durations import Duration

NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
"""What sensor, dataset and rule names may be made of."""
Name = Annotated[str, StringConstraints(pattern=NAME.pattern)]


class Model(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PluginConfig(Model):
    """Base of sensor and publisher configs: ``type`` names the plugin."""

    type: str


class SensorConfig(PluginConfig):
    """Base of a sensor's config; each sensor plugin subclasses it."""


class PublisherConfig(PluginConfig):
    """Base of a publisher's config; each publisher plugin subclasses it."""

    name: str | None = Field(
        default=None,
        description="Stable name of this publisher (its outbox queue); default: its type,"
        " numbered when several share a type. Keep it when reordering `publish`.",
    )
    types: tuple[str, ...] = Field(
        default=("eventflow.*",),
        description="Glob patterns of the event types this publisher receives.",
    )


class DatasetConfig(Model):
    """A named dataset: which sensor announces it and how its partition key is read."""

    sensor: str = Field(description="The sensor whose observations announce this dataset.")
    key: str | None = Field(
        default=None,
        description="Pattern matched against the observation's key (a path relative to a"
        " directory sensor's root, an object key, a topic); `{var}` placeholders become"
        " partition variables.",
    )
    partition: dict[str, str] = Field(
        default_factory=dict,
        description="Partition variables read from the observation with JMESPath"
        " expressions (over `payload`, `key`, `attributes`, `time`).",
    )
    where: str | None = Field(
        default=None, description="JMESPath filter; observations for which it is falsy are skipped."
    )


class When(Model):
    """The join condition of a rule: which datasets, on which partition variables."""

    all: tuple[str, ...] | None = Field(default=None, description="Fire when all have arrived.")
    any: tuple[str, ...] | None = Field(default=None, description="Fire when any has arrived.")
    by: tuple[str, ...] | None = Field(
        default=None,
        description="Partition variables the inputs are joined on; default: the variables"
        " every input dataset defines.",
    )
    within: Duration | None = Field(
        default=None,
        description="An `all` join still missing inputs this long after its first input"
        " expires (`eventflow.match.expired`).",
    )

    @model_validator(mode="after")
    def _one_mode(self) -> When:
        if (self.all is None) == (self.any is None):
            raise ValueError("write exactly one of `all: [...]` or `any: [...]`")
        if not self.datasets:
            raise ValueError("name at least one dataset")
        if self.any is not None and self.within is not None:
            raise ValueError(
                "`within` applies to `all` joins; an `any` rule fires on its first input"
            )
        return self

    @property
    def mode(self) -> Literal["all", "any"]:
        return "all" if self.all is not None else "any"

    @property
    def datasets(self) -> tuple[str, ...]:
        return self.all if self.all is not None else (self.any or ())


class Backoff(Model):
    """Exponential backoff with full jitter between attempts of a failed run."""

    initial: Duration = timedelta(seconds=1)
    max: Duration = timedelta(minutes=5)
    multiplier: float = Field(default=2.0, ge=1.0)
    jitter: bool = True


class RunConfig(BaseModel):
    """What a rule runs. Exactly one task type key (`command`, `python`, `http`, ...) plus
    the options every task type shares."""

    model_config = ConfigDict(extra="allow", frozen=True)

    retries: int = Field(default=0, ge=0, description="Further attempts after a failure.")
    timeout: Duration | None = Field(default=None, description="Kill the attempt after this long.")
    backoff: Backoff = Field(default_factory=Backoff)
    concurrency: int | None = Field(
        default=None, ge=1, description="Runs of this rule that may execute at once."
    )

    @property
    def task_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RuleConfig(Model):
    """A rule: when to act, what to run, what the run produces."""

    when: When = Field(description="The join condition (below).")
    run: RunConfig = Field(description="The task and its retry, timeout and concurrency.")
    produces: str | None = Field(
        default=None,
        description="Dataset announced for the run's partition when a run succeeds; feeds"
        " further rules.",
    )
    on_update: Literal["rerun", "ignore"] = Field(
        default="rerun",
        description="What an updated input of an already fired partition does: run again"
        " (a new generation) or nothing.",
    )


class EngineConfig(Model):
    """How the process runs: batch sizes, concurrency, where run logs go."""

    batch_size: int = Field(default=1000, ge=1, description="Most observations per commit.")
    queue_size: int = Field(
        default=10_000, ge=1, description="Observations buffered before sensors block."
    )
    max_runs: int = Field(default=16, ge=1, description="Runs executing at once, over all rules.")
    drain_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="On SIGTERM, how long in-flight runs may finish before they are stopped"
        " (and run again at the next start).",
    )
    runs_dir: str = Field(
        default=".eventflow/runs",
        description="Where run inputs and logs are kept, relative to the file.",
    )
    log_max_bytes: int = Field(
        default=1_048_576, ge=1024, description="Cap of each captured stdout/stderr."
    )
    poll_interval: Duration = Field(
        default=timedelta(milliseconds=500),
        description="How often the store is checked for work added by other processes"
        " (`eventflow emit`, `eventflow retry`).",
    )


class RetentionConfig(Model):
    """How long the store keeps history that correctness does not need."""

    events: Duration | None = Field(
        default=None,
        description="Keep the event log (what `replay`, `backfill` and `why` read) this long;"
        " `eventflow run` deletes older events every hour. Default: keep every event.",
    )


class PipelineConfig(Model):
    """The whole pipeline file."""

    name: str | None = Field(default=None, description="Pipeline name; default: the file's stem.")
    state: str | None = Field(
        default=None,
        description="State store DSN; default `sqlite:///.eventflow/state.db` next to the file.",
    )
    engine: EngineConfig = Field(default_factory=EngineConfig, description="Process settings.")
    sensors: dict[Name, dict[str, Any]] = Field(
        default_factory=dict,
        description="Source watchers by name; `type` picks the plugin (sections below).",
    )
    datasets: dict[Name, DatasetConfig] = Field(
        default_factory=dict, description="Named datasets and how their partition key is read."
    )
    rules: dict[Name, RuleConfig] = Field(
        default_factory=dict, description="When to run what, by name."
    )
    publish: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Where completion events go; `type` picks the publisher (sections below).",
    )
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig, description="How long history is kept."
    )
