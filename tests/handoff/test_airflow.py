"""The real ``eventflow run`` hands fires to a real Apache Airflow 3 (``airflow standalone``):
one DAG run per fire with the partition and a payload field in its conf, success only after
the DAG run's, a failure re-run in the same DAG run, a timeout that stops the DAG run's
tasks, a SIGKILL that does not start a second DAG run, and refused credentials or an unknown
DAG as one clear line."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.harness import Project, wait_until
from tests.services.airflow import DAGS, JWT_SECONDS, ROOT, Airflow
from tests.services.kafka import KafkaBroker, produce

pytestmark = [pytest.mark.handoff, pytest.mark.timeout(900)]

PY = sys.executable
PIPELINE = """
name: {name}
engine: {{poll_interval: 100ms}}
sensors:
  stream: {{type: kafka, bootstrap_servers: {bootstrap}, topic: {topic}, consumer_group: false}}
datasets:
  batches: {{sensor: stream, partition: {{dt: payload.dt}}}}
rules:
  report:
    when: {{any: [batches]}}
    params:
      batch_id: batches.payload.batch_id
      sleep: "batches.payload.sleep || '0'"
      fail: "batches.payload.fail || ''"
    run:
      airflow:
        url: {url}
        dag: {dag}
        conf: {{dt: "{{dt}}", batch: "{{batch_id}}", sleep: "{{sleep}}", fail_first: "{{fail}}"}}
        auth: {{username_env: AIRFLOW_USER, password_env: {password_env}}}
        poll: 500ms
        poll_max: 2s
      retries: {retries}
      backoff: {{initial: 100ms, jitter: false}}
      timeout: {timeout}
    produces: report
  after:
    when: {{any: [report]}}
    run: {{command: [{python}, -c, "open('after', 'a').write('x')"]}}
"""


def start(
    root: Path,
    kafka: KafkaBroker,
    airflow: Airflow,
    messages: list[dict[str, Any]],
    *,
    password: str | None = None,
    **options: Any,
) -> Project:
    """A pipeline named after the test whose ``report`` rule triggers the DAG, its messages
    on a fresh topic, and ``eventflow run`` started with the Airflow user in its environment."""
    topic = kafka.topic(1)
    settings = {"dag": "record", "retries": 0, "timeout": "5m", "password_env": "AIRFLOW_PASSWORD"}
    settings |= options
    name = re.sub(r"[^a-z0-9]+", "-", root.name.lower()).strip("-")
    text = PIPELINE.format(
        name=name, bootstrap=kafka.bootstrap, topic=topic, url=airflow.url, python=PY, **settings
    )
    project = Project(root, text)
    payloads = [(0, json.dumps(m).encode()) for m in messages]
    asyncio.run(produce(kafka.bootstrap, topic, payloads))
    project.start(AIRFLOW_USER=airflow.username, AIRFLOW_PASSWORD=password or airflow.password)
    return project


def report_run(project: Project, status: str, timeout: float = 300) -> dict[str, Any]:
    """The ``report`` rule's run once it has ``status``."""

    def find() -> dict[str, Any] | None:
        runs = [r for r in project.runs() if r["rule"] == "report" and r["status"] == status]
        return runs[0] if runs else None

    found: dict[str, Any] = wait_until(find, timeout=timeout, interval=0.5)
    return found


def downstream_id(run: dict[str, Any]) -> str:
    return str(run["notes"]["downstream"]["id"])


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_fire_runs_the_dag_once_and_succeeds_only_after_it(
    tmp_path: Path, kafka_broker: KafkaBroker, airflow: Airflow
) -> None:
    """A fire creates one DAG run whose conf holds the partition, a payload field (a param)
    and eventflow's run id; eventflow's run succeeds after the DAG run did, and the produced
    dataset's rule fires only then."""
    p = start(tmp_path, kafka_broker, airflow, [{"dt": "2024-01-01", "batch_id": "b-42"}])
    run = report_run(p, "succeeded")
    wait_until(lambda: (tmp_path / "after").exists(), timeout=60)
    assert p.stop() == 0

    key = downstream_id(run)
    store_id = p.cli_json("versions")["store"]["store_id"]
    assert key == run["notes"]["downstream"]["key"]
    assert key.endswith(f"__{store_id[:12]}__{run['run_id']}")  # two stores never collide
    [dag_run] = airflow.dag_runs("record", prefix=key)
    assert dag_run["state"] == "success"
    assert run["output"]["downstream"] == {
        "system": "airflow",
        "id": key,
        "url": f"{airflow.url}/dags/record/runs/{key}",
        "state": "success",
        "outcome": "succeeded",
    }
    [start_line, end_line] = airflow.received(key)
    conf = start_line["conf"]
    assert (conf["dt"], conf["batch"]) == ("2024-01-01", "b-42")
    assert conf["eventflow"]["run_id"] == run["run_id"]
    assert conf["eventflow"]["partition"] == {"dt": "2024-01-01"}
    assert conf["eventflow"]["params"]["batch_id"] == "b-42"
    assert [i["dataset"] for i in conf["eventflow"]["inputs"]] == ["batches"]
    assert start_line["logical_date"] is None
    assert end_line["phase"] == "end"

    finished = when(dag_run["end_date"])
    assert when(run["finished_at"]) >= finished
    [after] = [r for r in p.runs() if r["rule"] == "after"]
    assert when(after["created_at"]) >= finished
    _report_overhead(airflow, run, dag_run)


def _report_overhead(airflow: Airflow, run: dict[str, Any], dag_run: dict[str, Any]) -> None:
    """Print what the hand-off costs (fire -> DAG run created, DAG run done -> run done) and
    what Airflow took to install (or find installed) and to start."""
    created = (when(dag_run["queued_at"]) - when(run["created_at"])).total_seconds()
    done = (when(run["finished_at"]) - when(dag_run["end_date"])).total_seconds()
    print(
        f"\nairflow hand-off: fire -> DAG run queued {created:.2f}s, DAG run end -> run done"
        f" {done:.2f}s; airflow install {airflow.install_seconds:.1f}s,"
        f" start {airflow.start_seconds:.1f}s"
    )


def test_a_failed_dag_run_fails_the_attempt_and_the_retry_clears_the_same_run(
    tmp_path: Path, kafka_broker: KafkaBroker, airflow: Airflow
) -> None:
    """The DAG run's failure fails eventflow's attempt with Airflow's failed task named; the
    retry clears that DAG run, which succeeds on its second try: one DAG run, two tries."""
    message = {"dt": "2024-01-02", "batch_id": "b-7", "fail": "yes"}
    p = start(tmp_path, kafka_broker, airflow, [message], retries=1)
    run = report_run(p, "succeeded")
    assert p.stop() == 0

    key = downstream_id(run)
    assert run["attempt"] == 2
    [dag_run] = airflow.dag_runs("record", prefix=key)
    assert dag_run["state"] == "success"
    tries = [line["try"] for line in airflow.received(key) if line["phase"] == "start"]
    assert tries == [1, 2]
    [retrying] = [e for e in p.log_events() if e["event"] == "run_retrying"]
    assert f"airflow run {key} ended failed: failed tasks: receive" in retrying["error"]
    assert [e["event"] for e in p.log_events() if e["event"].startswith("handoff_")] == [
        "handoff_submitted",
        "handoff_finished",
        "handoff_rerun",
        "handoff_finished",
    ]


def test_the_run_timeout_stops_the_dag_run_and_its_task(
    tmp_path: Path, kafka_broker: KafkaBroker, airflow: Airflow
) -> None:
    """eventflow's run.timeout sets the DAG run to failed in Airflow and its running task is
    stopped (its process ends, it never finishes); eventflow's run fails as timed out."""
    message = {"dt": "2024-01-03", "batch_id": "b-9", "sleep": 600}
    p = start(tmp_path, kafka_broker, airflow, [message], timeout="60s")
    running = report_run(p, "running")
    key = wait_until(lambda: _noted(p), timeout=120)
    started = wait_until(lambda: [x for x in airflow.received(key) if x["phase"] == "start"], 120)
    run = report_run(p, "failed", timeout=120)
    assert p.stop() == 0

    assert run["run_id"] == running["run_id"]
    assert "timed out after 1m" in run["error"]
    [dag_run] = airflow.dag_runs("record", prefix=key)
    assert dag_run["state"] == "failed"
    assert airflow.task_states("record", key) == {"receive": "failed"}
    pid = started[0]["pid"]
    wait_until(lambda: not _alive(pid), timeout=60)
    assert [x["phase"] for x in airflow.received(key)] == ["start"]
    assert not (tmp_path / "after").exists()


def _noted(project: Project) -> str | None:
    """The downstream id the running ``report`` run has noted, once it has."""
    for run in project.runs():
        if run["rule"] == "report" and "downstream" in run["notes"]:
            return downstream_id(run)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_sigkill_while_the_dag_runs_adopts_it_after_the_restart(
    tmp_path: Path, kafka_broker: KafkaBroker, airflow: Airflow
) -> None:
    """eventflow killed with SIGKILL while its DAG run is in flight: after the restart there is
    still one DAG run for the fire (one try), and eventflow's run succeeds with it. The run
    lasts longer than the API token, so the restarted process also refreshes its token."""
    message = {"dt": "2024-01-04", "batch_id": "b-11", "sleep": JWT_SECONDS + 10}
    p = start(tmp_path, kafka_broker, airflow, [message])
    key = wait_until(lambda: _noted(p), timeout=120)
    p.kill()
    p.start(AIRFLOW_USER=airflow.username, AIRFLOW_PASSWORD=airflow.password)
    run = report_run(p, "succeeded")
    assert p.stop() == 0

    assert downstream_id(run) == key
    assert len(airflow.dag_runs("record", prefix=key.rsplit("__", 1)[0])) == 1
    assert [x["try"] for x in airflow.received(key) if x["phase"] == "start"] == [1]
    events = [e["event"] for e in p.log_events()]
    assert "handoff_adopted" in events
    assert events.count("handoff_submitted") == 1


@pytest.mark.parametrize(
    ("options", "password", "expected"),
    [
        (
            {},
            "not-the-password",
            "refused the credentials in AIRFLOW_USER/AIRFLOW_PASSWORD (HTTP 401: Invalid"
            " credentials)",
        ),
        ({"dag": "no_such_dag"}, None, "HTTP 404: Dag with dag_id: 'no_such_dag' not found"),
        ({"password_env": "NOT_SET_ANYWHERE"}, None, "NOT_SET_ANYWHERE (auth.password_env) is not"),
    ],
    ids=["bad-password", "unknown-dag", "unset-variable"],
)
def test_refused_credentials_or_an_unknown_dag_fail_once_with_one_clear_line(
    tmp_path: Path,
    kafka_broker: KafkaBroker,
    airflow: Airflow,
    options: dict[str, Any],
    password: str | None,
    expected: str,
) -> None:
    """Refused credentials, an unknown DAG or an unset credential variable fail the attempt
    at once (not retried) with a message saying what is wrong; no traceback, no secret in the
    log, no DAG run."""
    p = start(
        tmp_path,
        kafka_broker,
        airflow,
        [{"dt": "2024-01-05", "batch_id": "b"}],
        password=password,
        **options,
    )
    began = time.monotonic()
    run = report_run(p, "failed", timeout=120)
    assert p.stop() == 0

    assert time.monotonic() - began < 60
    assert run["attempt"] == 1
    assert expected in run["error"]
    assert "\n" not in run["error"]
    log = "".join(path.read_text() for path in p.logs)
    assert "Traceback" not in log
    assert airflow.password not in log
    assert "not-the-password" not in log
    assert not [e for e in p.log_events() if e["event"] == "handoff_retried"]
    name = re.sub(r"[^a-z0-9]+", "-", tmp_path.name.lower()).strip("-")
    assert airflow.dag_runs("record", prefix=f"eventflow__{name}__") == []


def test_the_howto_pipeline_hands_a_batch_to_the_documented_dag(
    tmp_path: Path, kafka_broker: KafkaBroker, airflow: Airflow
) -> None:
    """docs/howto/airflow.md as written: its DAG is the one this Airflow runs, and its
    pipeline, with the environment it names, hands a Kafka message's batch to that DAG."""
    page = (ROOT / "docs/howto/airflow.md").read_text()
    [pipeline] = [
        block
        for block in re.findall(r"```yaml\n(.*?)```", page, re.S)
        if "is run by tests/handoff/test_airflow.py" in block
    ]
    [dag_code] = re.findall(r"```python\n(.*?)```", page, re.S)
    assert dag_code == (DAGS / "report.py").read_text()
    topic = kafka_broker.topic(1)
    p = Project(tmp_path, pipeline.replace("topic: batches", f"topic: {topic}"))
    message = {"dt": "2024-01-06", "batch_id": "b-3"}
    asyncio.run(produce(kafka_broker.bootstrap, topic, [(0, json.dumps(message).encode())]))
    p.start(
        KAFKA=kafka_broker.bootstrap,
        AIRFLOW_URL=airflow.url,
        AIRFLOW_USER=airflow.username,
        AIRFLOW_PASSWORD=airflow.password,
    )
    run = report_run(p, "succeeded")
    assert p.stop() == 0

    [dag_run] = airflow.dag_runs("report", prefix="eventflow__reports__")
    assert dag_run["dag_run_id"] == downstream_id(run)
    assert dag_run["state"] == "success"
    assert (dag_run["conf"]["dt"], dag_run["conf"]["batch"]) == ("2024-01-06", "b-3")
