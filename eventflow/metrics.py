"""Prometheus metrics: their definitions, and the few calls the engine's components make.

Every metric lives in :data:`REGISTRY` (served at ``/metrics`` by ``eventflow run --http``)
and is listed in ``docs/reference/metrics.md``. The hot path stays cheap: the engine reports
once per committed batch (counts folded with :class:`collections.Counter`), the dispatcher
once per claim and per finished attempt. Values read from the store (outbox backlog, pending
timers, runs by status) are refreshed when ``/metrics`` is scraped (:func:`refresh_store`).

Sensors report what only they know through :func:`sensor`, e.g. in a Kafka sensor::

    from eventflow import metrics

    gauges = metrics.sensor(ctx.name)
    gauges.lag(total_lag)          # messages behind the end of the assigned partitions
    gauges.polled()                # a poll (S3 listing, directory scan) completed now

and whether they reach their source through ``ctx.set_health`` (``eventflow_sensor_up``).
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from eventflow import health
from eventflow.events import InputRef
from eventflow.records import RUN_STATUSES, DeadLetter, NewRun, RunRecord

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series: they double the output
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600)
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

# -- the engine --------------------------------------------------------------------------------

EVENTS = Counter(
    "eventflow_events_received",
    "Dataset partitions announced by committed events, per sensor and dataset.",
    ["sensor", "dataset"],
    registry=REGISTRY,
)
OBSERVATIONS = Counter(
    "eventflow_observations",
    "Observations committed by the engine (new, duplicate or dead-lettered).",
    registry=REGISTRY,
)
DUPLICATES = Counter(
    "eventflow_duplicates",
    "Observations recognised as already seen (redeliveries) and not processed again.",
    registry=REGISTRY,
)
DEADLETTERS = Counter(
    "eventflow_deadletters",
    "Observations that could not be processed and were recorded as dead letters.",
    ["sensor"],
    registry=REGISTRY,
)
FIRES = Counter(
    "eventflow_rule_fires",
    "Rule fires (each creates a run), per rule.",
    ["rule"],
    registry=REGISTRY,
)
EXPIRED = Counter(
    "eventflow_matches_expired",
    "Partial matches that expired with inputs missing, per rule.",
    ["rule"],
    registry=REGISTRY,
)
COMMIT_SECONDS = Histogram(
    "eventflow_store_commit_seconds",
    "Time to commit one engine batch to the state store.",
    buckets=_COMMIT_BUCKETS,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "eventflow_engine_batch_observations",
    "Observations per committed engine batch.",
    buckets=(1, 10, 100, 250, 500, 1000, 2500, 5000, 10000),
    registry=REGISTRY,
)

# -- runs --------------------------------------------------------------------------------------

RUNS_STARTED = Counter(
    "eventflow_runs_started",
    "Run attempts started, per rule.",
    ["rule"],
    registry=REGISTRY,
)
TRIGGER_LATENCY = Histogram(
    "eventflow_trigger_latency_seconds",
    "From the source time of the newest input event to the start of the run's first attempt.",
    ["rule"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
RUNS_FINISHED = Counter(
    "eventflow_run_attempts_finished",
    "Run attempts finished, per rule and outcome (succeeded, retrying, failed).",
    ["rule", "outcome"],
    registry=REGISTRY,
)
RUN_SECONDS = Histogram(
    "eventflow_run_duration_seconds",
    "Duration of run attempts, per rule and outcome.",
    ["rule", "outcome"],
    buckets=_DURATION_BUCKETS,
    registry=REGISTRY,
)
RETRIES = Counter(
    "eventflow_run_retries",
    "Retries scheduled, per rule and cause (backoff after a failure, or manual).",
    ["rule", "cause"],
    registry=REGISTRY,
)
PUBLISHED = Counter(
    "eventflow_events_published",
    "Completion events delivered by each publisher.",
    ["publisher"],
    registry=REGISTRY,
)
PUBLISH_REJECTED = Counter(
    "eventflow_events_undeliverable",
    "Completion events a receiver refused for good (HTTP 4xx but 408/429), dead-lettered"
    " instead of delivered, per publisher.",
    ["publisher"],
    registry=REGISTRY,
)
PUBLISH_FAILURES = Counter(
    "eventflow_publish_failures",
    "Failed attempts to deliver a batch of completion events, per publisher.",
    ["publisher"],
    registry=REGISTRY,
)

DISK_FULL = Gauge(
    "eventflow_disk_full",
    "1 while a component waits for disk space (the store or the runs directory is full), else 0.",
    ["component"],
    registry=REGISTRY,
)
DISK_FULL_WAITS = Counter(
    "eventflow_disk_full_waits",
    "Tries that found the disk full and were retried after a wait, per component and operation.",
    ["component", "operation"],
    registry=REGISTRY,
)

# -- sensors -----------------------------------------------------------------------------------

SENSOR_UP = Gauge(
    "eventflow_sensor_up",
    "1 while the sensor reaches its source (MQTT connected, Kafka consumer joined), else 0.",
    ["sensor"],
    registry=REGISTRY,
)
SENSOR_RESTARTS = Counter(
    "eventflow_sensor_restarts",
    "Times a sensor failed and was restarted by the supervisor.",
    ["sensor"],
    registry=REGISTRY,
)
SENSOR_LAG = Gauge(
    "eventflow_sensor_lag_messages",
    "Messages at the source not yet observed (Kafka consumer lag), as the sensor reports it.",
    ["sensor"],
    registry=REGISTRY,
)
SENSOR_POLLED = Gauge(
    "eventflow_sensor_last_poll_timestamp_seconds",
    "Unix time of the sensor's last completed poll (S3 listing, directory rescan); alert on"
    " time() minus this.",
    ["sensor"],
    registry=REGISTRY,
)
SENSOR_RESETS = Counter(
    "eventflow_sensor_position_resets",
    "Times a sensor found its checkpoint no longer in the source (Kafka: topic recreated, log"
    " lost, retention passed it), by reason and the policy applied.",
    ["sensor", "reason", "policy"],
    registry=REGISTRY,
)
SENSOR_SKIPPED = Counter(
    "eventflow_sensor_records_skipped",
    "Records a sensor will never observe after a position reset: skipped by its policy, or"
    " gone from the source before they were read (retention).",
    ["sensor", "reason"],
    registry=REGISTRY,
)
WEBHOOKS = Counter(
    "eventflow_webhook_requests",
    "Webhook requests per sensor and HTTP status code.",
    ["sensor", "code"],
    registry=REGISTRY,
)

# -- rule health (refreshed by the worker's heartbeat, from the store) -------------------------

RULE_ERROR_RATE = Gauge(
    "eventflow_rule_error_rate",
    "Share of failed attempts (``of=attempts``) and of failed runs (``of=runs``) among the"
    " rule's runs created in the last window (``eventflow status``'s), 0 to 1.",
    ["rule", "of"],
    registry=REGISTRY,
)
RULE_MTTR = Gauge(
    "eventflow_rule_mttr_seconds",
    "Mean time to recover of the rule in the window: first failure of a partition stream to"
    " its next success, averaged over the recoveries (absent before the first recovery).",
    ["rule"],
    registry=REGISTRY,
)
RULE_UNRECOVERED = Gauge(
    "eventflow_rule_failing_streams",
    "Partition streams of the rule whose last run in the window failed (not recovered yet).",
    ["rule"],
    registry=REGISTRY,
)

# -- the store (refreshed at scrape time) ------------------------------------------------------

OUTBOX_BACKLOG = Gauge(
    "eventflow_outbox_backlog",
    "Completion events recorded and not yet delivered (all publishers).",
    registry=REGISTRY,
)
TIMERS_PENDING = Gauge(
    "eventflow_timers_pending",
    "Durable timers waiting (match expiries, deadlines).",
    registry=REGISTRY,
)
RUNS = Gauge(
    "eventflow_runs",
    "Runs in the store by status.",
    ["status"],
    registry=REGISTRY,
)
MATCHES = Gauge(
    "eventflow_matches",
    "Partial matches in the store by status (open, fired, expired).",
    ["status"],
    registry=REGISTRY,
)
STORE_DEADLETTERS = Gauge(
    "eventflow_deadletters_stored",
    "Dead letters in the store waiting for an action (neither redriven nor discarded).",
    registry=REGISTRY,
)


def batch_committed(
    observations: int,
    duplicates: int,
    arrivals: Iterable[InputRef],
    runs: Iterable[NewRun],
    deadletters: Iterable[DeadLetter],
    expired: Iterable[str],
    commit_seconds: float,
) -> None:
    """One engine batch was committed (called once per batch, never per event)."""
    OBSERVATIONS.inc(observations)
    BATCH_SIZE.observe(observations)
    COMMIT_SECONDS.observe(commit_seconds)
    if duplicates:
        DUPLICATES.inc(duplicates)
    for (sensor, dataset), n in Tally((r.sensor, r.dataset) for r in arrivals).items():
        EVENTS.labels(sensor, dataset).inc(n)
    for rule, n in Tally(r.rule for r in runs).items():
        FIRES.labels(rule).inc(n)
    for sensor, n in Tally(d.sensor for d in deadletters).items():
        DEADLETTERS.labels(sensor).inc(n)
    for rule, n in Tally(expired).items():
        EXPIRED.labels(rule).inc(n)


def runs_started(runs: Iterable[RunRecord], now: datetime) -> None:
    """Attempts were claimed; a first attempt observes the trigger latency."""
    for run in runs:
        RUNS_STARTED.labels(run.rule).inc()
        if run.attempt == 1 and run.inputs:
            newest = max(datetime.fromisoformat(ref.time) for ref in run.inputs)
            TRIGGER_LATENCY.labels(run.rule).observe(max(0.0, (now - newest).total_seconds()))


def attempt_finished(rule: str, outcome: str, seconds: float) -> None:
    """An attempt ended: ``succeeded``, ``retrying``, ``failed`` or ``cancelled``."""
    RUNS_FINISHED.labels(rule, outcome).inc()
    RUN_SECONDS.labels(rule, outcome).observe(seconds)
    if outcome == "retrying":
        RETRIES.labels(rule, "backoff").inc()


def manual_retry(rule: str) -> None:
    RETRIES.labels(rule, "manual").inc()


def published(publisher: str, count: int) -> None:
    PUBLISHED.labels(publisher).inc(count)


def publish_rejected(publisher: str, count: int) -> None:
    PUBLISH_REJECTED.labels(publisher).inc(count)


def publish_failed(publisher: str) -> None:
    PUBLISH_FAILURES.labels(publisher).inc()


def disk_full(component: str, full: bool) -> None:
    DISK_FULL.labels(component).set(1 if full else 0)


def disk_full_waited(component: str, operation: str) -> None:
    DISK_FULL_WAITS.labels(component, operation).inc()


def sensor_health(sensor: str, ok: bool) -> None:
    SENSOR_UP.labels(sensor).set(1 if ok else 0)


def sensor_restarted(sensor: str) -> None:
    SENSOR_RESTARTS.labels(sensor).inc()


def webhook(sensor: str, code: int) -> None:
    WEBHOOKS.labels(sensor, str(code)).inc()


class SensorGauges:
    """What a sensor reports about its source; get one with :func:`sensor`."""

    __slots__ = ("_lag", "_name", "_polled", "_report")

    def __init__(self, name: str) -> None:
        self._name = name
        self._lag = SENSOR_LAG.labels(name)
        self._polled = SENSOR_POLLED.labels(name)
        self._report = health.report(name)

    def reset(self, reason: str, policy: str, skipped: int) -> None:
        """The source no longer held the checkpoint (``reason``); ``policy`` was applied and
        ``skipped`` records will never be observed."""
        SENSOR_RESETS.labels(self._name, reason, policy).inc()
        if skipped > 0:
            SENSOR_SKIPPED.labels(self._name, reason).inc(skipped)

    def lag(self, messages: float, parts: Mapping[str, float] | None = None) -> None:
        """How far behind the source the sensor is (Kafka: sum of end offset minus position
        over the assigned partitions; ``parts``: per partition, shown by ``status``)."""
        self._lag.set(messages)
        self._report.lag = messages
        self._report.lag_detail = dict(parts or {})

    def polled(self, at: float | None = None) -> None:
        """A poll of the source completed (now, or at the given Unix time)."""
        at = time.time() if at is None else at
        self._polled.set(at)
        self._report.last_poll = at


def sensor(name: str) -> SensorGauges:
    """The gauges of sensor ``name`` (cheap; keep the object for repeated reports)."""
    return SensorGauges(name)


def refresh_store(counts: Mapping[str, int]) -> None:
    """Set the store-derived gauges from ``Store.counts()`` (called when scraped)."""
    OUTBOX_BACKLOG.set(counts.get("outbox", 0))
    TIMERS_PENDING.set(counts.get("timers", 0))
    STORE_DEADLETTERS.set(counts.get("deadletters", 0))
    for status in RUN_STATUSES:
        RUNS.labels(status).set(counts.get(f"runs_{status}", 0))
    for match_status in ("open", "fired", "expired"):
        MATCHES.labels(match_status).set(counts.get(f"matches_{match_status}", 0))


def rule_health(rule: str, attempts: float, runs: float, mttr: float | None, open_: int) -> None:
    """The rule's error rates, mean time to recover and failing streams (see the gauges)."""
    RULE_ERROR_RATE.labels(rule, "attempts").set(attempts)
    RULE_ERROR_RATE.labels(rule, "runs").set(runs)
    if mttr is not None:
        RULE_MTTR.labels(rule).set(mttr)
    RULE_UNRECOVERED.labels(rule).set(open_)


def exposition() -> bytes:
    """The text format served at ``/metrics``."""
    return generate_latest(REGISTRY)


# -- data-quality checks -----------------------------------------------------------------------

CHECKS = Counter(
    "eventflow_checks",
    "Data-quality check results, per rule, check, severity and outcome (passed, failed).",
    ["rule", "check", "severity", "outcome"],
    registry=REGISTRY,
)
CHECK_GATES = Counter(
    "eventflow_check_gates",
    "Produced partitions decided by their checks, per rule and outcome (passed, blocked,"
    " overridden).",
    ["rule", "outcome"],
    registry=REGISTRY,
)


def check_finished(rule: str, check: str, severity: str, passed: bool) -> None:
    CHECKS.labels(rule, check, severity, "passed" if passed else "failed").inc()


def gate_decided(rule: str, outcome: str) -> None:
    CHECK_GATES.labels(rule, outcome).inc()
