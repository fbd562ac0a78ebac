"""The OpenAPI 3.1 document of the HTTP API, served at ``/openapi.json``.

Written by hand next to the handlers it describes; a schemathesis test checks the running
server against it.
"""

from __future__ import annotations

from typing import Any

from eventflow import __version__
from eventflow.records import RUN_STATUSES
from eventflow.server import openapi_deadletters, openapi_pauses
from eventflow.server.credentials import MACHINE_PREFIX, PUBLIC_PATHS
from eventflow.server.openapi_checks import paths as checks_paths
from eventflow.server.openapi_versions import paths as versions_paths

Schema = dict[str, Any]

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_PARTITION = {"type": "object", "additionalProperties": {"type": "string"}}
_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(_ERROR, description)


def _obj(required: list[str], **props: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": props}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 10_000}, "Most rows.")
_SINCE = _query("since", _STR, "At or after: ISO 8601 or a duration before now (`2h`).")
_UNTIL = _query("until", _STR, "Before: ISO 8601 or a duration before now.")
_PARTITION_PARAM = {
    **_query(
        "partition",
        {"type": "array", "items": {"type": "string", "pattern": "="}},
        "Only this partition: `VAR=VALUE`, once per variable of the rule's `by`"
        " (`partition.VAR=VALUE` is understood too).",
    ),
    "style": "form",
    "explode": True,
}
_CURSOR = _query("cursor", _STR, "The `next` of the previous page.")
_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": _STR}

_RUN = _obj(
    ["run_id", "rule", "partition", "generation", "status", "attempt", "max_attempts"],
    run_id=_STR,
    rule=_STR,
    partition=_PARTITION,
    generation={"type": "integer"},
    status={"enum": list(RUN_STATUSES)},
    attempt={"type": "integer"},
    max_attempts={"type": "integer"},
    created_at=_TIME,
    updated_at=_TIME,
    not_before=_TIME,
    started_at=_TIME,
    finished_at=_TIME,
    error=_NSTR,
    output={"type": "object"},
    pipeline_version={
        **_NSTR,
        "description": "The version of the rule that fired the run (null: before versions).",
    },
    notes={
        "type": "object",
        "description": "What the task noted during its attempts: `downstream` (a hand-off's"
        " run: system, id, url, state, outcome), `process` (a command's process group).",
    },
    inputs={"type": "array", "items": {"$ref": "#/components/schemas/Input"}},
    checks={
        "type": ["object", "null"],
        "description": "The outcome of the data-quality checks of the partition the run"
        " produced (null: its rule has no checks, or it produced nothing to check).",
        "required": ["outcome", "text", "dataset", "failed", "results"],
        "properties": {
            "outcome": {"enum": ["pending", "passed", "blocked", "overridden"]},
            "text": {
                "type": "string",
                "description": "`passed`, `failed: NAME`, `blocked`, `overridden`, `pending`.",
            },
            "dataset": _STR,
            "failed": {"type": "array", "items": _STR},
            "blocked_by": {"type": "array", "items": _STR},
            "evaluation": {"type": "integer"},
            "pipeline_version": _NSTR,
            "results": {"type": "array", "items": {"type": "object"}},
        },
    },
)
_INPUT = _obj(
    ["event_id", "dataset", "partition", "sensor", "position", "time"],
    event_id=_STR,
    dataset=_STR,
    partition=_PARTITION,
    sensor=_STR,
    position={"type": "object"},
    time=_STR,
)
_COUNT = {"type": "integer"}
_RULE = _obj(
    ["rule", "when", "open", "fired", "expired", "missed"],
    rule=_STR,
    when=_obj(
        ["mode", "datasets", "by"],
        mode={"enum": ["all", "any"]},
        datasets={"type": "array", "items": _STR},
        by={"type": "array", "items": _STR},
        within={"type": ["number", "null"], "description": "Seconds."},
    ),
    produces=_NSTR,
    open=_COUNT,
    fired=_COUNT,
    expired=_COUNT,
    missed={**_COUNT, "description": "Open matches whose deadline (`expect_by`) passed."},
    condition_text={**_STR, "description": "The condition as text: `all of (a, b)`."},
    quiet={**_NSTR, "description": "The quiet period, e.g. `2s`."},
    late={**_STR, "description": "What an input of a fired partition does."},
    expect_by=_NSTR,
    on_deadline=_NSTR,
    batch={"type": ["object", "null"]},
    paused=openapi_pauses.PAUSED,
)
_MATCH = _obj(
    ["rule", "partition", "status", "generation", "arrived", "missing"],
    rule=_STR,
    partition=_PARTITION,
    status={"enum": ["open", "missed", "expired"]},
    generation={"type": "integer"},
    arrived={"type": "array", "items": _STR},
    missing={"type": "array", "items": _STR},
    opened_at=_TIME,
    expires_at={**_TIME, "description": "When the match expires if inputs are still missing."},
    deadline={
        "type": ["object", "null"],
        "properties": {"at": _STR, "state": {"enum": ["pending", "met", "missed"]}},
    },
    quiet_until=_TIME,
    late_inputs={"type": "integer"},
    partial_run={"type": "boolean"},
    counts={"type": "object", "additionalProperties": {"type": "integer"}},
    opened_version={
        **_NSTR,
        "description": "The rule version its generation opened under (null: before versions).",
    },
)
_EVENT = _obj(
    ["id", "sensor", "key", "time", "received_at", "position", "datasets", "payload"],
    id=_STR,
    sensor=_STR,
    key=_NSTR,
    time=_STR,
    received_at=_STR,
    position={"type": "object"},
    datasets={
        "type": "array",
        "items": _obj(["dataset", "partition"], dataset=_STR, partition=_PARTITION),
    },
    payload={"description": "The event's payload (any JSON)."},
)
_ERROR_AT = {
    "type": ["object", "null"],
    "required": ["message", "at"],
    "properties": {"message": _STR, "at": _STR},
}
_REPORT: dict[str, Schema] = {
    "connected": {"type": ["boolean", "null"]},
    "last_poll": {"type": ["string", "null"], "description": "The last completed poll/fetch."},
    "lag": {"type": ["number", "null"], "description": "Messages or objects not yet observed."},
    "lag_detail": {"type": ["object", "null"], "additionalProperties": {"type": "number"}},
    "last_error": _ERROR_AT,
}
_SENSOR = _obj(
    ["sensor", "type", "state", "ok", "healthy", "detail"],
    sensor=_STR,
    type=_STR,
    state={"enum": ["starting", "up", "retrying", "down"]},
    ok={"type": "boolean"},
    healthy={"type": ["boolean", "null"]},
    detail=_STR,
    paused=openapi_pauses.PAUSED,
    **_REPORT,
)
_REPORTED = _obj(
    ["sensor", "type", "worker", "state"],
    sensor=_STR,
    type=_STR,
    worker={"type": ["string", "null"]},
    state={
        "enum": [
            "connected",
            "disconnected",
            "standby",
            "starting",
            "stale",
            "stopped",
            "unreported",
        ]
    },
    detail=_STR,
    **_REPORT,
)
_WORKER = _obj(
    ["worker", "host", "pid", "state", "started_at", "heartbeat_at", "leases"],
    worker=_STR,
    host=_STR,
    pid={"type": "integer"},
    state={"enum": ["live", "stale", "stopped"]},
    started_at=_STR,
    heartbeat_at=_STR,
    heartbeat_age_seconds={"type": "number"},
    stopped_at={"type": ["string", "null"]},
    leases={"type": "array", "items": _STR},
    sensors={"type": "array", "items": _STR},
)
_RELIABILITY = _obj(
    ["rule", "attempt_error_rate", "run_error_rate", "mttr_seconds"],
    rule=_STR,
    window_seconds={"type": "number"},
    runs={"type": "integer"},
    finished={"type": "integer"},
    failed={"type": "integer"},
    attempts={"type": "integer"},
    failed_attempts={"type": "integer"},
    attempt_error_rate={"type": "number"},
    run_error_rate={"type": "number"},
    recoveries={"type": "integer"},
    mttr_seconds={"type": ["number", "null"]},
    failing_streams={"type": "integer"},
    failing_since={"type": ["string", "null"]},
    truncated={"type": "boolean"},
)
_STATUS = _obj(
    ["pipeline", "state", "rules", "partial_matches", "counts", "recent_runs"],
    pipeline=_STR,
    state={**_STR, "description": "The store's DSN, password redacted."},
    rules={"type": "array", "items": _RULE},
    partial_matches={"type": "array", "items": _MATCH},
    counts={"type": "object", "additionalProperties": {"type": "integer"}},
    recent_runs={"type": "array", "items": _RUN},
    pauses={"type": "array", "items": openapi_pauses.PAUSE},
    sensors={"type": "array", "items": _REPORTED},
    workers={"type": "array", "items": _WORKER},
    reliability={"type": "array", "items": _RELIABILITY},
)
_EMIT = {
    **_obj(
        ["dataset", "partition"],
        dataset=_STR,
        partition=_PARTITION,
        id={"type": "string", "description": "Idempotency id: the same id counts once."},
        payload={"description": "Any JSON, carried with the event."},
    ),
    "additionalProperties": False,
}
_CHECKS = {"type": "object", "additionalProperties": {"type": "object"}}
_READY = _obj(["ready", "checks"], ready={"type": "boolean"}, checks=_CHECKS)


def document(*, secured: bool = False, metrics_public: bool = False) -> Schema:
    """The document; ``secured``: a credential is configured, which every route but the
    health checks, the sign-in, the webhooks (and ``/metrics`` when public) needs."""
    doc = _document()
    if secured:
        public = PUBLIC_PATHS | ({"/metrics"} if metrics_public else set())
        for path, operations in doc["paths"].items():
            if path not in public and not path.startswith(MACHINE_PREFIX):
                for method, operation in operations.items():
                    _require_credential(operation, "read" if method == "get" else "operate")
    return doc


def _require_credential(operation: Schema, role: str) -> None:
    operation["security"] = [{"bearer": []}, {"session": []}]
    operation["responses"]["401"] = _error("No credential, or a wrong one.")
    if role == "operate":
        operation["responses"]["403"] = _error(
            "A read credential, or a browser page of another origin."
        )


def _document() -> Schema:
    from eventflow.server.openapi_backfills import backfill_paths

    guarded = {
        "400": _error("A Host header that is not in `server.allowed_hosts`, or a bad request."),
        "403": _error("Sent by a browser page of another origin."),
        "408": _error("The body did not arrive within `server.body_timeout`."),
    }
    json_only = {"415": _error("The Content-Type is not application/json.")}
    hook_params = [
        {"name": "sensor", "in": "path", "required": True, "schema": _STR},
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "eventflow",
            "version": __version__,
            "description": "Health, metrics, status, rules, partial matches, runs, dead"
            " letters, sensors and webhooks of a"
            " running pipeline (`eventflow run --http`).",
        },
        "paths": {
            "/login": {
                "post": {
                    "summary": "Sign in with a read or operate token: sets the session cookie"
                    " (HttpOnly, SameSite=Strict) the status page uses.",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _obj(["token"], token=_STR)}},
                    },
                    "responses": {
                        **guarded,
                        **json_only,
                        "200": _json(
                            _obj(["principal", "role"], principal=_STR, role=_STR),
                            "Signed in; the cookie is set.",
                        ),
                        "400": _error('The body is not `{"token": "..."}`.'),
                        "401": _error("Not a token of this server."),
                    },
                }
            },
            "/logout": {
                "post": {
                    "summary": "Sign out: the session cookie is removed.",
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": {}}},
                    },
                    "responses": {
                        **guarded,
                        **json_only,
                        "200": _json(_obj(["status"], status=_STR), "Signed out."),
                    },
                }
            },
            "/healthz": {"get": _get("The process is alive.", _obj(["status"], status=_STR))},
            "/readyz": {
                "get": {
                    "summary": "Store open and every sensor connected or within its retry budget.",
                    "responses": {
                        "200": _json(_READY, "Ready."),
                        "503": _json(_READY, "Not ready."),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format 0.0.4).",
                    "responses": {
                        "200": {
                            "description": "Metrics.",
                            "content": {"text/plain": {"schema": _STR}},
                        }
                    },
                }
            },
            "/api/status": {
                "get": _get(
                    "What `eventflow status --json` shows: rules, the oldest open, missed and"
                    " expired partial matches (`limit` of each), the store's figures, the"
                    " newest runs.",
                    _STATUS,
                    params=[_LIMIT],
                    errors={"400": "A bad parameter."},
                )
            },
            "/api/rules": {
                "get": _get(
                    "Rules with their join condition and matches by status, and each rule's"
                    " error rates and mean time to recover over the last day.",
                    _obj(
                        ["rules", "reliability"],
                        rules={"type": "array", "items": _RULE},
                        reliability={"type": "array", "items": _RELIABILITY},
                    ),
                )
            },
            "/api/matches": {
                "get": _get(
                    "A page of open, missed (deadline passed) and expired partial matches, by"
                    " rule and partition: what arrived, what is missing, when they expire;"
                    " `items`, the `cursor` of the next page in `next` (null on the last) and"
                    " the `total` the filters select. `matches` repeats `items` for clients of"
                    " the list before paging. `since`/`until` bound the match's last change.",
                    _page(_MATCH, "matches"),
                    params=[
                        _query("rule", _STR, "Only this rule."),
                        _query(
                            "status", {"enum": ["open", "missed", "expired"]}, "Only this status."
                        ),
                        _PARTITION_PARAM,
                        _SINCE,
                        _UNTIL,
                        _CURSOR,
                        _LIMIT,
                    ],
                    errors={"400": "A bad parameter, time or cursor.", "404": "No such rule."},
                )
            },
            "/api/runs": {
                "get": _get(
                    "A page of runs, newest first (by creation, then run id): `items`, the"
                    " `cursor` of the next page in `next` (null on the last), and the `total`"
                    " the filters select. `runs` repeats `items` for clients of the list"
                    " before paging.",
                    _page(_RUN, "runs"),
                    params=[
                        _query("rule", _STR, "Only this rule."),
                        _query(
                            "status",
                            {"enum": list(RUN_STATUSES)},
                            "Only this status.",
                        ),
                        _PARTITION_PARAM,
                        _SINCE,
                        _UNTIL,
                        _CURSOR,
                        _LIMIT,
                    ],
                    errors={"400": "A bad parameter, time or cursor."},
                )
            },
            "/api/runs/{run_id}": {
                "get": _get(
                    "One run with its inputs.",
                    _RUN,
                    params=[_RUN_ID],
                    errors={"404": "No such run."},
                )
            },
            "/api/runs/{run_id}/logs": {
                "get": _get(
                    "The captured stdout and stderr of an attempt (default: the last).",
                    _obj(
                        ["run_id", "attempt", "stdout", "stderr"],
                        run_id=_STR,
                        attempt={"type": "integer"},
                        stdout=_STR,
                        stderr=_STR,
                    ),
                    params=[_RUN_ID, _query("attempt", {"type": "integer"}, "Which attempt.")],
                    errors={"400": "A bad parameter.", "404": "No such run or attempt."},
                )
            },
            "/api/runs/{run_id}/retry": {
                "post": {
                    "summary": "Run a failed or cancelled run again (same run id, one more"
                    " attempt).",
                    "parameters": [_RUN_ID],
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": {}}},
                    },
                    "responses": {
                        **guarded,
                        **json_only,
                        "200": _json(_RUN, "The run, pending again."),
                        "404": _error("No such run."),
                        "409": _error("The run is neither failed nor cancelled."),
                    },
                }
            },
            "/api/runs/{run_id}/cancel": {
                "post": {
                    "summary": "Cancel a pending or running run, as `eventflow cancel` does: a"
                    " pending run will not start, a running one is stopped (its process group,"
                    " a hand-off's downstream run); it ends `cancelled`.",
                    "parameters": [_RUN_ID],
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": {}}},
                    },
                    "responses": {
                        **guarded,
                        **json_only,
                        "202": _json(
                            _RUN, "The run, with its cancel request (`cancel_requested`)."
                        ),
                        "404": _error("No such run."),
                        "409": _error("The run has ended already."),
                    },
                }
            },
            **checks_paths(guarded, json_only),
            **openapi_deadletters.paths(
                guarded,
                json_only,
                _page(openapi_deadletters.DEADLETTER, "deadletters"),
                [_SINCE, _UNTIL, _CURSOR, _LIMIT],
            ),
            "/api/sensors": {
                "get": _get(
                    "Each sensor's health on this worker (up, retrying within its budget,"
                    " down, starting; connected, last poll, lag, last error) and, in"
                    " `reported`, on every worker as their heartbeat rows say.",
                    _obj(
                        ["sensors", "reported"],
                        sensors={"type": "array", "items": _SENSOR},
                        reported={"type": "array", "items": _REPORTED},
                    ),
                )
            },
            "/api/workers": {
                "get": _get(
                    "Workers that wrote a heartbeat row: id, host, pid, live/stale/stopped,"
                    " started, last heartbeat, leases held.",
                    _obj(["workers"], workers={"type": "array", "items": _WORKER}),
                )
            },
            **openapi_pauses.paths(guarded, json_only, _ERROR),
            **versions_paths(_LIMIT, _CURSOR),
            "/api/events": {
                "get": _get(
                    "A page of the event log, most recently logged first: `items`, `next`"
                    " and `total` as for runs (`since`/`until`: when it was received).",
                    _obj(
                        ["items", "next", "total"],
                        items={"type": "array", "items": _EVENT},
                        next=_NSTR,
                        total={"type": "integer"},
                    ),
                    params=[
                        _query("dataset", _STR, "Only events announcing this dataset."),
                        _query("sensor", _STR, "Only this sensor."),
                        {
                            **_query(
                                "partition",
                                {"type": "array", "items": {"type": "string", "pattern": "="}},
                                "Only events announcing a partition with `VAR=VALUE` (repeat"
                                " for more variables).",
                            ),
                            "style": "form",
                            "explode": True,
                        },
                        _SINCE,
                        _UNTIL,
                        _CURSOR,
                        _LIMIT,
                    ],
                    errors={"400": "A bad parameter, time or cursor."},
                ),
                "post": {
                    "summary": "Announce a dataset partition by hand (like `eventflow emit`).",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _EMIT}},
                    },
                    "responses": {
                        **guarded,
                        **json_only,
                        "202": _json(
                            _obj(["id", "status"], id=_STR, status=_STR),
                            "Recorded; the engine processes it within its poll interval.",
                        ),
                        "400": _error("Not JSON, no such dataset, or the wrong partition."),
                    },
                },
            },
            "/hooks/{sensor}": {
                "post": {
                    "summary": "Deliver an event to a webhook (`type: http`) sensor; answered"
                    " after the event is committed.",
                    "parameters": hook_params,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {}}},
                    },
                    "responses": {
                        **guarded,
                        "200": _json(
                            _obj(["id", "status"], id=_STR, status=_STR),
                            "Committed (or already committed earlier: a redelivery).",
                        ),
                        "400": _error("Malformed JSON or no delivery id."),
                        "401": _error(
                            "Bad bearer token or signature, or a signed time outside the tolerance."
                        ),
                        "404": _error("No webhook sensor of that name."),
                        "413": _error("The body is too large."),
                        "503": _error(
                            "Not committed in time, or the sensor is not running: send it again."
                        ),
                    },
                }
            },
            **backfill_paths(guarded, json_only),
        },
        "components": {
            "schemas": {
                "Error": _obj(["error"], error=_STR),
                "Input": _INPUT,
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A read or operate token (`server.auth`).",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "eventflow_session",
                    "description": "The status page's sign-in (`POST /login`).",
                },
            },
        },
    }


def _page(item: Schema, legacy: str) -> Schema:
    """A page: ``items``, the ``next`` cursor, the ``total``, and ``legacy``, the name the
    list had before paging (the same items)."""
    items = {"type": "array", "items": item}
    return _obj(
        ["items", "next", "total", legacy],
        items=items,
        next=_NSTR,
        total={"type": "integer"},
        **{legacy: items},
    )


def _get(
    summary: str,
    schema: Schema,
    *,
    params: list[Schema] | None = None,
    errors: dict[str, str] | None = None,
) -> Schema:
    responses = {"200": _json(schema, "OK.")}
    responses.update({code: _error(text) for code, text in (errors or {}).items()})
    return {"summary": summary, "parameters": params or [], "responses": responses}
