"""Loading pipeline files: what loads, and the message (file, line, hint) for each mistake."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from eventflow import registry
from eventflow.config.loader import check_file, load_pipeline
from eventflow.config.models import PublisherConfig, SensorConfig
from eventflow.errors import ConfigError, ConfigProblem
from eventflow.pipeline import PRODUCED_SENSOR_PREFIX


class FakeSensor:
    class config_model(SensorConfig):
        path: str = "."
        interval: int = 1


class FakePublisher:
    config_model = PublisherConfig


class FakeTask:
    class config_model(BaseModel):
        model_config = ConfigDict(extra="forbid")
        fake: list[str]
        cwd: str | None = None


class OtherTask:
    class config_model(BaseModel):
        model_config = ConfigDict(extra="forbid")
        other: str


@pytest.fixture(autouse=True)
def fake_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh registries holding fake plugins, restored after each test."""
    for attr, kind in (("sensors", "sensor"), ("publishers", "publisher"), ("tasks", "task")):
        monkeypatch.setattr(registry, attr, registry.Registry(kind))
    registry.sensors.register("fake", FakeSensor)
    registry.publishers.register("fakepub", FakePublisher)
    registry.tasks.register("fake", FakeTask)
    registry.tasks.register("other", OtherTask)


Write = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    def write(text: str, name: str = "pipeline.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


def problems(path: Path, environ: Mapping[str, str] | None = None) -> list[ConfigProblem]:
    return check_file(path, environ or {})


def only(path: Path, environ: Mapping[str, str] | None = None) -> ConfigProblem:
    found = problems(path, environ)
    assert len(found) == 1, found
    return found[0]


def hint(problem: ConfigProblem) -> str:
    assert problem.hint is not None, problem
    return problem.hint


def line_of(path: Path, needle: str, nth: int = 1) -> int:
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    return hits[nth - 1]


HEAD = """
sensors:
  landing: {type: fake, path: ./landing}
datasets:
  orders: {sensor: landing, key: "orders/dt={dt}/hr={hr}/_SUCCESS"}
  inventory: {sensor: landing, partition: {dt: payload.dt, hr: payload.hr}}
"""


def pipeline(rules: str, head: str = HEAD) -> str:
    return (
        textwrap.dedent(head).lstrip("\n")
        + "rules:\n"
        + textwrap.indent(textwrap.dedent(rules).lstrip("\n"), "  ")
    )


VALID_RULE = """
hourly:
  when: {all: [orders, inventory], within: 2h}
  run: {fake: [report, "--dt={dt}", "--hr={hr}", "{run_id}"], retries: 2}
  produces: report
"""


# --- what loads ------------------------------------------------------------------------


def test_valid_file_compiles_to_a_pipeline(write: Write) -> None:
    """A valid file gives sensors, datasets, rules and publishers with their defaults filled."""
    path = write(
        pipeline(VALID_RULE + "daily:\n  when: {any: [report], by: [dt]}\n  run: {other: x}\n")
        + "publish:\n  - {type: fakepub}\n  - {type: fakepub, types: [eventflow.run.*]}\n",
        name="orders.yaml",
    )
    p = load_pipeline(path, environ={})
    assert (p.name, p.file, p.base_dir) == ("orders", path.resolve(), path.resolve().parent)
    assert p.state_dsn == "sqlite:///.eventflow/state.db"
    assert p.sensors["landing"].config.path == "./landing"
    assert p.sensors["landing"].line == 2
    hourly = p.rules["hourly"]
    assert hourly.spec.by == ("dt", "hr")
    assert hourly.spec.within == timedelta(hours=2)
    assert (hourly.task_type, hourly.task_plugin, hourly.max_attempts) == ("fake", FakeTask, 3)
    assert hourly.task_config.fake[1] == "--dt={dt}"
    assert p.rules["daily"].spec.mode == "any"
    report = p.datasets["report"]
    assert (report.sensor, report.variables) == (PRODUCED_SENSOR_PREFIX + "hourly", ("dt", "hr"))
    assert [(x.name, x.types) for x in p.publishers] == [
        ("fakepub", ("eventflow.*",)),
        ("fakepub-2", ("eventflow.run.*",)),
    ]


def test_default_by_is_the_variables_every_input_defines(write: Write) -> None:
    """Without `by`, a rule joins on the variables all its inputs define, in the first's order."""
    head = HEAD + '  daily: {sensor: landing, key: "daily/{region}/{dt}"}\n'
    rules = """
    a: {when: {all: [orders, daily]}, run: {fake: [x]}}
    b: {when: {all: [daily, orders]}, run: {fake: [x]}}
    c: {when: {all: [orders, inventory], by: []}, run: {fake: [x]}}
    """
    p = load_pipeline(write(pipeline(rules, head)), environ={})
    assert [p.rules[r].spec.by for r in "abc"] == [("dt",), ("dt",), ()]


def test_a_declared_dataset_may_also_be_produced(write: Write) -> None:
    """A dataset both declared and produced keeps its declared sensor and variables."""
    rules = "r: {when: {all: [orders]}, run: {fake: [x]}, produces: inventory}\n"
    p = load_pipeline(write(pipeline(rules)), environ={})
    assert (p.datasets["inventory"].sensor, p.datasets["inventory"].variables) == (
        "landing",
        ("dt", "hr"),
    )


def test_environment_variables_defaults_and_escapes_are_interpolated(write: Write) -> None:
    """`${NAME}` takes the environment, `${NAME:-x}` falls back to x, `$${` stays literal."""
    rule = 'r: {when: {all: [orders], within: "${WINDOW:-90m}"}, run: {fake: ["${TOKEN}"]}}'
    path = write(pipeline(rule + "\n") + 'name: "$${NAME}"\n')
    p = load_pipeline(path, environ={"TOKEN": "t0ken"})
    assert p.rules["r"].spec.within == timedelta(minutes=90)
    assert p.rules["r"].task_config.fake == ["t0ken"]
    assert p.name == "${NAME}"


def test_anchors_and_merge_keys_are_supported(write: Write) -> None:
    """YAML anchors, aliases and `<<` merges load like PyYAML loads them."""
    rules = """
    a: {when: {all: [orders]}, run: &run {fake: [x], retries: 4}}
    b: {when: {all: [orders]}, run: {<<: *run, retries: 1}}
    """
    p = load_pipeline(write(pipeline(rules)), environ={})
    assert (p.rules["a"].run.retries, p.rules["b"].run.retries) == (4, 1)


def test_command_task_with_its_own_options(write: Write) -> None:
    """The real `command` task validates its argv with `cwd` and `env` beside it in `run`."""
    rules = """
    hourly:
      when: {all: [orders, inventory], within: 2h}
      run:
        command: [dbt, run, --vars, '{"dt": "{dt}", "hr": "{hr}"}', 60]
        cwd: dbt
        env: {DBT_RUN: "{run_id}"}
        retries: 3
        timeout: 30m
    """
    rule = load_pipeline(write(pipeline(rules)), environ={}).rules["hourly"]
    assert rule.task_type == "command"
    assert rule.task_config.command[3] == '{"dt": "{dt}", "hr": "{hr}"}'
    assert (rule.task_config.cwd, rule.run.timeout) == ("dbt", timedelta(minutes=30))


REALISTIC = """
name: lake
sensors:
  landing:
    type: directory
    path: ./landing
    include: ["**/*.csv", "**/_SUCCESS"]
    ready: {stable_for: 2s}
datasets:
  orders: {sensor: landing, key: "orders/dt={dt}/hr={hr}/_SUCCESS"}
  inventory: {sensor: landing, key: "inventory/dt={dt}/hr={hr}/inventory.csv"}
rules:
  hourly_report:
    when: {all: [orders, inventory], by: [dt, hr], within: 2h}
    run:
      command: [dbt, run, --select, report, --vars, '{"dt": "{dt}", "hr": "{hr}"}']
      retries: 3
      timeout: 30m
    produces: report
  announce:
    when: {any: [report]}
    run: {command: ["${NOTIFY:-echo}", "report {dt}/{hr} ready", "{partition}"]}
publish:
  - {type: file, path: ./out/events.jsonl}
  - {type: file, path: ./out/runs.jsonl, types: [eventflow.run.*]}
"""


def test_realistic_file_with_the_installed_plugins(write: Write) -> None:
    """A file using the real directory sensor, command task and file publisher loads."""
    p = load_pipeline(write(REALISTIC), environ={})
    assert (p.name, p.sensors["landing"].type) == ("lake", "directory")
    assert p.sensors["landing"].config.ready.stable_for == timedelta(seconds=2)
    assert p.rules["hourly_report"].task_type == "command"
    assert p.rules["announce"].spec.by == ("dt", "hr")
    assert p.rules["announce"].task_config.command[0] == "echo"
    assert [x.name for x in p.publishers] == ["file", "file-2"]
    assert p.datasets_by_sensor["rules.hourly_report"][0].name == "report"


def test_realistic_file_reports_plugin_option_errors(write: Write) -> None:
    """Options of real plugins are reported at their lines with the plugin's own hints."""
    text = REALISTIC.replace("ready: {stable_for: 2s}", "ready: {stable_for: 2 secs}")
    text = text.replace("retries: 3", "retries: 3\n      cwd: [dbt]")
    path = write(text)
    found = problems(path)
    assert [(x.line, x.path) for x in found] == [
        (line_of(path, "stable_for"), ("sensors", "landing", "ready", "stable_for")),
        (line_of(path, "cwd:"), ("rules", "hourly_report", "run", "cwd")),
    ]


# --- the messages --------------------------------------------------------------------


def test_unknown_top_level_key_suggests_the_close_one(write: Write) -> None:
    """An unknown top-level key `rulez` is reported at its line with "did you mean `rules`"."""
    path = write(HEAD + "rulez: {}\n")
    p = only(path)
    assert (p.file, p.line, p.path) == (str(path), 6, ("rulez",))
    assert p.hint == "did you mean `rules`?"
    assert str(p) == f"{path}:6: rulez: unknown key `rulez` (hint: did you mean `rules`?)"


def test_unknown_key_in_a_rule_suggests_the_field(write: Write) -> None:
    """A misspelt `whenn` is one problem with its suggestion, not also a missing `when`."""
    path = write(pipeline("r:\n  whenn: {all: [orders]}\n  run: {fake: [x]}\n"))
    p = only(path)
    assert (p.line, p.path, p.hint) == (
        line_of(path, "whenn"),
        ("rules", "r", "whenn"),
        "did you mean `when`?",
    )


def test_dataset_naming_an_unknown_sensor(write: Write) -> None:
    """A dataset whose sensor does not exist gets the closest sensor name as a hint."""
    path = write(HEAD.replace("{sensor: landing, key", "{sensor: landin, key"))
    p = only(path)
    assert (p.line, p.path) == (4, ("datasets", "orders", "sensor"))
    assert p.message == "unknown sensor `landin`"
    assert p.hint == "did you mean `landing`?"


def test_rule_naming_an_unknown_dataset(write: Write) -> None:
    """An unknown dataset in `all` is reported at its list item with the closest name."""
    path = write(
        pipeline("r:\n  when:\n    all:\n      - orders\n      - inventry\n  run: {fake: [x]}\n")
    )
    p = only(path)
    assert (p.line, p.path) == (line_of(path, "inventry"), ("rules", "r", "when", "all", 1))
    assert p.hint == "did you mean `inventory`?"


def test_by_variable_not_defined_by_a_dataset(write: Write) -> None:
    """`by: [hour]` names the dataset lacking it and lists the variables it does define."""
    path = write(pipeline("r:\n  when: {all: [orders], by: [hour]}\n  run: {fake: [x]}\n"))
    p = only(path)
    assert (p.line, p.path) == (line_of(path, "by: [hour]"), ("rules", "r", "when", "by", 0))
    assert p.message == "`hour` is not a partition variable of dataset `orders`"
    assert "`orders` defines: dt, hr" in hint(p)


def test_cycle_through_produces(write: Write) -> None:
    """Rules that feed each other through `produces` are reported once, naming the cycle."""
    rules = """
    a: {when: {all: [orders, b_out]}, run: {fake: [x]}, produces: report}
    b: {when: {all: [report]}, run: {fake: [x]}, produces: b_out}
    """
    path = write(pipeline(rules))
    p = only(path)
    assert (p.line, p.path) == (line_of(path, "a: {"), ("rules", "a", "produces"))
    assert p.message == "rules form a cycle through `produces`: a -> report -> b -> b_out -> a"
    assert p.hint is not None


def test_bad_duration_shows_the_accepted_forms(write: Write) -> None:
    """`within: 2 hours` is reported at its line with the duration forms that work."""
    path = write(
        pipeline("r:\n  when:\n    all: [orders]\n    within: 2 hours\n  run: {fake: [x]}\n")
    )
    p = only(path)
    assert (p.line, p.path) == (line_of(path, "within"), ("rules", "r", "when", "within"))
    assert p.message == "not a duration: '2 hours'"
    assert "2h" in hint(p)
    assert "1h30m" in hint(p)


def test_unset_environment_variable(write: Write) -> None:
    """`${MISSING}` without a default is one problem at its line with how to set it."""
    path = write(HEAD.replace("{sensor: landing, key", '{sensor: "${MISSING}", key'))
    p = only(path)  # not also "unknown sensor ``"
    assert (p.line, p.path) == (4, ("datasets", "orders", "sensor"))
    assert p.message == "environment variable MISSING is not set"
    assert p.hint == "export MISSING=… or write ${MISSING:-default}"


def test_environment_values_are_never_printed(write: Write) -> None:
    """A value from the environment that fails validation is shown as its `${NAME}`."""
    path = write(pipeline('r: {when: {all: [orders], within: "${WINDOW}"}, run: {fake: [x]}}'))
    p = only(path, {"WINDOW": "hunter2-secret"})
    assert "hunter2" not in str(p)
    assert "${WINDOW}" in p.message


def test_unknown_sensor_type(write: Write) -> None:
    """An unknown sensor `type` is reported at its line with the closest registered type."""
    path = write(HEAD.replace("type: fake,", "type: faek,"))
    p = only(path)
    assert (p.line, p.path) == (2, ("sensors", "landing", "type"))
    assert p.message == "unknown sensor type `faek`"
    assert p.hint == "did you mean `fake`?"


def test_sensor_options_are_validated_by_the_plugin(write: Write) -> None:
    """A sensor's own options are checked by its plugin's model, at their own line."""
    path = write(HEAD.replace("path: ./landing}", "path: ./landing,\n             intervall: 3}"))
    p = only(path)
    assert (p.line, p.path) == (3, ("sensors", "landing", "intervall"))
    assert p.hint == "did you mean `interval`?"


def test_run_without_a_task_type(write: Write) -> None:
    """A `run` with only shared options lists the task types there are."""
    path = write(pipeline("r:\n  when: {all: [orders]}\n  run: {retries: 2}\n"))
    p = only(path)
    assert (p.line, p.path, p.message) == (
        line_of(path, "run:"),
        ("rules", "r", "run"),
        "`run` names no task type",
    )
    assert "fake" in hint(p)
    assert "other" in hint(p)


def test_run_with_two_task_types(write: Write) -> None:
    """A `run` naming two task types is reported at the second with the list of types."""
    path = write(pipeline("r:\n  when: {all: [orders]}\n  run:\n    fake: [x]\n    other: y\n"))
    p = only(path)
    assert (p.line, p.path) == (line_of(path, "other: y"), ("rules", "r", "run", "other"))
    assert p.message == "`run` names 2 task types (`fake`, `other`)"
    assert "fake" in hint(p)
    assert "other" in hint(p)


def test_task_options_are_validated_by_the_task_plugin(write: Write) -> None:
    """A task's options besides its type key go to its model; a typo gets a suggestion."""
    path = write(pipeline("r:\n  when: {all: [orders]}\n  run:\n    fake: [x]\n    cdw: /tmp\n"))
    p = only(path)
    assert (p.line, p.path, p.hint) == (
        line_of(path, "cdw"),
        ("rules", "r", "run", "cdw"),
        "did you mean `cwd`?",
    )


def test_unknown_template_variable(write: Write) -> None:
    """A `{foo}` in a task that is neither a join variable nor a run variable is reported."""
    path = write(
        pipeline("r:\n  when: {all: [orders]}\n  run:\n    fake:\n      - x\n      - '{foo}'\n")
    )
    p = only(path)
    assert (p.line, p.path) == (line_of(path, "{foo}"), ("rules", "r", "run", "fake", 1))
    assert p.message == "unknown template variable `{foo}`"
    assert "{dt}, {hr}, {run_id}, {rule}, {attempt}, {partition}" in hint(p)


def test_every_problem_is_reported_in_line_order(write: Write) -> None:
    """Problems from every stage are reported together, sorted by line."""
    path = write(
        """
        sensors:
          landing: {type: faek}
        datasets:
          orders: {sensor: nowhere, key: "o/{dt}"}
        rules:
          r:
            when: {all: [orders, nothing], within: soon}
            run: {fake: ["{nope}"]}
        publish: {}
        """
    )
    found = problems(path)
    assert [(p.line, p.path[-1]) for p in found] == [
        (2, "type"),
        (4, "sensor"),
        (7, 1),
        (7, "within"),  # on one line, in the order of the columns
        (9, "publish"),
    ]
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, environ={})
    assert str(info.value).splitlines() == [str(p) for p in found]


def test_yaml_syntax_error_has_its_line(write: Write) -> None:
    """A YAML syntax error is one problem at the line where the parser stopped."""
    path = write(HEAD + "rules:\n  r:\n    when: {all: [orders]\n    run: {fake: [x]}\n")
    p = only(path)
    assert p.line == 9
    assert p.message.startswith("YAML syntax error:")
    assert p.hint is not None


def test_duplicate_key(write: Write) -> None:
    """A key written twice in one mapping is an error at the second, naming the first."""
    path = write(HEAD + "  orders: {sensor: landing}\n")
    p = only(path)
    assert (p.line, p.path) == (6, ("datasets", "orders"))
    assert p.message == "duplicate key `orders` (first at line 4)"
    assert "last" in hint(p)


def test_on_instead_of_by(write: Write) -> None:
    """`on:` (a YAML boolean) under `when` is reported with "write `by:`"."""
    path = write(pipeline("r:\n  when: {all: [orders], on: [dt]}\n  run: {fake: [x]}\n"))
    p = only(path)
    assert (p.line, p.path) == (line_of(path, "on: [dt]"), ("rules", "r", "when", "on"))
    assert "write `by:`" in hint(p)


def test_top_level_must_be_a_mapping(write: Write) -> None:
    """A file that is a list, or empty, is one problem saying what the top level must be."""
    assert only(write("- a\n- b\n")).message.startswith("the top level must be a mapping")
    assert only(write("# nothing\n")).message == "the file is empty"


def test_missing_file(tmp_path: Path) -> None:
    """A path that does not exist is a problem, not a traceback."""
    p = only(tmp_path / "nope.yaml")
    assert (p.line, p.message) == (None, "no such file")


def test_publishers_with_the_same_name(write: Write) -> None:
    """Two publishers with one name are an error: the name keys the outbox."""
    path = write(
        HEAD + "publish:\n  - {type: fakepub, name: out}\n  - {type: fakepub, name: out}\n"
    )
    p = only(path)
    assert (p.line, p.path) == (8, ("publish", 1, "name"))


def test_bad_expressions_and_pattern_names(write: Write) -> None:
    """A JMESPath syntax error and a `{var}` that is not a name are reported at their keys."""
    path = write(
        """
        sensors: {s: {type: fake}}
        datasets:
          a: {sensor: s, key: "x/{dt-1}/y"}
          b: {sensor: s, where: "payload.["}
        """
    )
    a, b = problems(path)
    assert (a.line, a.path, a.message) == (
        3,
        ("datasets", "a", "key"),
        "`{dt-1}` in the key pattern is not a variable name",
    )
    assert (b.line, b.path) == (4, ("datasets", "b", "where"))
    assert b.message.startswith("`payload.[` is not a JMESPath expression")


def test_a_produced_declared_dataset_needs_its_variables_in_by(write: Write) -> None:
    """A rule producing a declared dataset must join on every variable that dataset defines."""
    rules = "r: {when: {all: [orders], by: [dt]}, run: {fake: [x]}, produces: inventory}\n"
    path = write(pipeline(rules))
    p = only(path)
    assert (p.line, p.path) == (line_of(path, "r: {"), ("rules", "r", "produces"))
    assert p.message == (
        "`inventory` defines dt, hr but rule `r` joins on dt: its runs cannot announce hr"
    )


def test_reserved_names_are_rejected(write: Write) -> None:
    """Users cannot write datasets on the produced pseudo-sensors or name sensors like them."""
    path = write(
        """
        sensors: {rules.x: {type: fake}}
        datasets: {a: {sensor: rules.r}}
        """
    )
    first, second = problems(path)
    assert first.path == ("sensors", "rules.x")
    assert "reserved" in first.message
    assert second.path == ("datasets", "a", "sensor")
    assert "produces: a" in hint(second)


def test_every_bad_name_is_reported_at_its_own_line(write: Write) -> None:
    """Names with characters other than letters, digits, '_', '-', '.' are each reported
    once, at the line of the name."""
    path = write(
        """
        sensors:
          "a b": {type: fake}
          ok: {type: fake}
          "c/d": {type: fake}
        """
    )
    found = [p for p in problems(path) if "characters other than" in p.message]
    assert [(p.line, p.path) for p in found] == [
        (line_of(path, '"a b"'), ("sensors", "a b")),
        (line_of(path, '"c/d"'), ("sensors", "c/d")),
    ]
