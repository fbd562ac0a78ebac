"""The ``airflow`` task's config: registered by entry point, credentials named one way only,
eventflow's own ``conf`` key kept for eventflow, and what ``eventflow validate`` says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from eventflow.config.loader import check_file
from eventflow.registry import tasks
from eventflow.tasks.airflow import AirflowConfig, AirflowTask
from eventflow.types import PluginEnv, TaskRunner

USER = {"username_env": "AIRFLOW_USER", "password_env": "AIRFLOW_PASSWORD"}


def config(**options: Any) -> dict[str, Any]:
    return {"airflow": {"url": "http://127.0.0.1:8080/", "dag": "report", "auth": USER} | options}


def test_the_airflow_task_is_registered_and_follows_the_protocol() -> None:
    """``airflow`` resolves to its runner, which takes a raw mapping and is a TaskRunner."""
    assert tasks.get("airflow") is AirflowTask
    runner = AirflowTask(config(), PluginEnv("test", Path("/tmp")))
    assert isinstance(runner, TaskRunner)
    assert runner.config.airflow.url == "http://127.0.0.1:8080"  # the trailing / dropped


@pytest.mark.parametrize(
    ("auth", "problem"),
    [
        ({"token_env": "T", **USER}, "either `token_env` or"),
        ({"username_env": "AIRFLOW_USER"}, "give `username_env` and `password_env`"),
        ({}, "give `username_env` and `password_env`"),
    ],
)
def test_credentials_are_named_one_way(auth: dict[str, str], problem: str) -> None:
    """A token variable or a user and password variable, never both, never half."""
    with pytest.raises(ValidationError, match=problem):
        AirflowConfig.model_validate(config(auth=auth))
    assert AirflowConfig.model_validate(config(auth={"token_env": "AIRFLOW_TOKEN"}))


def test_conf_may_not_use_eventflows_own_key() -> None:
    """``conf.eventflow`` is where eventflow puts the run's facts."""
    with pytest.raises(ValidationError, match="eventflow's own key"):
        AirflowConfig.model_validate(config(conf={"eventflow": 1}))


def test_validate_names_an_unknown_template_variable_in_conf(tmp_path: Path) -> None:
    """A `{var}` in ``conf`` that the rule does not define is reported at its line."""
    file = tmp_path / "pipeline.yaml"
    file.write_text(
        "sensors:\n"
        "  landing: {type: directory, path: ./landing}\n"
        "datasets:\n"
        "  orders: {sensor: landing, key: 'orders/dt={dt}/_SUCCESS'}\n"
        "rules:\n"
        "  report:\n"
        "    when: {any: [orders]}\n"
        "    run:\n"
        "      airflow:\n"
        "        url: http://127.0.0.1:8080\n"
        "        dag: report\n"
        "        conf: {day: '{dat}'}\n"
        "        auth: {token_env: AIRFLOW_TOKEN}\n"
    )
    [problem] = check_file(file, environ={})
    assert problem.line == 12
    assert "unknown template variable `{dat}`" in problem.message
