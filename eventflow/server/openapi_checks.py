"""The OpenAPI paths of the data-quality checks (:mod:`eventflow.server.api_checks`)."""

from __future__ import annotations

from typing import Any

from eventflow.records import GATE_STATUSES

Schema = dict[str, Any]

_STR = {"type": "string"}
_ERROR = {"$ref": "#/components/schemas/Error"}
_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": _STR}

GATE: Schema = {
    "type": "object",
    "required": ["run_id", "rule", "dataset", "partition", "status", "reason", "results"],
    "properties": {
        "run_id": _STR,
        "rule": _STR,
        "dataset": _STR,
        "partition": {"type": "object", "additionalProperties": _STR},
        "status": {"enum": list(GATE_STATUSES)},
        "reason": _STR,
        "attempt": {"type": "integer"},
        "blocked_by": {"type": "array", "items": _STR},
        "results": {"type": "array", "items": {"type": "object"}},
        "actions": {"type": "array", "items": {"type": "object"}},
        "downstream": {"type": "array", "items": _STR},
        "pipeline_version": {"type": ["string", "null"]},
        "created_at": _STR,
        "updated_at": _STR,
    },
}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _action(summary: str, done: str, refused: str, extra: dict[str, Schema]) -> Schema:
    body = {
        "type": "object",
        "properties": {"reason": {"type": "string", "description": "For the audit trail."}},
    }
    return {
        "post": {
            "summary": summary,
            "parameters": [_RUN_ID],
            "requestBody": {"required": False, "content": {"application/json": {"schema": body}}},
            "responses": {
                **extra,
                "202": _json(GATE, done),
                "404": _json(_ERROR, "The run produced no partition held by checks."),
                "409": _json(_ERROR, refused),
            },
        }
    }


def paths(guarded: dict[str, Schema], json_only: dict[str, Schema]) -> dict[str, Schema]:
    extra = {**guarded, **json_only}
    limit = {"type": "integer", "minimum": 1, "maximum": 10_000}
    return {
        "/api/checks": {
            "get": {
                "summary": "Produced partitions and their data-quality check results, newest"
                " first (as `eventflow checks FILE list`).",
                "parameters": [
                    {"name": "rule", "in": "query", "required": False, "schema": _STR},
                    {
                        "name": "status",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": list(GATE_STATUSES)},
                    },
                    {"name": "limit", "in": "query", "required": False, "schema": limit},
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["items"],
                            "properties": {"items": {"type": "array", "items": GATE}},
                        },
                        "OK.",
                    ),
                    "400": _json(_ERROR, "A bad parameter."),
                },
            }
        },
        "/api/checks/{run_id}/rerun": _action(
            "Run the checks of the run's produced partition again (after its data was fixed),"
            " as `eventflow checks FILE rerun` does; audited.",
            "The partition, pending its checks.",
            "The checks are pending or running already.",
            extra,
        ),
        "/api/checks/{run_id}/override": _action(
            "Announce the run's held partition without its checks passing, as `eventflow"
            " checks FILE override` does; audited.",
            "The partition, overridden and announced.",
            "The partition is announced already.",
            extra,
        ),
    }
