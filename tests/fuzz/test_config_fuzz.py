"""Config loading under arbitrary input: ``check_file`` (what ``eventflow validate`` calls)
returns problems, whatever the file holds; it never raises."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from eventflow.config.loader import check_file
from eventflow.errors import ConfigProblem
from tests.fuzz.budget import FUZZ

VALID: dict[str, Any] = {
    "state": "sqlite:///.eventflow/state.db?synchronous=normal&busy_timeout=5",
    "sensors": {
        "landing": {"type": "directory", "path": "./landing", "ready": {"stable_for": "2s"}},
        "hook": {"type": "http", "auth": "hmac", "secret_env": "HOOK_SECRET"},
    },
    "datasets": {
        "orders": {"sensor": "landing", "key": "orders/dt={dt}/_SUCCESS"},
        "events": {"sensor": "hook", "where": "payload.ok", "partition": {"dt": "payload.dt"}},
    },
    "rules": {
        "report": {
            "when": {"all": ["orders", "events"], "by": ["dt"], "within": "2h"},
            "expect_by": "{dt}T06:00Z + 1d",
            "quiet": "5m",
            "run": {
                "command": ["echo", "{dt}"],
                "timeout": "30m",
                "retries": 3,
                "backoff": {"initial": "1s", "max": "5m", "multiplier": 2},
            },
            "produces": "report",
        }
    },
    "engine": {"poll_interval": "100ms", "drain_timeout": "10s"},
    "retention": {"events": "7d"},
}
"""A valid pipeline that touches most sections; mutations start from it."""

HOSTILE = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 10, max_value=2**70),
    st.floats(),
    st.text(),
    st.text(alphabet="0123456789.smhdw +-"),
    st.sampled_from(
        [
            "999999999999d",
            "1e400s",
            "-5s",
            "(" * 300 + "a" + ")" * 300,
            "!" * 3000 + "a",
            "{" * 50,
            "sqlite:///x.db?lease=abc",
            "postgresql://[::1/db",
            "postgresql://u@h:abc/db?lease=nan",
            "9999-12-31T23:59Z + 1d",
            "{dt}T06:00Z" + " + 36500d" * 3,
            "${UNSET}",
            "${X:-${Y}}",
        ]
    ),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
"""Values a mutation puts somewhere in the valid pipeline."""


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (mapping keys and list indexes)."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*prefix, i))
    return out


PATHS = _paths(VALID)


def _validate(text: str) -> list[ConfigProblem]:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "pipeline.yaml"
        file.write_text(text, encoding="utf-8", errors="surrogatepass")
        return check_file(file, environ={"X": "1"})


def test_the_pipeline_mutations_start_from_is_valid() -> None:
    """The base of the mutations validates, so what a mutation reports is its own doing."""
    assert _validate(yaml.safe_dump(VALID)) == []


@FUZZ
@given(st.text())
@example("a: " + "[" * 5000 + "]" * 5000)
@example("a: 2024-13-45")
@example("a: " + "9" * 5000)
@example("a: !!float xyz")
@example("a: &x [*x]")
@example("\ud800: 1")
@example("- " * 2000 + "a")
def test_any_text_gives_problems_not_an_exception(text: str) -> None:
    """Arbitrary text (surrogates included) as a pipeline file gives a list of problems."""
    assert isinstance(_validate(text), list)


YAML_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
DOCUMENTS = st.recursive(
    YAML_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)


@FUZZ
@given(st.dictionaries(st.sampled_from([*VALID, "x"]), DOCUMENTS, max_size=6))
def test_any_document_gives_problems_not_an_exception(document: dict[str, Any]) -> None:
    """Arbitrary YAML documents with the pipeline's section names give a list of problems."""
    assert isinstance(_validate(yaml.safe_dump(document, allow_unicode=True)), list)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PATHS), HOSTILE), min_size=1, max_size=3))
@example([(("rules", "report", "when", "within"), "999999999999d")])
@example([(("datasets", "events", "where"), "(" * 500 + "a" + ")" * 500)])
@example([(("state",), "sqlite:///x.db?busy_timeout=1e400")])
@example([(("state",), "nosuch://[::1")])
@example([(("rules", "report", "run", "backoff", "multiplier"), float("inf"))])
@example([(("rules", "report", "expect_by"), "9999-12-31T23:59Z + 1d")])
def test_mutated_pipelines_give_problems_not_an_exception(
    mutations: list[tuple[tuple[Any, ...], Any]],
) -> None:
    """A valid pipeline with a few values replaced by hostile ones gives problems or none."""
    pipeline = copy.deepcopy(VALID)
    for path, value in mutations:
        _put(pipeline, path, value)
    assert isinstance(_validate(yaml.safe_dump(pipeline, allow_unicode=True)), list)


def _put(pipeline: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    """Set ``path`` of ``pipeline`` to ``value``, unless an earlier mutation replaced a
    container on the way."""
    here: Any = pipeline
    for part in path[:-1]:
        if not _holds(here, part):
            return
        here = here[part]
    if _holds(here, path[-1]):
        here[path[-1]] = value


def _holds(container: Any, part: Any) -> bool:
    if isinstance(container, dict):
        return part in container
    return isinstance(container, list) and isinstance(part, int) and part < len(container)
