"""Environments: overlays of one pipeline file, and the check that a store keeps its own."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from eventflow.cli import main
from eventflow.config.loader import load_pipeline
from eventflow.environments import WrongEnvironment, check_identity, new_identity
from eventflow.errors import ConfigError
from eventflow.runtime import Runtime
from eventflow.types import PluginEnv
from eventflow_sensors.kafka.sensor import KafkaSensor
from eventflow_sensors.mqtt.sensor import MqttSensor

FILE = """
name: shop
state: sqlite:///prod.db
sensors:
  landing: {type: directory, path: "${LANDING}"}
datasets:
  orders: {sensor: landing, key: "orders/{dt}.csv"}
rules:
  daily: {when: {all: [orders]}, run: {command: [echo, "{dt}"]}}
publish:
  - {type: file, path: out/prod.jsonl}
environments:
  staging:
    description: the test bed
    state: sqlite:///staging.db
    values: {LANDING: ./staging-landing}
    publish:
      - {type: file, path: out/staging.jsonl}
  tiny:
    sensors:
      landing: {include: ["*.csv"]}
"""


@pytest.fixture
def pipeline_file(tmp_path: Path) -> Path:
    for d in ("landing", "staging-landing"):
        (tmp_path / d).mkdir()
    path = tmp_path / "p.yaml"
    path.write_text(FILE)
    return path


def test_an_environment_overlays_state_values_sensors_and_publishers(pipeline_file: Path) -> None:
    """`--env staging` takes its state, its `${NAME}` values and its publishers; the
    default environment the file's."""
    prod = load_pipeline(pipeline_file, environ={"LANDING": "./landing"})
    staging = load_pipeline(pipeline_file, environ={"LANDING": "./landing"}, env="staging")
    assert (prod.environment, prod.state_dsn) == ("default", "sqlite:///prod.db")
    assert (staging.environment, staging.state_dsn) == ("staging", "sqlite:///staging.db")
    assert str(staging.sensors["landing"].config.path).endswith("staging-landing")
    assert [p.config.path for p in staging.publishers] != [p.config.path for p in prod.publishers]
    tiny = load_pipeline(pipeline_file, environ={"LANDING": "./landing"}, env="tiny")
    assert tuple(tiny.sensors["landing"].config.include) == ("*.csv",)


def test_the_environment_variable_selects_the_environment(pipeline_file: Path) -> None:
    """EVENTFLOW_ENV names the environment when none is given."""
    p = load_pipeline(pipeline_file, environ={"LANDING": "x", "EVENTFLOW_ENV": "staging"})
    assert p.environment == "staging"


def test_an_unknown_environment_is_reported_with_the_line_and_the_names(
    pipeline_file: Path,
) -> None:
    """A misspelt --env names the file, the line of `environments:` and the close name."""
    with pytest.raises(ConfigError) as caught:
        load_pipeline(pipeline_file, environ={"LANDING": "x"}, env="stagin")
    text = str(caught.value.problems[0])
    assert f"{pipeline_file}:12:" in text
    assert "did you mean `staging`?" in text


def test_an_overlay_error_is_reported_at_the_overlay_line(pipeline_file: Path) -> None:
    """A bad value in an environment's sensor overlay points at the overlay's line."""
    pipeline_file.write_text(FILE.replace('include: ["*.csv"]', "include: 5"))
    with pytest.raises(ConfigError) as caught:
        load_pipeline(pipeline_file, environ={"LANDING": "x"}, env="tiny")
    assert f"{pipeline_file}:21:" in str(caught.value.problems[0])


def test_validate_checks_every_environment(pipeline_file: Path) -> None:
    """`eventflow validate` finds a problem that only one environment has."""
    pipeline_file.write_text(FILE.replace('include: ["*.csv"]', "include: 5"))
    result = CliRunner().invoke(main, ["validate", str(pipeline_file)], env={"LANDING": "x"})
    assert result.exit_code == 2
    assert ":21:" in result.output
    ok = CliRunner().invoke(
        main, ["validate", str(pipeline_file), "--env", "staging"], env={"LANDING": "x"}
    )
    assert ok.exit_code == 0, ok.output
    assert "environments: staging" in ok.output


def test_a_store_of_another_environment_is_refused_naming_both() -> None:
    """A staging start on production's store fails with both environment names."""
    identity = new_identity("production", "shop", datetime(2024, 1, 1, tzinfo=UTC))
    check_identity(identity, "production", "state store x")
    with pytest.raises(WrongEnvironment) as caught:
        check_identity(identity, "staging", "state store x")
    message = str(caught.value)
    assert "`production`" in message
    assert "`staging`" in message


def test_a_shared_systems_default_names_differ_per_environment(tmp_path: Path) -> None:
    """The Kafka consumer group and the MQTT client id a sensor takes by default hold the
    environment when it is not `default`: staging never joins production's group or takes
    over its broker session; an explicit name stays as written."""
    kafka = {"type": "kafka", "bootstrap_servers": "127.0.0.1:9092", "topic": "t"}
    mqtt = {"type": "mqtt", "host": "127.0.0.1", "topic": "a/#"}
    prod, staging = PluginEnv("shop", tmp_path), PluginEnv("shop", tmp_path, "staging")
    assert KafkaSensor("stream", kafka, prod).group_id == "eventflow.shop.stream"
    assert KafkaSensor("stream", kafka, staging).group_id == "eventflow.shop.stream.staging"
    named = {**kafka, "group_id": "mine"}
    assert KafkaSensor("stream", named, staging).group_id == "mine"
    assert MqttSensor("plant", mqtt, prod).client_id == "eventflow-shop-plant"
    assert MqttSensor("plant", mqtt, staging).client_id != "eventflow-shop-plant"
    assert "staging" in MqttSensor("plant", mqtt, staging).client_id


def test_the_runtime_gives_plugins_the_environment(pipeline_file: Path) -> None:
    runtime = Runtime(load_pipeline(pipeline_file, {"LANDING": "./landing"}, env="staging"))
    assert runtime.env.environment == "staging"
