"""The config models of the task runners: what a rule's ``run`` may say for each task type."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from eventflow.config.loader import check_file
from eventflow.registry import tasks
from eventflow.tasks import timeout_detail
from eventflow.tasks.command import CommandConfig, CommandTask
from eventflow.tasks.http import HttpConfig, HttpTask
from eventflow.tasks.python import PythonConfig, PythonTask
from eventflow.types import PluginEnv, TaskRunner

ENV = PluginEnv("test", Path("/tmp"))


def test_runners_are_registered_by_entry_point() -> None:
    """The ``command``, ``python`` and ``http`` types resolve to their runner classes."""
    assert tasks.get("command") is CommandTask
    assert tasks.get("python") is PythonTask
    assert tasks.get("http") is HttpTask


@pytest.mark.parametrize(
    ("cls", "config"),
    [
        (CommandTask, {"command": ["true"]}),
        (PythonTask, {"python": "mod:fn"}),
        (HttpTask, {"http": {"url": "http://localhost/"}}),
    ],
)
def test_runners_follow_the_protocol(cls: Any, config: dict[str, Any]) -> None:
    """Each runner takes a raw mapping or its validated model and is a ``TaskRunner``."""
    runner = cls(config, ENV)
    assert isinstance(runner, TaskRunner)
    assert isinstance(cls(cls.config_model.model_validate(config), ENV), TaskRunner)


def test_command_config_takes_argv_cwd_and_env() -> None:
    """``command`` is a non-empty argv; numbers written in YAML become text; cwd and env are
    optional."""
    config = CommandConfig.model_validate(
        {"command": ["sleep", 60, 1.5], "cwd": "jobs", "env": {"THREADS": 4}}
    )
    assert config.command == ("sleep", "60", "1.5")
    assert (config.cwd, config.env) == ("jobs", {"THREADS": "4"})
    assert CommandConfig.model_validate({"command": ["true"]}).env == {}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"command": []}, "at least 1 item"),
        ({"command": "dbt run"}, "valid tuple"),
        ({"command": [" "]}, "the program to run, is empty"),
        ({"command": ["true", True]}, "valid string"),
        ({"command": ["true"], "shell": True}, "Extra inputs are not permitted"),
        ({"command": ["true"], "env": {"EVENTFLOW_RUN_ID": "x"}}, "set by eventflow"),
        ({"command": ["true"], "env": {"A=B": "x"}}, "not a valid environment variable"),
    ],
)
def test_command_config_rejects(config: dict[str, Any], message: str) -> None:
    """Malformed command configs are refused with a message that says why."""
    with pytest.raises(ValidationError, match=message):
        CommandConfig.model_validate(config)


@pytest.mark.parametrize("target", ["mod:fn", "pkg.sub.mod:fn", "mod:Class.method", " a_1:_b "])
def test_python_config_accepts_module_colon_attribute(target: str) -> None:
    """``python`` names ``module:function`` with dotted parts."""
    config = PythonConfig.model_validate({"python": target})
    assert config.python == target.strip()
    assert f"{config.module}:{config.attribute}" == config.python


@pytest.mark.parametrize(
    "target", ["mod", "mod:", ":fn", "mod:fn()", "my-mod:fn", "a..b:fn", "1a:f"]
)
def test_python_config_rejects_other_text(target: str) -> None:
    """Anything but ``module:function`` is refused with the expected form in the message."""
    with pytest.raises(ValidationError, match=r"write `package\.module:function`"):
        PythonConfig.model_validate({"python": target})


def test_http_config_defaults_and_normalisation() -> None:
    """POST by default, method upper-cased, ``json`` is the body, ``timeout`` a duration."""
    config = HttpConfig.model_validate(
        {
            "http": {
                "url": "https://airflow/api/v1/dags/{rule}/dagRuns",
                "method": "patch",
                "json": {"conf": {"dt": "{dt}"}},
                "headers": {"X-Retries": 3},
                "timeout": "30s",
                "expect": [200, 409],
            }
        }
    )
    request = config.http
    assert request.method == "PATCH"
    assert request.body == {"conf": {"dt": "{dt}"}}
    assert request.headers == {"X-Retries": "3"}
    assert request.timeout == timedelta(seconds=30)
    assert request.expect == (200, 409)
    plain = HttpConfig.model_validate({"http": {"url": "http://h/"}}).http
    assert (plain.method, plain.body, plain.headers, plain.timeout, plain.expect) == (
        "POST",
        None,
        {},
        None,
        None,
    )


POLL = {"id": "id", "url": "http://h/{id}", "state": "s", "success": ["DONE"], "failure": ["X"]}


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"url": "ftp://h/x"}, "not an http:// or https:// URL"),
        ({"url": "http://h/", "method": "GET /"}, "not an HTTP method"),
        ({"url": "http://h/", "expect": []}, "at least 1 item"),
        ({"url": "http://h/", "expect": [99]}, "not an HTTP status code"),
        ({"url": "http://h/", "timeout": "soon"}, "not a duration"),
        ({"url": "http://h/", "body": {}}, "Extra inputs are not permitted"),
        ({"method": "GET"}, "url"),
        ({"url": "http://h/", "success": "a ||"}, "`a ||` is not a JMESPath expression"),
        ({"url": "http://h/", "poll": {**POLL, "state": "[x"}}, "is not a JMESPath"),
        ({"url": "http://h/", "poll": {**POLL, "success": []}}, "at least 1 item"),
        (
            {"url": "http://h/", "poll": {**POLL, "failure": ["DONE"]}},
            "DONE is listed in both `success` and `failure`",
        ),
        ({"url": "http://h/", "poll": {**POLL, "cancel": {"url": "h"}}}, "not an http://"),
    ],
)
def test_http_config_rejects(request_: dict[str, Any], message: str) -> None:
    """Malformed http configs are refused with a message that says why."""
    with pytest.raises(ValidationError, match=message):
        HttpConfig.model_validate({"http": request_})


@pytest.mark.parametrize(
    ("where", "problem"),
    [("url: http://h/{key}", None), ("url: http://h/{id}", "unknown template variable `{id}`")],
)
def test_http_templates_take_key_and_poll_urls_take_id(
    tmp_path: Path, where: str, problem: str | None
) -> None:
    """`{key}` is a variable of every http template and `{id}` of the `poll` URLs only."""
    file = tmp_path / "pipeline.yaml"
    file.write_text(f"""
sensors: {{landing: {{type: directory, path: ./landing}}}}
datasets: {{ready: {{sensor: landing, key: "{{dt}}.csv"}}}}
rules:
  report:
    when: {{any: [ready], by: [dt]}}
    run:
      http:
        {where}
        poll:
          id: jobid
          url: "http://h/jobs/{{id}}?dt={{dt}}"
          state: state
          success: [FINISHED]
          failure: [FAILED]
          cancel: {{url: "http://h/jobs/{{id}}/cancel?key={{key}}"}}
""")
    problems = [p.message for p in check_file(file, environ={})]
    assert problems == ([problem] if problem else [])


@pytest.mark.parametrize(
    ("seconds", "text"), [(2, "timed out after 2s"), (0.5, "timed out after 500ms")]
)
def test_timeout_detail(seconds: float, text: str) -> None:
    """Timed-out attempts say how long they were given, as a duration people write."""
    assert timeout_detail(seconds) == text
