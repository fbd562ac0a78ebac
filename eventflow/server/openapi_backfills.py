"""The ``/api/backfills`` part of the OpenAPI document (:mod:`eventflow.server.openapi`)."""

from __future__ import annotations

from eventflow.backfill_requests import BACKFILL_STATUSES
from eventflow.server.openapi import (
    _LIMIT,
    _NSTR,
    _PARTITION,
    _STR,
    _TIME,
    Schema,
    _error,
    _get,
    _json,
    _obj,
    _query,
)

_INT = {"type": "integer"}
_NINT = {"type": ["integer", "null"]}
_BACKFILL = _obj(
    ["id", "rule", "from", "to", "status", "requested_by", "requested_at", "fired"],
    id=_STR,
    rule=_STR,
    **{"from": _STR, "to": _STR},
    force={"type": "boolean"},
    list_sources={"type": "boolean"},
    rate={"type": ["number", "null"]},
    status={"enum": list(BACKFILL_STATUSES)},
    requested_by=_STR,
    requested_at=_TIME,
    preview=_NINT,
    planned=_NINT,
    fired=_INT,
    skipped=_INT,
    incomplete=_INT,
    message=_NSTR,
    cancel_requested={"type": ["object", "null"]},
    updated_at=_TIME,
    finished_at=_TIME,
)
_PREVIEW = _obj(
    ["rule", "from", "to", "counts", "partitions"],
    rule=_STR,
    **{"from": _STR, "to": _STR},
    dry_run={"type": "boolean"},
    counts={"type": "object", "additionalProperties": _INT},
    partitions={
        "type": "array",
        "items": _obj(
            ["partition", "action"],
            partition=_PARTITION,
            key=_STR,
            action={"enum": ["run", "resume", "skip", "incomplete"]},
            reason=_STR,
            run_id=_NSTR,
        ),
    },
    why_empty=_NSTR,
)
_SUBMIT = _obj(
    ["rule", "from", "to"],
    rule=_STR,
    **{"from": _STR, "to": _STR},
    force={"type": "boolean"},
    rate={"type": "number", "exclusiveMinimum": 0},
)
_ID = {"name": "backfill_id", "in": "path", "required": True, "schema": _STR}


def backfill_paths(guarded: Schema, json_only: Schema) -> Schema:
    return {
        "/api/backfills": {
            "get": _get(
                "Backfill requests, newest first: who asked and when, the range, the rate,"
                " the plan's size and the progress.",
                _obj(["backfills"], backfills={"type": "array", "items": _BACKFILL}),
                params=[
                    _query("status", {"enum": [*BACKFILL_STATUSES, "active"]}, "Only this status."),
                    _LIMIT,
                ],
                errors={"400": "A bad parameter."},
            ),
            "post": {
                "summary": "Submit a backfill, as `eventflow backfill` does while the pipeline"
                " runs: the running process fires the range's partitions at `rate` a second"
                " (default `engine.backfill_rate`); the request names the principal.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _SUBMIT}},
                },
                "responses": {
                    **guarded,
                    **json_only,
                    "202": _json(_BACKFILL, "Recorded; the pipeline starts on it at once."),
                },
            },
        },
        "/api/backfills/preview": {
            "get": _get(
                "The dry run of a backfill (`eventflow backfill --dry-run`): what each"
                " partition of the range would do, and why a range finds nothing.",
                _PREVIEW,
                params=[
                    _query("rule", _STR, "The rule (required)."),
                    _query("from", _STR, "First partition (required): `2024-05-01`."),
                    _query("to", _STR, "Last partition, inclusive (required)."),
                    _query("force", {"enum": ["true", "false", "1", "0"]}, "Succeeded again."),
                ],
                errors={
                    "400": "No such rule, or a bad range.",
                    "429": "Another preview is being planned (one at a time); see Retry-After.",
                },
            )
        },
        "/api/backfills/{backfill_id}": {
            "get": {
                **_get("One backfill request and its progress.", _BACKFILL),
                "parameters": [_ID],
                "responses": {
                    "200": _json(_BACKFILL, "OK."),
                    "404": _error("No such backfill."),
                },
            }
        },
        "/api/backfills/{backfill_id}/cancel": {
            "post": {
                "summary": "Cancel a pending or running backfill: nothing more fires (what"
                " fired stays; `eventflow cancel` stops runs).",
                "parameters": [_ID],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": {}}},
                },
                "responses": {
                    **guarded,
                    **json_only,
                    "202": _json(_BACKFILL, "The backfill, with its cancel request."),
                    "404": _error("No such backfill."),
                    "409": _error("The backfill has ended already."),
                },
            }
        },
    }
