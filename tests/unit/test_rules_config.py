"""Rule options in pipeline files: what compiles, and the file:line message for each mistake."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventflow.config.loader import check_file, load_pipeline
from eventflow.errors import ConfigProblem
from eventflow.rules import Group, Need

HEAD = """
sensors:
  landing: {type: directory, path: ./landing}
datasets:
  orders: {sensor: landing, key: "orders/dt={dt}/_SUCCESS"}
  hourly: {sensor: landing, key: "clicks/dt={dt}/hr={hr}/_SUCCESS"}
  fx_a: {sensor: landing, key: "fx/a/dt={dt}.csv"}
  fx_b: {sensor: landing, key: "fx/b/dt={dt}.csv"}
  views: {sensor: landing, key: "views/{year}/{month}/{day}/{hr}.json"}
rules:
"""


def write(tmp_path: Path, rules: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    body = textwrap.indent(textwrap.dedent(rules).lstrip("\n"), "  ")
    path.write_text(textwrap.dedent(HEAD).lstrip("\n") + body)
    return path


def problems(path: Path) -> list[ConfigProblem]:
    return check_file(path, {})


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_full_rule_compiles_into_the_core_spec(tmp_path: Path) -> None:
    """Nested conditions, counts, filters, quiet, deadlines and schedules compile."""
    path = write(
        tmp_path,
        """
        daily:
          when:
            all:
              - orders
              - {dataset: hourly, count: 24, where: "payload != `null`"}
              - {any: [fx_a, fx_b]}
            by: [dt]
          where: "key != 'skip'"
          quiet: 1m
          late: event
          expect_by: "{dt} 06:00 + 1d"
          timezone: Europe/Berlin
          expect: {every: 1d, partition: {dt: "%Y-%m-%d"}, start: "2024-06-01"}
          on_deadline: run_partial
          run: {command: ["true"]}
        """,
    )
    rule = load_pipeline(path).rules["daily"]
    spec = rule.spec
    assert spec.condition == Group(
        "all", (Need("orders"), Need("hourly", 24), Group("any", (Need("fx_a"), Need("fx_b"))))
    )
    assert spec.datasets == ("orders", "hourly", "fx_a", "fx_b")
    assert spec.quiet == timedelta(minutes=1)
    assert spec.late == "event"
    assert spec.on_deadline == "run_partial"
    assert spec.deadline is not None
    assert spec.deadline.at({"dt": "2024-07-01"}) == datetime(2024, 7, 2, 4, tzinfo=UTC)
    assert set(rule.filters) == {"orders", "hourly", "fx_a", "fx_b"}
    assert rule.schedule is not None
    assert rule.schedule_start == datetime(2024, 5, 31, 22, tzinfo=UTC)


def test_batch_rule_compiles_with_its_own_key(tmp_path: Path) -> None:
    """A batch rule's partition key is `batch.by`."""
    path = write(
        tmp_path,
        """
        load:
          when: {any: [hourly]}
          batch: {max_events: 100, max_wait: 5m, by: [dt]}
          run: {command: ["true", "{dt}"]}
        """,
    )
    spec = load_pipeline(path).rules["load"].spec
    assert spec.by == ("dt",)
    assert spec.batch is not None
    assert spec.batch.max_events == 100


def test_vars_map_a_differently_keyed_dataset(tmp_path: Path) -> None:
    """A dataset without the rule's variables joins through a `vars` template."""
    path = write(
        tmp_path,
        """
        daily:
          when:
            all: [orders, {dataset: views, count: 24, vars: {dt: "{year}-{month}-{day}"}}]
            by: [dt]
          run: {command: ["true", "{dt}"]}
        """,
    )
    spec = load_pipeline(path).rules["daily"].spec
    partition = {"year": "2024", "month": "01", "day": "31", "hr": "05"}
    assert spec.key_of(partition, "views") == {"dt": "2024-01-31"}


@pytest.mark.parametrize(
    ("rules", "needle", "message"),
    [
        (
            """
            r:
              when: {all: [orders, {dataset: views, vars: {dt: "{date}"}}]}
              run: {command: ["true"]}
            """,
            "when",
            "does not make a partition variable from `views`",
        ),
        (
            """
            r:
              when: {all: [orders]}
              expect_by: "{dt}T06:00Z + soon"
              run: {command: ["true"]}
            """,
            "expect_by",
            "`expect_by` is not a deadline",
        ),
        (
            """
            r:
              when: {all: [orders]}
              expect_by: "{day}T06:00Z"
              run: {command: ["true"]}
            """,
            "expect_by",
            "`expect_by` uses day",
        ),
        (
            """
            r:
              when: {all: [orders]}
              expect_by: "{dt}"
              timezone: Mars/Olympus
              run: {command: ["true"]}
            """,
            "timezone",
            "unknown timezone",
        ),
        (
            """
            r:
              when: {all: [orders]}
              expect_by: "{dt}"
              expect: {every: 1d, partition: {day: "%d"}}
              run: {command: ["true"]}
            """,
            "expect:",
            "`expect.partition` gives day",
        ),
        (
            """
            r:
              when: {all: [orders]}
              on_deadline: run_partial
              run: {command: ["true"]}
            """,
            "on_deadline",
            "`on_deadline` needs a deadline",
        ),
        (
            """
            r:
              when: {any: [orders]}
              quiet: 1m
              batch: {max_events: 10}
              run: {command: ["true"]}
            """,
            "quiet",
            "`quiet` does not apply to a batch rule",
        ),
        (
            """
            r:
              when: {all: [orders, {any: [fx_a, fx_c]}]}
              run: {command: ["true"]}
            """,
            "when",
            "unknown dataset `fx_c`",
        ),
        (
            """
            r:
              when: {all: [{dataset: orders, where: "payload.["}]}
              run: {command: ["true"]}
            """,
            "when",
            "is not a JMESPath expression",
        ),
    ],
)
def test_rule_option_mistakes_name_file_and_line(
    tmp_path: Path, rules: str, needle: str, message: str
) -> None:
    """Each mistake is one problem on the line of the option, with what is wrong."""
    path = write(tmp_path, rules)
    [problem] = problems(path)
    assert message in problem.message
    assert problem.line == line_of(path, needle)
