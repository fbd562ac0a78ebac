"""The OpenAPI paths of the versions and the plan (:mod:`eventflow.server.api_versions`)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_NBOOL = {"type": ["boolean", "null"]}
_ERROR = {"$ref": "#/components/schemas/Error"}


def _obj(required: list[str], **props: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": props}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


IDENTITY = {
    **_obj(
        ["store_id", "environment", "pipeline", "created_at"],
        store_id=_STR,
        environment=_STR,
        pipeline=_STR,
        created_at=_STR,
    ),
    "description": "The store's identity, made at its first start.",
}
_IDENTITY_OR_NULL = {"oneOf": [IDENTITY, {"type": "null"}]}
START = _obj(
    ["seq", "version", "pipeline", "environment", "worker", "started_at", "changes", "current"],
    seq={"type": "integer"},
    version=_STR,
    pipeline=_STR,
    environment=_STR,
    worker={**_STR, "description": "`host:pid` of the process that started it."},
    started_at=_STR,
    git_commit=_NSTR,
    git_dirty=_NBOOL,
    rules={
        "type": "object",
        "additionalProperties": _STR,
        "description": "The version of each rule (what its runs carry).",
    },
    accepted={"type": "array", "items": {"type": "object"}},
    changes={
        "type": "array",
        "items": _STR,
        "description": "The plan line ids from the start before (`first start` for the first).",
    },
    current={"type": "boolean", "description": "The version this process runs."},
)
CURRENT = _obj(
    ["pipeline", "version", "environment", "store"],
    pipeline=_STR,
    version=_STR,
    environment=_STR,
    store=_IDENTITY_OR_NULL,
    started_at=_NSTR,
    worker=_NSTR,
    git_commit=_NSTR,
    git_dirty=_NBOOL,
)
_COUNT = {"type": "integer"}
LINE = _obj(
    ["id", "kind", "subject", "detail", "effect", "destructive", "accepted_by", "state"],
    id={**_STR, "description": "The dotted path of what changed (what `--accept` takes)."},
    kind=_STR,
    subject=_STR,
    detail=_STR,
    effect=_STR,
    destructive={"type": "boolean"},
    accepted_by=_NSTR,
    state=_obj(
        [],
        open_matches=_COUNT,
        fired_matches=_COUNT,
        expired_matches=_COUNT,
        timers=_COUNT,
        pending_runs=_COUNT,
        running_runs=_COUNT,
    ),
)
PLAN = _obj(
    ["pipeline", "environment", "version", "previous", "changed", "refused", "lines", "store"],
    pipeline=_STR,
    environment=_STR,
    version=_STR,
    previous={
        "oneOf": [
            _obj(["version", "started_at"], version=_STR, started_at=_STR),
            {"type": "null"},
        ],
        "description": "The newest start of another version (null: no other version ran).",
    },
    changed={"type": "boolean"},
    refused={"type": "array", "items": _STR},
    lines={"type": "array", "items": LINE},
    store=_IDENTITY_OR_NULL,
)


def paths(limit: Schema, cursor: Schema) -> dict[str, Schema]:
    """``/api/versions`` and ``/api/plan``."""
    return {
        "/api/versions": {
            "get": {
                "summary": "A page of the pipeline starts the store recorded, newest first"
                " (what `eventflow versions` lists: when each version ran, on which worker, in"
                " which environment, at which git commit, what changed from the start"
                " before): `items`, `next` (the `cursor` of the next page) and `total`; and"
                " `current`, the version this process runs.",
                "parameters": [cursor, limit],
                "responses": {
                    "200": _json(
                        _obj(
                            ["items", "next", "total", "current"],
                            items={"type": "array", "items": START},
                            next=_NSTR,
                            total={"type": "integer"},
                            current=CURRENT,
                        ),
                        "OK.",
                    ),
                    "400": _json(_ERROR, "A bad limit or cursor."),
                },
            }
        },
        "/api/plan": {
            "get": {
                "summary": "The plan of the running pipeline against the version the store"
                " ran before it (what `eventflow plan` listed for this version), with the live"
                " state as it is now: one line per change, its effect, and whether it was"
                " accepted. Reads only.",
                "parameters": [],
                "responses": {"200": _json(PLAN, "OK.")},
            }
        },
    }
