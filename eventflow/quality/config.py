"""The ``checks:`` of a rule and the top-level ``connections:`` its SQL checks query."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from eventflow.durations import Duration

CheckName = Annotated[str, StringConstraints(pattern=re.compile(r"^[A-Za-z0-9_.-]+$").pattern)]

KINDS = ("command", "python", "sql", "exists", "value")
"""The keys that say what a check runs; a check has exactly one."""


class Model(BaseModel):
    """Base of these sections (imported by :mod:`eventflow.config.models`, so not based on
    its ``Model``): unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckBackoff(Model):
    """Exponential backoff with jitter between attempts of a failed check."""

    initial: Duration = timedelta(seconds=1)
    max: Duration = timedelta(minutes=1)
    multiplier: float = Field(default=2.0, ge=1.0)
    jitter: bool = True


class ConnectionConfig(Model):
    """A database that SQL checks query: `{type: duckdb, dsn: FILE}` (`:memory:` for files
    read by the query itself) or `{type: postgresql, dsn: postgresql://...}`. Write secrets
    as `${ENV}`; the DSN is never logged or shown."""

    type: Literal["duckdb", "postgresql"] = Field(description="The database.")
    dsn: str = Field(
        default=":memory:",
        description="DuckDB: a database file relative to the pipeline file, or `:memory:`;"
        " PostgreSQL: a libpq connection string or URL.",
    )


class Expect(Model):
    """What a check's result value must be. Without `expect` a `sql` or `value` check
    passes when its value is true or a non-zero number."""

    min: float | None = Field(default=None, description="The value is at least this.")
    max: float | None = Field(default=None, description="The value is at most this.")
    change: float | None = Field(
        default=None,
        gt=0,
        description="The value is within this many percent of the same check's value for"
        " the previous partition of the rule (skipped for the first partition).",
    )
    max_age: Duration | None = Field(
        default=None,
        description="The value is a timestamp (ISO 8601, or seconds since the epoch) no older"
        " than this when the check runs: freshness.",
    )


class CheckConfig(Model):
    """One data-quality check of the partition a rule produces. Exactly one of `command`,
    `python`, `sql`, `exists`, `value`; every check gets the partition's variables,
    `{run_id}` and the inputs' payloads (`EVENTFLOW_EVENTS`)."""

    name: CheckName = Field(description="The check's name, unique within the rule.")
    severity: Literal["error", "warn"] = Field(
        default="error",
        description="`error`: a failure blocks the partition; `warn`: it publishes"
        " `eventflow.check.failed` and the partition is announced all the same.",
    )
    command: tuple[str, ...] | None = Field(
        default=None,
        description="A program, as a rule's `run.command`: exit 0 passes. The last line it"
        " prints, when a number or a timestamp, is the value `expect` checks.",
    )
    python: str | None = Field(
        default=None,
        description="`module:function` called with the run's context, as a rule's"
        " `run.python`: False or an exception fails; the `value` of a dict it returns is"
        " the value `expect` checks.",
    )
    sql: str | None = Field(
        default=None,
        description="A query on `connection`; the first column of its first row is the"
        " value. `{var}` (a partition variable, `run_id`, `rule`, `pipeline_dir`) is passed"
        " as a bound parameter, never spliced into the text.",
    )
    connection: str | None = Field(
        default=None, description="The `connections:` entry a `sql` check queries."
    )
    exists: tuple[str, ...] | None = Field(
        default=None,
        description="Files (glob patterns with `{var}`, relative to the pipeline file) that"
        " must exist and not be empty; the value is the number of bytes found. An"
        " `s3://BUCKET/KEY` entry (glob characters in the key) names S3 objects, listed"
        " with an S3 sensor's client settings (the produced dataset's sensor first); when"
        " the produced dataset is an S3 dataset, an entry without `s3://` is a key in its"
        " sensor's bucket.",
    )
    value: str | None = Field(
        default=None,
        description="JMESPath over `inputs` (the `EVENTFLOW_EVENTS` items) and `partition`:"
        " a value from the inputs' payloads, checked by `expect`.",
    )
    expect: Expect | None = Field(default=None, description="What the value must be.")
    cwd: str | None = Field(default=None, description="A `command` check's working directory.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment variables of a `command` check."
    )
    retries: int = Field(default=0, ge=0, description="Further attempts after a failure.")
    timeout: Duration | None = Field(default=None, description="Stop an attempt after this long.")
    backoff: CheckBackoff = Field(
        default_factory=CheckBackoff, description="The wait between attempts."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> CheckConfig:
        kinds = [k for k in KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            named = ", ".join(f"`{k}`" for k in kinds) or "none"
            raise ValueError(
                f"a check runs exactly one of `command`, `python`, `sql`, `exists`, `value`"
                f" (this one names {named})"
            )
        if self.sql is not None and self.connection is None:
            raise ValueError("a `sql` check needs `connection:` (a name under `connections:`)")
        if self.sql is None and self.connection is not None:
            raise ValueError("`connection` is only for a `sql` check")
        if self.command is None and (self.cwd is not None or self.env):
            raise ValueError("`cwd` and `env` are only for a `command` check")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)


OnCheckFailure = Literal["block", "fail"]
"""What a failed blocking check does to the run: leave it ``succeeded`` with the partition
``blocked``, or also mark the run ``failed``."""
