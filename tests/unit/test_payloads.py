"""Input payloads for tasks: the cap, pruned events, ``params`` evaluation and its checks."""

from __future__ import annotations

import asyncio
import importlib
import json
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path

import jmespath
import pytest

from eventflow.config.loader import check_file, load_pipeline
from eventflow.dispatcher import Dispatcher
from eventflow.engine import Engine
from eventflow.errors import TaskError
from eventflow.events import InputRef, utcnow
from eventflow.payloads import (
    InputEvent,
    capped,
    evaluate_params,
    input_events,
    params_context,
)
from eventflow.pipeline import EMIT_SENSOR
from eventflow.records import InboxItem, StoredEvent
from eventflow.store.memory import MemoryStore
from eventflow.types import PluginEnv, RunContext

REF = InputRef("e1", "orders", {"dt": "d1"}, "kafka", {"topic": "t", "offset": 3}, "2024")


def stored(payload: object, key: str | None = "k-1") -> StoredEvent:
    return StoredEvent(
        "e1", "kafka", key, utcnow(), {"topic": "t"}, payload, {"headers": {"h": "v"}}, (), utcnow()
    )


def test_a_payload_within_the_cap_is_kept_as_it_is() -> None:
    """A payload whose compact JSON fits in the cap comes back unchanged, with no size."""
    assert capped({"a": [1, 2]}, 1024) == ({"a": [1, 2]}, None)
    assert capped(None, 1) == (None, None)


def test_an_oversize_payload_is_cut_to_text_with_its_original_size() -> None:
    """A JSON payload larger than the cap becomes the first bytes of its compact JSON."""
    payload = {"files": ["f" * 100] * 50}
    text, size = capped(payload, 1024)
    full = json.dumps(payload, separators=(",", ":"))
    assert size == len(full)
    assert isinstance(text, str)
    assert full.startswith(text)
    assert len(text) == 1024


def test_a_text_payload_is_cut_without_splitting_a_character() -> None:
    """A text payload is measured in UTF-8 bytes and cut at a character boundary."""
    text, size = capped("é" * 1000, 1025)
    assert size == 2000
    assert text == "é" * 512


def test_inputs_carry_key_payload_and_attributes_beside_the_reference() -> None:
    """Each item keeps the reference's fields and adds the event's key, payload, attributes."""
    [item] = input_events([REF], {"e1": stored({"batch_id": "b-42"})}, 1024)
    data = item.to_dict()
    assert {k: data[k] for k in REF.to_dict()} == REF.to_dict()
    assert data["key"] == "k-1"
    assert data["payload"] == {"batch_id": "b-42"}
    assert data["attributes"] == {"headers": {"h": "v"}}
    assert "payload_truncated" not in data
    assert "payload_missing" not in data


def test_a_cut_payload_says_so_in_its_item() -> None:
    """An item whose payload was cut has payload_truncated and payload_bytes; it dumps as JSON."""
    [item] = input_events([REF], {"e1": stored({"x": "y" * 5000})}, 1024)
    data = json.loads(json.dumps(item.to_dict()))
    assert data["payload_truncated"] is True
    assert data["payload_bytes"] == len('{"x":""}') + 5000
    assert isinstance(data["payload"], str)
    assert len(data["payload"]) == 1024


def test_an_input_whose_event_was_pruned_is_marked_missing() -> None:
    """An input without its event in the log has payload_missing "pruned" and no payload."""
    [item] = input_events([REF], {}, 1024)
    assert item.to_dict()["payload_missing"] == "pruned"
    assert item.payload is None


def context(payload: object) -> dict[str, object]:
    items = [e.to_dict() for e in input_events([REF], {"e1": stored(payload)}, 1024)]
    return params_context(items, {"dt": "d1"})


def test_params_read_inputs_by_position_and_by_dataset() -> None:
    """Expressions see `inputs`, `partition` and each dataset by name; text stays text and
    other values are JSON-encoded."""
    params = {
        "batch": jmespath.compile("orders.payload.batch_id"),
        "files": jmespath.compile("inputs[0].payload.files"),
        "count": jmespath.compile("length(inputs[0].payload.files)"),
        "dt": jmespath.compile("partition.dt"),
        "header": jmespath.compile("orders.attributes.headers.h"),
    }
    found = evaluate_params(params, context({"batch_id": "b-42", "files": ["a", "b"]}))
    assert found == {"batch": "b-42", "files": '["a","b"]', "count": "2", "dt": "d1", "header": "v"}


def test_a_param_that_gives_null_fails_with_its_name_and_the_default_form() -> None:
    """A missing field is an error naming the param and how to default it to empty."""
    with pytest.raises(TaskError) as caught:
        evaluate_params({"batch": jmespath.compile("orders.payload.nope")}, context({"a": 1}))
    message = str(caught.value)
    assert "params.batch" in message
    assert "|| ''" in message
    assert evaluate_params(
        {"batch": jmespath.compile("orders.payload.nope || ''")}, context({"a": 1})
    ) == {"batch": ""}


def test_a_null_param_over_a_cut_payload_says_the_payload_was_cut() -> None:
    """When an input's payload was truncated, the null param's error points at that."""
    items = [e.to_dict() for e in input_events([REF], {"e1": stored({"x": "y" * 5000})}, 1024)]
    with pytest.raises(TaskError, match="payload truncated"):
        evaluate_params(
            {"x": jmespath.compile("orders.payload.x")}, params_context(items, {"dt": "d1"})
        )


# --- the dispatcher ----------------------------------------------------------------------

TASKS = """
seen = []

def record(ctx):
    seen.append(ctx)
"""


async def run_once(tmp_path: Path, params: str, prune: bool = False) -> RunContext:
    """Emit one event with a payload, run the rule once, return the task's context."""
    module = f"tasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(TASKS)
    (tmp_path / "p.yaml").write_text(
        textwrap.dedent(f"""
        sensors:
          landing: {{type: directory, path: ./landing}}
        datasets:
          ready: {{sensor: landing, key: "{{dt}}"}}
        rules:
          job:
            when: {{any: [ready], by: [dt]}}
            params: {params}
            run: {{python: "{module}:record"}}
        engine: {{poll_interval: 50ms}}
        """)
    )
    pipeline = load_pipeline(tmp_path / "p.yaml")
    env = PluginEnv(pipeline.name, pipeline.base_dir)
    runners = {n: r.task_plugin(r.task_config, env) for n, r in pipeline.rules.items()}
    async with MemoryStore() as store:
        engine = Engine(pipeline, store)
        payload = {"batch_id": "b-42", "files": ["a.csv"]}
        await store.add_inbox(
            InboxItem(EMIT_SENSOR, "ready", {"dt": "d1"}, {"emit_id": "x"}, payload, utcnow())
        )
        await engine.process([])
        if prune:
            await store.prune_events(utcnow() + timedelta(hours=1), 100)
        dispatcher = Dispatcher(pipeline, store, runners)
        await dispatcher.claim_and_start()
        while dispatcher.inflight:  # noqa: ASYNC110 - runs end on their own
            await asyncio.sleep(0.01)
        [run] = await store.list_runs()
    seen: list[RunContext] = importlib.import_module(module).seen
    if not seen:
        raise AssertionError(f"the task did not run: {run.status} {run.error}")
    return seen[0]


async def test_a_python_task_sees_payloads_and_params_in_its_context(tmp_path: Path) -> None:
    """The context holds each input's payload (typed), the params and them as variables;
    the events file lists the same items."""
    ctx = await run_once(tmp_path, "{batch: ready.payload.batch_id}")
    [event] = ctx.events
    assert isinstance(event, InputEvent)
    assert event.payload == {"batch_id": "b-42", "files": ["a.csv"]}
    assert ctx.payloads("ready") == [event.payload]
    assert ctx.params == {"batch": "b-42"}
    assert ctx.variables["batch"] == "b-42"
    assert json.loads(ctx.events_file.read_text()) == [event.to_dict()]


async def test_a_pruned_input_is_marked_and_does_not_crash_the_run(tmp_path: Path) -> None:
    """An input whose event retention deleted runs with payload_missing "pruned"."""
    ctx = await run_once(tmp_path, "{batch: \"ready.payload.batch_id || 'none'\"}", prune=True)
    assert ctx.events[0].payload_missing == "pruned"
    assert ctx.params == {"batch": "none"}
    assert json.loads(ctx.events_file.read_text())[0]["payload_missing"] == "pruned"


# --- validate ----------------------------------------------------------------------------

HEAD = """\
sensors:
  landing: {type: directory, path: ./landing}
datasets:
  ready: {sensor: landing, key: "{dt}"}
rules:
  job:
    when: {any: [ready], by: [dt]}
"""


def problems_of(tmp_path: Path, rule: str) -> list[tuple[int | None, str]]:
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + textwrap.indent(textwrap.dedent(rule).lstrip("\n"), "    "))
    return [(p.line, p.message) for p in check_file(path, {})]


def test_a_bad_params_expression_is_reported_with_its_line(tmp_path: Path) -> None:
    """`validate` reports a params entry that is not JMESPath at its line."""
    found = problems_of(
        tmp_path,
        """
        params: {batch: "inputs[0.payload"}
        run: {command: [echo, "{batch}"]}
    """,
    )
    [(line, message)] = found
    assert line == 8
    assert "is not a JMESPath expression" in message


def test_a_param_named_like_a_partition_variable_is_refused(tmp_path: Path) -> None:
    """A param may not take the name of a partition or run variable."""
    found = problems_of(
        tmp_path,
        """
        params: {dt: "inputs[0].payload.dt", run_id: "inputs[0].key"}
        run: {command: [echo, "{dt}"]}
    """,
    )
    messages = sorted(m for _, m in found)
    assert len(messages) == 2
    assert "partition variable" in messages[0]
    assert "`dt`" in messages[0]
    assert "run variable" in messages[1]


def test_a_param_inside_a_shell_script_is_refused_like_a_partition_variable(
    tmp_path: Path,
) -> None:
    """`{param}` in a `sh -c` script is refused (read EVENTFLOW_VAR_<NAME>); as an argument
    of its own it is accepted."""
    found = problems_of(
        tmp_path,
        """
        params: {batch: "inputs[0].payload.batch_id"}
        run: {command: [sh, -c, "echo {batch}"]}
    """,
    )
    [(line, message)] = found
    assert line == 9
    assert "would run as code" in message
    assert not problems_of(
        tmp_path,
        """
        params: {batch: "inputs[0].payload.batch_id"}
        run: {command: [sh, -c, 'echo "$EVENTFLOW_VAR_BATCH" "$1"', sh, "{batch}"]}
    """,
    )


def test_a_partition_variable_inside_a_check_script_is_refused(tmp_path: Path) -> None:
    """A `command` check is a task like `run`: `{dt}` in its `sh -c` script is refused, an
    unknown `{var}` is reported, `{dt!sh}` and an argument of its own are accepted."""
    found = problems_of(
        tmp_path,
        """
        run: {command: [echo, "{dt}"]}
        produces: done
        checks:
          - {name: rows, command: [sh, -c, 'wc -l < "out/{dt}.csv"']}
          - {name: typo, command: [test, -s, "out/{day}.csv"]}
          - {name: quoted, command: [sh, -c, 'wc -l < out/{dt!sh}.csv']}
          - {name: argument, command: [sh, -c, 'test -s "$1"', sh, "{pipeline_dir}/{dt}"]}
    """,
    )
    assert [line for line, _ in found] == [11, 12]
    assert "would run as code" in found[0][1]
    assert "unknown template variable `{day}`" in found[1][1]


def test_params_are_template_variables_of_every_task_field(tmp_path: Path) -> None:
    """`{param}` is accepted in an HTTP URL, headers and body; an unknown name is still refused."""
    assert not problems_of(
        tmp_path,
        """
        params: {batch: "inputs[0].payload.batch_id"}
        run:
          http:
            url: "http://127.0.0.1:1/b/{batch}"
            headers: {X-Batch: "{batch}"}
            json: {batch: "{batch}", dt: "{dt}"}
    """,
    )
    [(_, message)] = problems_of(
        tmp_path,
        """
        params: {batch: "inputs[0].payload.batch_id"}
        run: {command: [echo, "{bach}"]}
    """,
    )
    assert "unknown template variable `{bach}`" in message
