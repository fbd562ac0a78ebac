"""The pipeline file as pydantic models: one class per section, every key documented.

Sensor, publisher and task sections are open here (their ``type`` picks a plugin whose own
model validates the rest); :mod:`eventflow.config.loader` does that second pass and the
checks that span sections (references, join variables, cycles).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from eventflow.durations import Duration
from eventflow.quality.config import CheckConfig, ConnectionConfig, OnCheckFailure

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
    renamed_from: Name | None = Field(
        default=None,
        description="The dataset's former name: `eventflow plan` and `run` take the rename"
        " for what it is, not a dataset removed and another added (see changing pipelines).",
    )


class DatasetRef(Model):
    """One input of a condition with options: how many of its partitions, which events."""

    dataset: str = Field(description="The dataset.")
    count: int = Field(
        default=1,
        ge=1,
        description="Distinct partitions of it needed per rule partition: an hourly dataset"
        " in a daily rule (`by: [dt]`) needs `count: 24`.",
    )
    where: str | None = Field(
        default=None,
        description="JMESPath filter on the event (`payload`, `key`, `attributes`, `time`);"
        " events for which it is falsy do not count for this rule.",
    )
    vars: dict[str, str] = Field(
        default_factory=dict,
        description="The rule's partition variables from this dataset's, for datasets keyed"
        " differently: `{dt: '{date}'}` (a rename) or `{dt: '{year}-{month}-{day}'}`.",
    )


class AllOf(Model):
    all: tuple[Condition, ...] = Field(description="Holds when every item holds.")


class AnyOf(Model):
    any: tuple[Condition, ...] = Field(description="Holds when one item holds.")


class AtLeast(Model):
    at_least: int = Field(ge=1, description="Holds when this many items of `of` hold.")
    of: tuple[Condition, ...]


Condition = str | DatasetRef | AllOf | AnyOf | AtLeast
"""A dataset name, a dataset with options, or a nested `all`/`any`/`at_least`."""


class When(Model):
    """The join condition of a rule: which datasets, on which partition variables."""

    all: tuple[Condition, ...] | None = Field(
        default=None, description="Fire when all have arrived."
    )
    any: tuple[Condition, ...] | None = Field(
        default=None, description="Fire when any has arrived."
    )
    at_least: int | None = Field(
        default=None, ge=1, description="Fire when this many items of `of` have arrived."
    )
    of: tuple[Condition, ...] | None = Field(default=None, description="The items of `at_least`.")
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
        given = [k for k in ("all", "any", "at_least") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("write exactly one of `all: [...]`, `any: [...]` or `at_least: N`")
        if (self.at_least is None) != (self.of is None):
            raise ValueError("`at_least: N` goes with `of: [...]`, the items it counts")
        if not self.items:
            raise ValueError("name at least one dataset")
        if self.any is not None and self.within is not None:
            raise ValueError(
                "`within` applies to `all` joins; an `any` rule fires on its first input"
            )
        return self

    @property
    def mode(self) -> Literal["all", "any", "at_least"]:
        if self.all is not None:
            return "all"
        return "any" if self.any is not None else "at_least"

    @property
    def items(self) -> tuple[Condition, ...]:
        """The top-level items of the condition."""
        return self.all if self.all is not None else (self.any or self.of or ())

    @property
    def datasets(self) -> tuple[str, ...]:
        """Every dataset the condition names, nested ones included, in order."""
        return tuple(name for _, name in self.leaves())

    def leaves(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Each dataset named in the condition with its path below `when`."""
        key = "of" if self.mode == "at_least" else self.mode
        out: list[tuple[tuple[str | int, ...], str]] = []
        _leaves(self.items, (key,), out)
        return out

    @property
    def simple(self) -> bool:
        """Plain names under `all` or `any`: the rules core's fast path, no tree."""
        return self.mode != "at_least" and all(isinstance(i, str) for i in self.items)


def _leaves(
    items: tuple[Condition, ...],
    path: tuple[str | int, ...],
    out: list[tuple[tuple[str | int, ...], str]],
) -> None:
    for i, item in enumerate(items):
        here = (*path, i)
        if isinstance(item, str):
            out.append((here, item))
        elif isinstance(item, DatasetRef):
            out.append(((*here, "dataset"), item.dataset))
        elif isinstance(item, AllOf):
            _leaves(item.all, (*here, "all"), out)
        elif isinstance(item, AnyOf):
            _leaves(item.any, (*here, "any"), out)
        else:
            _leaves(item.of, (*here, "of"), out)


class Expect(Model):
    """A schedule of expected partitions: one per period, known before any input arrives,
    so that its deadline (`expect_by`) runs even when nothing comes."""

    every: Duration = Field(description="Period length: `1d` expects a partition per day.")
    partition: dict[str, str] = Field(
        description="The partition of each period: strftime formats of its start, one per"
        " variable of the rule's `by` (`{dt: '%Y-%m-%d'}`).",
    )
    start: str | None = Field(
        default=None,
        description="First period (a date or date-time in the rule's timezone); default:"
        " the period running when the rule is first started. Periods begin at multiples"
        " of `every` from 1970-01-01 00:00 local time.",
    )


class BatchConfig(Model):
    """Collect inputs and fire one run per batch, whichever limit is reached first."""

    max_events: int | None = Field(default=None, ge=1, description="Fire at this many inputs.")
    max_wait: Duration | None = Field(
        default=None, description="Fire this long after a batch's first input."
    )
    by: tuple[str, ...] = Field(
        default=(), description="Partition variables that keep separate batches; default: one."
    )

    @model_validator(mode="after")
    def _a_limit(self) -> BatchConfig:
        if self.max_events is None and self.max_wait is None:
            raise ValueError("give `max_events`, `max_wait` or both")
        return self


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


class DeadlineAlert(Model):
    """`on_deadline: {run: TASK}`: run an alert task for each missed partition."""

    run: RunConfig = Field(
        description="The alert task (say an `http` call to Slack or PagerDuty), with the"
        " partition's variables, `{run_id}` and `{rule}`; `EVENTFLOW_EVENTS` lists what arrived.",
    )
    run_partial: bool = Field(
        default=False, description="Also fire the degraded run (as `on_deadline: run_partial`)."
    )


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
    where: str | None = Field(
        default=None,
        description="JMESPath filter on each input event (`payload`, `key`, `attributes`,"
        " `time`); events for which it is falsy do not count for this rule.",
    )
    quiet: Duration | None = Field(
        default=None,
        description="Fire only once the partition's inputs have not changed for this long"
        " (debounce a marker file that is rewritten).",
    )
    late: Literal["rerun", "ignore", "event"] | None = Field(
        default=None,
        description="Inputs of a fired or expired partition: run again (a new generation),"
        " ignore them, or publish `eventflow.data.late`. Default: `on_update` for fired"
        " partitions, `rerun` for expired ones.",
    )
    expect_by: str | None = Field(
        default=None,
        description="Deadline of each partition, from its variables: `{dt}T06:00Z + 1d`,"
        " `{dt} {hr}:00 + 90m`. Not fired by then: `eventflow.deadline.missed`.",
    )
    timezone: str = Field(
        default="UTC",
        description="IANA timezone of `expect_by` times written without an offset, and of"
        " `expect` periods.",
    )
    expect: Expect | None = Field(
        default=None, description="Partitions expected on a schedule, before any input."
    )
    on_deadline: Literal["event", "run_partial"] | DeadlineAlert = Field(
        default="event",
        description="At a missed deadline: publish the event only, also fire a degraded"
        " run with the inputs that arrived (`run_partial`), or also run an alert task"
        " (`{run: TASK}`).",
    )
    on_failure: RunConfig | None = Field(
        default=None,
        description="A task (any type, with its own `retries`) run once after a run's last"
        " attempt failed, with the partition's variables and `{failed_rule}`,"
        " `{failed_run_id}`, `{failed_attempt}`, `{error}`, `{log_tail}` (also"
        " `EVENTFLOW_VAR_<NAME>`); it never changes the failed run's status.",
    )
    on_missed: RunConfig | None = Field(
        default=None,
        description="A task run once when a partition misses its `expect_by` deadline, with"
        " the partition's variables and `{missed_rule}`, `{deadline}`, `{missing}`,"
        " `{arrived}` (datasets, comma-separated), `{fired_late}`.",
    )
    batch: BatchConfig | None = Field(
        default=None,
        description="Fire one run per batch of inputs, all passed in `EVENTFLOW_EVENTS`.",
    )
    checks: tuple[CheckConfig, ...] = Field(
        default=(),
        description="Data-quality checks of the produced partition (see below): it is"
        " announced only once its blocking checks pass.",
    )
    on_check_failure: OnCheckFailure = Field(
        default="block",
        description="A failed blocking check leaves the run `succeeded` with the partition"
        " blocked (`block`), or also marks the run `failed` (`fail`).",
    )
    renamed_from: Name | None = Field(
        default=None,
        description="The rule's former name: its open matches, timers and runs are kept"
        " under the new name at the next start (see changing pipelines).",
    )
    params: dict[str, str] = Field(
        default_factory=dict,
        description="Template variables read from the inputs' payloads: `{name: JMESPath}`"
        " over `inputs` (the `EVENTFLOW_EVENTS` items), `partition` and each input dataset"
        " by name (`orders.payload.batch_id`); usable as `{name}` in the task and as"
        " `EVENTFLOW_VAR_<NAME>`. A non-string value is JSON-encoded; a null fails the"
        " attempt (write `expr || ''` for an empty default).",
    )


for _model in (AllOf, AnyOf, AtLeast, When):
    _model.model_rebuild()


class EngineConfig(Model):
    """How the process runs: batch sizes, concurrency, where run logs go."""

    batch_size: int = Field(default=1000, ge=1, description="Most observations per commit.")
    queue_size: int = Field(
        default=10_000, ge=1, description="Observations buffered before sensors block."
    )
    max_runs: int = Field(default=16, ge=1, description="Runs executing at once, over all rules.")
    drain_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="On SIGTERM or SIGHUP, how long in-flight runs may finish before they"
        " are stopped (and run again at the next start).",
    )
    heartbeat: Duration = Field(
        default=timedelta(seconds=5),
        description="How often the worker writes its heartbeat row (sensors' health, leases)"
        " to the store for `eventflow status`; a row older than three of these is stale.",
    )
    runs_dir: str = Field(
        default=".eventflow/runs",
        description="Where run inputs and logs are kept, relative to the file.",
    )
    log_max_bytes: int = Field(
        default=1_048_576, ge=1024, description="Cap of each captured stdout/stderr."
    )
    payload_max_bytes: int = Field(
        default=65_536,
        ge=1024,
        description="Cap of each input's `payload` in `EVENTFLOW_EVENTS` and the Python"
        " context (bytes of its compact JSON, or UTF-8 text); a larger one is cut to text"
        " and marked `payload_truncated: true` with `payload_bytes`.",
    )
    poll_interval: Duration = Field(
        default=timedelta(milliseconds=500),
        description="How often the store is checked for work added by other processes"
        " (`eventflow emit`, `eventflow retry`).",
    )
    backfill_rate: float = Field(
        default=50.0,
        gt=0,
        description="Partitions a live backfill fires per second (`eventflow backfill --rate`"
        " overrides it per request), so live events go on meanwhile.",
    )
    backfill_max_runs: int | None = Field(
        default=None,
        ge=1,
        description="Runs of a live backfill's rule pending or running at once: the backfill"
        " fires its next chunk only when there is room, so its runs never queue ahead of live"
        " ones and the rest of `max_runs` stays free for them (default: half of `max_runs`).",
    )

    @property
    def backfill_runs_limit(self) -> int:
        """``backfill_max_runs``, or half of ``max_runs`` (at least one)."""
        return self.backfill_max_runs or max(1, self.max_runs // 2)


class TrustedProxyConfig(Model):
    """A login proxy in front (oauth2-proxy, an ingress with SSO) that names the user."""

    from_: tuple[str, ...] = Field(
        alias="from",
        min_length=1,
        description="Addresses or CIDRs (`10.0.0.0/8`, `127.0.0.1`) the proxy connects"
        " from; the user headers of any other client are ignored.",
    )
    header_user: str = Field(
        default="X-Forwarded-User",
        description="The header holding the signed-in user's name (logged as the principal).",
    )
    header_roles: str | None = Field(
        default="X-Forwarded-Groups",
        description="The header holding the user's groups, separated by commas; `null`:"
        " every user the proxy names is an operator.",
    )
    read_roles: tuple[str, ...] = Field(
        default=(),
        description="Groups that may read; empty: every user the proxy names may read.",
    )
    operate_roles: tuple[str, ...] = Field(
        default=(),
        description="Groups that may also act (retry, emit).",
    )

    @field_validator("from_")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """A typo here would otherwise surface as a crash of the first proxied request."""
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is no address or CIDR (write e.g. 10.0.0.0/8 or 127.0.0.1)"
                ) from None
        return value


class AuthConfig(Model):
    """Who may use the HTTP server. With no credential configured every route is open
    (loopback only, unless `--insecure`); with one, every route but `/healthz`, `/readyz`
    and the webhooks needs it."""

    read_token_env: str = Field(
        default="EVENTFLOW_READ_TOKEN",
        description="Environment variable holding the read token: the page and every `GET`.",
    )
    operate_token_env: str = Field(
        default="EVENTFLOW_API_TOKEN",
        description="Environment variable holding the operate token: reading and acting"
        " (retry, emit).",
    )
    read_token_file: str | None = Field(
        default=None,
        description="A file of read tokens, one a line (several while you rotate them),"
        " relative to the pipeline file: a mounted Kubernetes or Docker secret.",
    )
    operate_token_file: str | None = Field(
        default=None,
        description="A file of operate tokens, one a line, relative to the pipeline file.",
    )
    metrics: Literal["read", "public"] = Field(
        default="read",
        description="Who may scrape `/metrics`: `read` needs a read or operate token"
        " (Prometheus `authorization: {credentials: ...}`), `public` anyone.",
    )
    session_ttl: Duration = Field(
        default=timedelta(hours=12),
        description="How long a sign-in on the status page lasts.",
    )
    trusted_proxy: TrustedProxyConfig | None = Field(
        default=None,
        description="Accept the user a login proxy in front names (single sign-on).",
    )


class ServerConfig(Model):
    """The HTTP server of `eventflow run --http`: who may address it, and its limits."""

    allowed_hosts: tuple[str, ...] = Field(
        default=(),
        description="Host names (or addresses) the server answers to besides the loopback"
        " names and addresses (`localhost`, `127.0.0.1`, `::1`) and the address of `--http`;"
        " `*.example.com` matches any subdomain, `*` any host (a proxy checks it). Another"
        " `Host` header is refused with 400 (DNS rebinding).",
    )
    allowed_origins: tuple[str, ...] = Field(
        default=(),
        description="Origins (`https://console.example.com`) whose browser pages may send"
        " state-changing requests besides the server's own (the `Host` it was reached as).",
    )
    header_timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="Longest wait for a request's headers once the connection is open (or"
        " the previous response sent); the connection is closed beyond it.",
    )
    body_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="Longest wait for a request's whole body; 408 beyond it.",
    )
    keep_alive: Duration = Field(
        default=timedelta(seconds=5),
        description="How long an idle keep-alive connection stays open.",
    )
    max_connections: int = Field(
        default=100,
        ge=1,
        description="Connections and requests at once; further requests are answered 503.",
    )
    max_header_bytes: int = Field(
        default=16_384, ge=1024, description="Largest request line and headers (400 beyond)."
    )
    auth: AuthConfig = Field(
        default_factory=AuthConfig,
        description="Credentials for the page, the API and `/metrics` (see the security page).",
    )


class RetentionConfig(Model):
    """How long the store keeps history that correctness does not need."""

    events: Duration | None = Field(
        default=None,
        description="Keep the event log (what `replay`, `backfill` and `why` read) this long;"
        " `eventflow run` deletes older events every hour. Default: keep every event.",
    )


class EnvironmentConfig(Model):
    """One environment of the pipeline (`eventflow run FILE --env NAME`): an overlay on the
    file. Its store records the environment and refuses to be opened by another."""

    description: str | None = Field(default=None, description="What the environment is for.")
    state: str | None = Field(
        default=None,
        description="State store DSN of this environment (default: the file's `state`).",
    )
    values: dict[str, str] = Field(
        default_factory=dict,
        description="Values of `${NAME}` references in this environment; they take"
        " precedence over the process environment.",
    )
    sensors: dict[Name, dict[str, Any]] = Field(
        default_factory=dict,
        description="Keys laid over a sensor's section (`{inventory: {topic: staging.inv}}`).",
    )
    publish: list[dict[str, Any]] | None = Field(
        default=None,
        description="The publishers of this environment, in place of the file's `publish`.",
    )


class MigrationsConfig(Model):
    """Declared answers to what `eventflow plan` cannot decide by itself."""

    orphans: Literal["keep", "expire", "drop"] | None = Field(
        default=None,
        description="Open matches of a removed rule, or no longer lining up after a `by`"
        " or pattern change: `keep` them for inspection (`status`, `why`), `expire` them"
        " (`eventflow.match.expired`, reason `pipeline_changed`), or `drop` them. Default:"
        " `eventflow run` refuses to start until one is chosen.",
    )
    accept: tuple[str, ...] = Field(
        default=(),
        description="Plan lines accepted in the file (as `eventflow run --accept ID`),"
        " e.g. `rules.hourly.within`.",
    )


class PipelineConfig(Model):
    """The whole pipeline file."""

    name: str | None = Field(default=None, description="Pipeline name; default: the file's stem.")
    state: str | None = Field(
        default=None,
        description="State store DSN; default `sqlite:///.eventflow/state.db` next to the file.",
    )
    engine: EngineConfig = Field(default_factory=EngineConfig, description="Process settings.")
    server: ServerConfig = Field(
        default_factory=ServerConfig, description="The HTTP server of `eventflow run --http`."
    )
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
    connections: dict[Name, ConnectionConfig] = Field(
        default_factory=dict, description="Databases that `sql` checks query, by name."
    )
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig, description="How long history is kept."
    )
    environments: dict[Name, EnvironmentConfig] = Field(
        default_factory=dict,
        description="Named overlays of the file (`eventflow run FILE --env NAME`); without"
        " `--env` the file runs as environment `default`.",
    )
    migrations: MigrationsConfig = Field(
        default_factory=MigrationsConfig,
        description="How a change of the pipeline treats live state (`eventflow plan`).",
    )
