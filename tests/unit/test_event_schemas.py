"""The JSON Schemas of the completion events: one per type, and the files in the docs are
current. (That the events eventflow publishes follow them is checked wherever acceptance
tests read published events: see ``tests/acceptance/harness.py``.)"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from eventflow import completion
from eventflow.event_schemas import DATA, schema, write

ROOT = Path(__file__).resolve().parents[2]


def test_every_event_type_has_a_schema() -> None:
    assert set(DATA) == set(completion.TYPES)
    for type_ in completion.TYPES:
        jsonschema.Draft202012Validator.check_schema(schema(type_))


def test_schema_files_in_the_docs_are_current(tmp_path: Path) -> None:
    fix = "run: python -m eventflow.event_schemas docs/reference/schemas"
    for path in write(tmp_path):
        page = ROOT / "docs/reference/schemas" / path.name
        assert page.exists(), fix
        assert json.loads(page.read_text()) == json.loads(path.read_text()), fix


def test_a_wrong_event_is_refused() -> None:
    validator = jsonschema.Draft202012Validator(schema(completion.RUN_FAILED))
    event = {
        "specversion": "1.0",
        "id": "x",
        "source": "/eventflow/p/rules/r",
        "type": completion.RUN_FAILED,
        "time": "2024-01-01T00:00:00Z",
        "data": {"rule": "r", "partition": {"dt": 1}},
    }
    messages = {e.message for e in validator.iter_errors(event)}
    assert "1 is not of type 'string'" in messages
    assert "'error' is a required property" in messages
