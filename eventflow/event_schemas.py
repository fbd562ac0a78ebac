"""JSON Schemas of the completion events, one per event type: the CloudEvents envelope (from
the :class:`~eventflow.events.Event` model) with that type's ``data``.

Consumers validate what they receive against these; ``docs/reference/schemas/`` holds them as
files (``python -m eventflow.event_schemas docs/reference/schemas`` writes them, and a test
checks they are current and that the events eventflow publishes validate).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from eventflow import completion
from eventflow.events import Event

_TEXT = {"type": "string"}
_INT = {"type": "integer"}
_TIME = {"type": "string", "format": "date-time"}
_PARTITION = {
    "type": "object",
    "additionalProperties": {"type": "string"},
    "description": "The partition key: variable name to value.",
}
_INPUT = {
    "type": "object",
    "description": "An input event: the dataset partition it announced and its source position.",
    "required": ["event_id", "dataset", "partition", "sensor", "position", "time"],
    "properties": {
        "event_id": _TEXT,
        "dataset": _TEXT,
        "partition": _PARTITION,
        "sensor": _TEXT,
        "position": {"type": "object"},
        "time": _TIME,
    },
    "additionalProperties": False,
}
_INPUTS = {"type": "array", "items": _INPUT}
_MATCH = {"rule": _TEXT, "partition": _PARTITION, "generation": _INT}

_RUN: dict[str, Any] = {
    "required": [
        "rule",
        "partition",
        "run_id",
        "generation",
        "attempt",
        "max_attempts",
        "inputs",
    ],
    "properties": {
        **_MATCH,
        "run_id": _TEXT,
        "attempt": {"type": "integer", "minimum": 1},
        "max_attempts": {"type": "integer", "minimum": 1},
        "inputs": _INPUTS,
        "duration": {"type": "number", "minimum": 0},
        "error": _TEXT,
        "output": {"type": "object"},
        "next_attempt_at": _TIME,
        "produces": _TEXT,
    },
}

_CHECK: dict[str, Any] = {
    "rule": _TEXT,
    "dataset": _TEXT,
    "partition": _PARTITION,
    "run_id": _TEXT,
    "evaluation": {"type": "integer", "minimum": 1},
    "pipeline_version": {"type": ["string", "null"]},
}
_CHECK_RESULT = {
    "type": "object",
    "description": "One check's result: passed or not, its value, why, what it printed.",
    "required": ["check", "kind", "severity", "passed", "value", "attempts", "duration", "at"],
    "properties": {
        "check": _TEXT,
        "kind": {"enum": ["command", "python", "sql", "exists", "value"]},
        "severity": {"enum": ["error", "warn"]},
        "passed": {"type": "boolean"},
        "value": {},
        "attempts": {"type": "integer", "minimum": 1},
        "duration": {"type": "number", "minimum": 0},
        "at": _TIME,
        "detail": _TEXT,
        "output": _TEXT,
    },
    "additionalProperties": False,
}

DATA: dict[str, dict[str, Any]] = {
    completion.DATASET_AVAILABLE: {
        "required": ["dataset", "partition", "event"],
        "properties": {"dataset": _TEXT, "partition": _PARTITION, "event": _INPUT},
    },
    completion.RUN_STARTED: _RUN,
    completion.RUN_SUCCEEDED: _RUN,
    completion.RUN_RETRYING: {**_RUN, "required": [*_RUN["required"], "next_attempt_at"]},
    completion.RUN_FAILED: {**_RUN, "required": [*_RUN["required"], "error"]},
    completion.RUN_CANCELLED: {
        **_RUN,
        "required": [*_RUN["required"], "error"],
        # 0: cancelled while pending, before its first attempt
        "properties": {**_RUN["properties"], "attempt": {"type": "integer", "minimum": 0}},
    },
    completion.MATCH_EXPIRED: {
        "required": [*_MATCH, "opened_at", "arrived", "missing"],
        "properties": {
            **_MATCH,
            "opened_at": {"type": ["string", "null"], "format": "date-time"},
            "arrived": _INPUTS,
            "missing": {"type": "array", "items": _TEXT},
            # closed at a pipeline change (`migrations.orphans: expire`), not by `within`
            "reason": {"enum": ["pipeline_changed"]},
        },
    },
    completion.DEADLINE_MISSED: {
        "required": [*_MATCH, "deadline", "fired_late", "arrived", "missing"],
        "properties": {
            **_MATCH,
            "deadline": _TIME,
            "fired_late": {"type": "boolean"},
            "arrived": _INPUTS,
            "missing": {"type": "array", "items": _TEXT},
            "partial_run_id": {"type": ["string", "null"]},
        },
    },
    completion.DATA_LATE: {
        "required": [*_MATCH, "status", "event"],
        "properties": {**_MATCH, "status": {"enum": ["fired", "expired"]}, "event": _INPUT},
    },
    completion.EVENT_DEADLETTERED: {
        "required": ["sensor", "event_id", "position", "error", "excerpt"],
        "properties": {
            "sensor": _TEXT,
            "event_id": _TEXT,
            "position": {"type": "object"},
            "error": _TEXT,
            "excerpt": _TEXT,
        },
    },
    completion.CHECK_FAILED: {
        "required": [*_CHECK, "check", "severity", "blocking", "result"],
        "properties": {
            **_CHECK,
            "check": _TEXT,
            "severity": {"enum": ["error", "warn"]},
            "blocking": {"type": "boolean"},
            "result": _CHECK_RESULT,
        },
    },
    completion.CHECK_PASSED: {
        "required": [*_CHECK, "results"],
        "properties": {**_CHECK, "results": {"type": "array", "items": _CHECK_RESULT}},
    },
}


def schema(type_: str) -> dict[str, Any]:
    """The JSON Schema (2020-12) of events of ``type_``."""
    envelope = Event.model_json_schema()
    data = {"type": "object", "additionalProperties": False, **DATA[type_]}
    envelope["properties"]["type"] = {"const": type_}
    envelope["properties"]["data"] = data
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://eventflow.dev/schemas/{type_}.json",
        **envelope,
        "title": type_,
    }


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for type_ in completion.TYPES:
        path = folder / f"{type_}.json"
        path.write_text(json.dumps(schema(type_), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/reference/schemas")):
        print(path)
