"""Config model of the Flink sensor (`sensors.NAME: {type: flink, url: ...}`)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from pydantic import AwareDatetime, Field, field_validator, model_validator

from eventflow.plugin import Duration, Model, SensorConfig

_STRFTIME = re.compile(r"%[A-Za-z]")
DAY = timedelta(days=1)


class WatermarkPeriods(Model):
    """Announce each period of event time once the job's watermark has passed it."""

    every: Duration = Field(
        default=timedelta(hours=1),
        description="The period's length (`1h`, `15m`, `1d`): periods start at multiples of"
        " it since 1970-01-01 UTC, so they divide a day or are whole days.",
    )
    key: str = Field(
        default="dt=%Y-%m-%d/hr=%H",
        description="The period's start as strftime text (UTC): what follows"
        " `JOB/watermark/` in the observation's key, e.g. `dt=2024-01-01/hr=00`; a dataset"
        " `key: '{job}/watermark/dt={dt}/hr={hr}'` reads its partition from it.",
    )
    lateness: Duration = Field(
        default=timedelta(0),
        description="How far past a period's end the watermark must be before the period is"
        " announced (the job's allowed lateness).",
    )
    since: AwareDatetime | None = Field(
        default=None,
        description="The first period to announce of a job first seen (ISO-8601 with a"
        " zone); default: the period the job's first watermark falls in (periods that ended"
        " before the sensor saw the job are not announced).",
    )

    @model_validator(mode="after")
    def _aligned(self) -> WatermarkPeriods:
        if self.every < timedelta(seconds=1):
            raise ValueError("`every` must be at least 1s, e.g. `every: 1h`")
        if self.every < DAY and DAY % self.every:
            raise ValueError("`every` must divide a day (`15m`, `1h`, `6h`) or be whole days")
        if self.every >= DAY and self.every % DAY:
            raise ValueError("`every` must divide a day (`15m`, `1h`, `6h`) or be whole days")
        if not _STRFTIME.search(self.key):
            raise ValueError("`key` needs strftime fields, e.g. `dt=%Y-%m-%d/hr=%H`")
        return self

    @property
    def every_ms(self) -> int:
        return round(self.every.total_seconds() * 1000)

    @property
    def lateness_ms(self) -> int:
        return round(self.lateness.total_seconds() * 1000)

    @property
    def since_ms(self) -> int | None:
        return None if self.since is None else _epoch_ms(self.since)


def _epoch_ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)


class FlinkSensorConfig(SensorConfig):
    """`{type: flink, url: http://HOST:8081}`: jobs of a Flink cluster, read from its REST
    API (a session cluster's, or the REST port of a job's own cluster)."""

    url: str = Field(
        description="Base URL of the Flink REST API (the web UI's address), e.g."
        " `http://localhost:8081`."
    )
    poll_interval: Duration = Field(
        default=timedelta(seconds=5), description="How often the REST API is read."
    )
    jobs: tuple[str, ...] = Field(
        default=("*",),
        description="Glob patterns of the job names watched (`orders-*`); default: all.",
    )
    checkpoints: bool = Field(
        default=True,
        description="Announce each completed checkpoint (`JOB/checkpoint/ID`) and savepoint"
        " (`JOB/savepoint/ID`).",
    )
    watermarks: WatermarkPeriods | None = Field(
        default=None,
        description="Announce periods of event time the job's watermark has passed"
        " (`JOB/watermark/dt=.../hr=...`), e.g. `{every: 1h, lateness: 5m}`; default: none.",
    )
    request_timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="How long one REST request may take before it fails (and is retried at"
        " the next poll).",
    )
    token_env: str | None = Field(
        default=None,
        description="Environment variable holding a bearer token for a REST API behind an"
        " authenticating proxy (the token never appears in logs or events).",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{url!r} is not an http(s) URL; write the REST API's address, e.g."
                " `url: http://localhost:8081`"
            )
        if parts.username or parts.password:
            raise ValueError(
                "write no credentials in `url`; put a bearer token in an environment"
                " variable and name it in `token_env`"
            )
        if parts.query or parts.fragment:
            raise ValueError("`url` is the REST API's base address, without `?` or `#`")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _positive(self) -> FlinkSensorConfig:
        if not self.poll_interval:
            raise ValueError("`poll_interval` must be above 0s")
        if not self.request_timeout:
            raise ValueError("`request_timeout` must be above 0s")
        if not self.jobs:
            raise ValueError("`jobs` needs at least one pattern (`*`: every job)")
        return self
