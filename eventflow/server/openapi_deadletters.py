"""The OpenAPI paths of dead letters (:mod:`eventflow.server.api_deadletters`)."""

from __future__ import annotations

from typing import Any

from eventflow.records import DEADLETTER_STATUSES
from eventflow.views.deadletters import STATUS_CHOICES

Schema = dict[str, Any]

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_ERROR = {"$ref": "#/components/schemas/Error"}
_EVENT_ID = {"name": "event_id", "in": "path", "required": True, "schema": _STR}
_ENTRY = {
    "type": "object",
    "required": ["action", "by", "at"],
    "properties": {
        "action": {"enum": ["redrive_requested", "redriven", "redrive_failed", "discarded"]},
        "by": _STR,
        "at": _STR,
        "error": _STR,
    },
}

DEADLETTER: Schema = {
    "type": "object",
    "required": [
        "event_id",
        "sensor",
        "position",
        "error",
        "excerpt",
        "time",
        "status",
        "redrivable",
        "redrive_requested",
    ],
    "properties": {
        "event_id": _STR,
        "sensor": _STR,
        "position": {"type": "object"},
        "error": {**_STR, "description": "Why it could not be processed (the last redrive's)."},
        "excerpt": {**_STR, "description": "The first bytes of the raw message."},
        "time": _STR,
        "status": {"enum": list(DEADLETTER_STATUSES)},
        "redrivable": {
            "type": "boolean",
            "description": "Whether the whole message was kept (up to 1 MiB), so that a"
            " redrive can evaluate it again.",
        },
        "redrive_requested": {
            "type": ["object", "null"],
            "required": ["by", "at"],
            "properties": {"by": _NSTR, "at": _STR},
            "description": "A redrive the running pipeline has not carried out yet.",
        },
    },
}
DETAIL: Schema = {
    **DEADLETTER,
    "required": [*DEADLETTER["required"], "message", "history"],
    "properties": {
        **DEADLETTER["properties"],
        "message": {
            "type": ["object", "null"],
            "description": "The kept observation: `key`, `time`, `payload`, `attributes`.",
        },
        "history": {"type": "array", "items": _ENTRY},
    },
}
RESULT: Schema = {
    "type": "object",
    "required": ["event_id", "action", "done", "detail"],
    "properties": {
        "event_id": _STR,
        "action": {"enum": ["redrive", "discard"]},
        "done": {"type": "boolean"},
        "detail": {**_STR, "description": "A dry run's preview, or why it was refused."},
    },
}
_BULK: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "event_ids": {"type": "array", "items": _STR},
        "sensor": _STR,
        "since": {**_STR, "description": "ISO 8601 or a duration before now (`2h`)."},
        "until": _STR,
        "all": {"type": "boolean"},
        "dry_run": {"type": "boolean"},
    },
}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _action(summary: str, code: str, done: str, extra: dict[str, Schema]) -> Schema:
    return {
        "post": {
            "summary": summary,
            "parameters": [_EVENT_ID],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {}}}},
            "responses": {
                **extra,
                code: _json(DETAIL, done),
                "404": _json(_ERROR, "No such dead letter."),
                "409": _json(
                    _ERROR,
                    "Not open, a redrive already requested, or only an excerpt was kept.",
                ),
            },
        }
    }


def paths(
    guarded: dict[str, Schema], json_only: dict[str, Schema], page: Schema, params: list[Schema]
) -> dict[str, Schema]:
    """``page``: the page schema of :data:`DEADLETTER`; ``params``: since, until, cursor and
    limit."""
    extra = {**guarded, **json_only}
    return {
        "/api/deadletters": {
            "get": {
                "summary": "A page of observations that could not be processed, most recently"
                " recorded first: `items`, `next` and `total` as for runs; `deadletters`"
                " repeats `items` for clients of the list before paging.",
                "parameters": [
                    _query("sensor", _STR, "Only this sensor."),
                    _query("status", {"enum": list(STATUS_CHOICES)}, "Default `open`."),
                    *params,
                ],
                "responses": {
                    "200": _json(page, "OK."),
                    "400": _json(_ERROR, "A bad parameter, time or cursor."),
                },
            }
        },
        "/api/deadletters/redrive": {
            "post": {
                "summary": "Redrive several dead letters (as `eventflow deadletters FILE"
                " redrive`): `event_ids`, or the open ones of `sensor` and `since`/`until`, or"
                " `all`; `dry_run` says what the current pipeline makes of each.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _BULK}},
                },
                "responses": {
                    **extra,
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["items"],
                            "properties": {"items": {"type": "array", "items": RESULT}},
                        },
                        "What was requested (or refused, or would be done) for each.",
                    ),
                    "400": _json(_ERROR, "Not JSON, a bad field, or nothing selected."),
                },
            }
        },
        "/api/deadletters/{event_id}": {
            "get": {
                "summary": "One dead letter in full: its kept message (payload included),"
                " position, error and history.",
                "parameters": [_EVENT_ID],
                "responses": {
                    "200": _json(DETAIL, "OK."),
                    "404": _json(_ERROR, "No such dead letter."),
                },
            }
        },
        "/api/deadletters/{event_id}/redrive": _action(
            "Ask the running pipeline to evaluate the kept message again with the pipeline as"
            " it is now and feed what it announces to the rules, once; audited.",
            "202",
            "The dead letter, its redrive requested.",
            extra,
        ),
        "/api/deadletters/{event_id}/discard": _action(
            "Set the dead letter aside: kept for the audit, hidden from the default list.",
            "200",
            "The dead letter, discarded.",
            extra,
        ),
    }
