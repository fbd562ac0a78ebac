"""The completeness recipe for Flink's `process-time` commit trigger, against the real job.

Under `process-time` a partition's `_SUCCESS` appears before its last rows and is rewritten
at each checkpoint that adds rows. The recipe of docs/howto/flink.md joins it with the hour
announced by the Kafka sensor's watermark mode (over the event times the same job writes to
Kafka), and waits `quiet` (longer than a checkpoint interval) for the last rewrite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.harness import wait_until
from tests.flink.test_partition_commits import HOURS, ROWS_PER_HOUR, hours, project, runs
from tests.services.flink import Flink
from tests.services.kafka import KafkaBroker

pytestmark = pytest.mark.flink

RECIPE = """\
sensors:
  lake: {{type: directory, path: ./landing, include: ["**/_SUCCESS"]}}
  progress:
    type: kafka
    bootstrap_servers: {bootstrap}
    topic: {topic}
    mode: watermark
    watermark: {{time: payload.ts_ms, window: 1h, allowed_lateness: 0s}}
datasets:
  orders: {{sensor: lake, key: "dt={{dt}}/hr={{hr}}/_SUCCESS"}}
  closed:
    sensor: progress
    key: {topic}
    partition:
      dt: "strftime(payload.window_start, '%Y-%m-%d')"
      hr: "strftime(payload.window_start, '%H')"
rules:
  hourly_report:
    when: {{all: [orders, closed], by: [dt, hr]}}
    quiet: 3s
    late: event
    run:
      command: [sh, ./report.sh, "{{dt}}", "{{hr}}", "{{run_id}}"]
      env: {{LAKE: "{landing}"}}
"""


def test_process_time_recipe_fires_each_closed_hour_once_on_all_its_rows(
    flink: Flink, tmp_path: Path, kafka_broker: KafkaBroker, kafka_topic: Any
) -> None:
    """With the recipe, each hour the watermark has closed runs once and sees all its rows,
    although its `_SUCCESS` came early and was rewritten; the newest hour, which no later
    event closes, does not run."""
    topic = kafka_topic()
    proj = project(tmp_path)
    proj.file.write_text(
        "state: sqlite:///state.db\n"
        + RECIPE.format(bootstrap=kafka_broker.bootstrap, topic=topic, landing=proj.landing)
    )
    proj.start()
    wait_until(proj.started, 60)
    log = tmp_path / "flink.log"
    job = flink.start(
        "lake",
        proj.landing,
        log,
        "--trigger",
        "process-time",
        "--rows",
        str(HOURS * 60),
        "--bootstrap",
        kafka_broker.bootstrap,
        "--progress-topic",
        topic,
    )
    flink.wait(job, log)
    wait_until(lambda: len(runs(proj)) >= HOURS - 1, 30)
    wait_until(lambda: all(r["status"] == "succeeded" for r in proj.runs()), 30)
    assert proj.stop() == 0
    found = runs(proj)
    assert sorted(r.partition for r in found) == hours(HOURS - 1)
    assert [r.rows for r in found] == [ROWS_PER_HOUR] * (HOURS - 1)
