"""The plugin API: everything a sensor, publisher, sender, task runner or store imports.

A plugin is a class registered by entry point under its ``type`` (see
``docs/reference/plugins.md``); it imports from eventflow only this module, which is the
stable surface that the built-in plugins in ``eventflow_sensors`` use too::

    from eventflow.plugin import Observation, PluginEnv, SensorConfig, SensorContext

- **Protocols**: :class:`Sensor` (with the optional :class:`ListableSensor`,
  :class:`ReplayableSensor` and :class:`ObjectSensor`), :class:`Publisher`, :class:`MessageSender`,
  :class:`TaskRunner`, :class:`Store` and its :class:`Transaction`.
- **What flows**: :class:`Observation` (what a sensor saw, with its source position),
  :class:`Event` (the CloudEvents-shaped envelope built by the core), :class:`OutgoingMessage`,
  :class:`RunContext` and :class:`TaskResult`, and the store's records.
- **Config**: :class:`SensorConfig`, :class:`PublisherConfig` and :class:`Model` (pydantic
  bases that forbid unknown keys), :data:`Duration` (``30s``, ``2h``).
- **Lifecycle**: :class:`Resource`, the ``async with`` base of everything that opens a
  connection; :mod:`backoff <eventflow.backoff>` for retry loops.
- **Errors**: :class:`SensorError`, :class:`PublishError` (:class:`PublishRejected` for
  events a receiver refuses for good), :class:`TaskError`,
  :class:`StoreError` (:class:`NotOpenError` for a store used before it opens, which the
  HTTP server answers 503), :class:`ClosedError`, all :class:`EventflowError`;
  :func:`require_extra` raises :class:`MissingExtraError` naming the extra to install.
- **Helpers**: templates (:func:`render`, :func:`placeholders`), :func:`glob_match`, ids
  (:func:`digest`, :func:`format_partition`), :func:`utcnow`, a sensor's Prometheus gauges
  (:func:`sensor_gauges`), the completion event types (:data:`DATASET_AVAILABLE`, ...), and
  webhook routing (:data:`HOOKS`, :class:`HookRequest`, :class:`HookResponse`).

Nothing here imports a transport library; ``tests/unit/test_import_boundary.py`` checks it.
"""

from __future__ import annotations

from eventflow import backoff
from eventflow.completion import (
    CHECK_FAILED,
    CHECK_PASSED,
    DATA_LATE,
    DATASET_AVAILABLE,
    DEADLINE_MISSED,
    EVENT_DEADLETTERED,
    MATCH_EXPIRED,
    RUN_FAILED,
    RUN_RETRYING,
    RUN_STARTED,
    RUN_SUCCEEDED,
)
from eventflow.config.models import Model, PublisherConfig, SensorConfig
from eventflow.durations import Duration
from eventflow.errors import (
    ClosedError,
    EventflowError,
    NotOpenError,
    PublishError,
    PublishRejected,
    SensorError,
    StoreError,
    TaskError,
)
from eventflow.events import (
    JSON,
    Event,
    InputRef,
    Observation,
    digest,
    escape_text,
    format_partition,
    utcnow,
)
from eventflow.extras import MissingExtraError
from eventflow.extras import require as require_extra
from eventflow.lifecycle import Resource
from eventflow.metrics import SensorGauges
from eventflow.metrics import sensor as sensor_gauges
from eventflow.patterns import glob_match, placeholders, render
from eventflow.records import (
    Changes,
    DeadLetter,
    InboxItem,
    NewRun,
    OutboxItem,
    RunRecord,
    RunUpdate,
    StoredEvent,
    Timer,
)
from eventflow.server.hooks import HOOKS, Hook, HookRequest, HookResponse
from eventflow.types import (
    ListableSensor,
    MessageSender,
    ObjectSensor,
    OutgoingMessage,
    PluginEnv,
    Publisher,
    ReplayableSensor,
    RunContext,
    ScaleOut,
    Sensor,
    SensorContext,
    Store,
    TaskResult,
    TaskRunner,
    Transaction,
)

__all__ = [
    "CHECK_FAILED",
    "CHECK_PASSED",
    "DATASET_AVAILABLE",
    "DATA_LATE",
    "DEADLINE_MISSED",
    "EVENT_DEADLETTERED",
    "HOOKS",
    "JSON",
    "MATCH_EXPIRED",
    "RUN_FAILED",
    "RUN_RETRYING",
    "RUN_STARTED",
    "RUN_SUCCEEDED",
    "Changes",
    "ClosedError",
    "DeadLetter",
    "Duration",
    "Event",
    "EventflowError",
    "Hook",
    "HookRequest",
    "HookResponse",
    "InboxItem",
    "InputRef",
    "ListableSensor",
    "MessageSender",
    "MissingExtraError",
    "Model",
    "NewRun",
    "NotOpenError",
    "ObjectSensor",
    "Observation",
    "OutboxItem",
    "OutgoingMessage",
    "PluginEnv",
    "PublishError",
    "PublishRejected",
    "Publisher",
    "PublisherConfig",
    "ReplayableSensor",
    "Resource",
    "RunContext",
    "RunRecord",
    "RunUpdate",
    "ScaleOut",
    "Sensor",
    "SensorConfig",
    "SensorContext",
    "SensorError",
    "SensorGauges",
    "Store",
    "StoreError",
    "StoredEvent",
    "TaskError",
    "TaskResult",
    "TaskRunner",
    "Timer",
    "Transaction",
    "backoff",
    "digest",
    "escape_text",
    "format_partition",
    "glob_match",
    "placeholders",
    "render",
    "require_extra",
    "sensor_gauges",
    "utcnow",
]
