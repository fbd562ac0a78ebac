"""The pause and resume routes of the OpenAPI document (see :mod:`eventflow.server.openapi`)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}

_PAUSE_PROPS: Schema = {
    "by": {**_STR, "description": "Who paused it: `cli:USER` or `api:PRINCIPAL`."},
    "reason": _NSTR,
    "since": {**_STR, "format": "date-time"},
    "held": {
        "type": ["integer", "null"],
        "description": "A rule's runs held (pending, not started); null for a sensor.",
    },
}
PAUSED: Schema = {
    "type": ["object", "null"],
    "description": "Null while it runs; paused: by whom, why, since when, and (a rule) how"
    " many runs it holds until the resume.",
    "required": ["by", "since"],
    "properties": _PAUSE_PROPS,
}
PAUSE: Schema = {
    "type": "object",
    "required": ["kind", "name", "by", "since"],
    "properties": {"kind": {"enum": ["rule", "sensor"]}, "name": _STR, **_PAUSE_PROPS},
}
_ACTION = {
    "type": "object",
    "required": ["kind", "name", "action", "by", "at", "changed"],
    "properties": {
        "kind": {"enum": ["rule", "sensor"]},
        "name": _STR,
        "action": {"enum": ["pause", "resume"]},
        "by": _STR,
        "reason": _NSTR,
        "at": {**_STR, "format": "date-time"},
        "changed": {
            "type": "boolean",
            "description": "False when it was paused (or running) already: nothing changed.",
        },
    },
}
_BODY = {
    "type": "object",
    "properties": {"reason": {**_STR, "description": "Why (kept with the audit record)."}},
}


def paths(guarded: Schema, json_only: Schema, error: Schema) -> dict[str, Schema]:
    """``POST /api/{rules,sensors}/{name}/{pause,resume}``; the responses every state-changing
    route has (``guarded``, ``json_only``) and the error schema are the document's."""
    found: dict[str, Schema] = {}
    for kind, what in (
        ("rule", "its events are still taken and matched; its runs are held until the resume"),
        ("sensor", "it stops reading; the source keeps the data"),
    ):
        for action in ("pause", "resume"):
            summary = (
                f"Pause a {kind}, as `eventflow pause --{kind}` does: {what}."
                if action == "pause"
                else f"Resume a paused {kind}, as `eventflow resume --{kind}` does."
            )
            found[f"/api/{kind}s/{{name}}/{action}"] = {
                "post": {
                    "summary": summary + " Audited with the principal; idempotent.",
                    "parameters": [
                        {"name": "name", "in": "path", "required": True, "schema": _STR}
                    ],
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": _BODY}},
                    },
                    "responses": {
                        **guarded,
                        **json_only,
                        "200": {
                            "description": "Done (or nothing to do): the audit record and the"
                            " pause now (null: it runs).",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["action", "paused"],
                                        "properties": {
                                            "action": _ACTION,
                                            "paused": {**PAUSE, "type": ["object", "null"]},
                                        },
                                    }
                                }
                            },
                        },
                        "404": {
                            "description": f"No {kind} of that name.",
                            "content": {"application/json": {"schema": error}},
                        },
                    },
                }
            }
    return found
