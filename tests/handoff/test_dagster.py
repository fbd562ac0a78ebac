"""The real ``eventflow run`` hands partitions to a real Dagster (``dagster dev``) through its
GraphQL API: one Dagster run per attempt, tagged, adopted after a SIGKILL, terminated at
eventflow's timeout; Dagster's refusals (answered with HTTP 200) fail the attempt in one line.

Kafka messages (tansu) announce the partitions; the jobs of ``tests/services/dagster_defs.py``
write what they received (run config, tags, partition) where the test reads it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.harness import Project, wait_until
from tests.services.dagster import DagsterServer
from tests.services.kafka import KafkaBroker

# Dagster's own start (15-60 s on a busy machine) counts against the first test's time.
pytestmark = [pytest.mark.handoff, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "dagster-token-never-logged"

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
    params: {{batch_id: batches.payload.batch_id, fail: batches.payload.fail,
              sleep: batches.payload.sleep}}
    run:
      dagster:
        url: {url}
        job: {job}
        run_config: {run_config}
        headers: {{X-Api-Token: "${{DAGSTER_TOKEN}}"}}
        poll: 200ms
        poll_max: 1s
      retries: {retries}
      backoff: {{initial: 100ms, jitter: false}}
      {timeout}
publish:
  - {{type: file, path: out/events.jsonl}}
"""
CONFIG = '{ops: {report: {config: {batch: "{batch_id}", fail: "{fail}", sleep: "{sleep}"}}}}'


@pytest.fixture(autouse=True)
def _kill_leftover_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every eventflow process (and CLI call) gets the token; none is left running."""
    monkeypatch.setenv("DAGSTER_TOKEN", TOKEN)
    yield
    for project in Project.live:
        project.kill()
    Project.live.clear()


def project(
    root: Path,
    broker: KafkaBroker,
    dagster: DagsterServer,
    *,
    job: str = "report_job",
    run_config: str = CONFIG,
    retries: int = 0,
    timeout: str = "",
) -> tuple[Project, str]:
    topic = broker.topic(1)
    text = PIPELINE.format(
        name=unique("handoff"),
        bootstrap=broker.bootstrap,
        topic=topic,
        url=dagster.url,
        job=job,
        run_config=run_config,
        retries=retries,
        timeout=f"timeout: {timeout}" if timeout else "",
    )
    return Project(root, text), topic


def unique(name: str) -> str:
    """A pipeline name of this test only: eventflow's run ids are deterministic (rule,
    partition, generation), so two tests (or two sessions on an external Dagster) of one
    pipeline name would share run keys and adopt each other's Dagster runs."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def announce(broker: KafkaBroker, topic: str, *batches: dict[str, Any]) -> None:
    broker.produce(topic, [(0, json.dumps(b).encode()) for b in batches])


def batch(dt: str, batch_id: str, fail: str = "never", sleep: float = 0) -> dict[str, Any]:
    return {"dt": dt, "batch_id": batch_id, "fail": fail, "sleep": str(sleep)}


def finished(p: Project, rule: str, count: int = 1) -> list[dict[str, Any]]:
    """The rule's runs once ``count`` of them are succeeded or failed."""
    runs = [r for r in p.runs() if r["rule"] == rule]
    done = [r for r in runs if r["status"] in ("succeeded", "failed")]
    return done if len(done) >= count else []


def run_key(dagster: DagsterServer, downstream_id: str) -> str:
    """The ``eventflow/run_key`` tag of a Dagster run."""
    data = dagster.graphql(
        "query($id: ID!) { runOrError(runId: $id) { ... on Run { tags { key value } } } }",
        id=downstream_id,
    )
    tags = {t["key"]: t["value"] for t in data["runOrError"]["tags"]}
    return tags["eventflow/run_key"]


def dagster_times(dagster: DagsterServer, downstream_id: str) -> dict[str, float]:
    data = dagster.graphql(
        "query($id: ID!) { runOrError(runId: $id) { ... on Run {"
        " creationTime startTime endTime status } } }",
        id=downstream_id,
    )
    return dict(data["runOrError"])


def timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def docs_pipeline() -> str:
    page = (ROOT / "docs/howto/dagster.md").read_text()
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", page, re.S) if "name: warehouse" in b]
    return block


def test_docs_pipeline_hands_the_partition_to_dagster_and_produces_after_it(
    tmp_path: Path, kafka_broker: KafkaBroker, dagster_server: DagsterServer
) -> None:
    """The how-to's pipeline: a partition fires, Dagster runs the partitioned job once with the
    partition and the payload's batch id, eventflow's run succeeds only after Dagster's did,
    and the produced dataset is announced (and its rule fires) only then."""
    topic = kafka_broker.topic(1)
    text = docs_pipeline()
    text = text.replace("localhost:9092", kafka_broker.bootstrap)
    text = text.replace("warehouse.batches", topic)
    text = text.replace("http://127.0.0.1:3000", dagster_server.url)
    name = unique("warehouse")
    text = text.replace("name: warehouse", f"name: {name}")
    p = Project(tmp_path, text)
    p.start()
    announce(kafka_broker, topic, {"table": "orders", "dt": "2026-11-30", "batch_id": "b-7"})
    [report] = wait_until(lambda: finished(p, "report"), timeout=180)
    wait_until(lambda: finished(p, "announce"), timeout=60)
    assert p.stop() == 0

    assert report["status"] == "succeeded", report["error"]
    downstream = report["output"]["downstream"]
    assert downstream["system"] == "dagster"
    assert downstream["state"] == "SUCCESS"
    assert downstream["url"] == f"{dagster_server.url}/runs/{downstream['id']}"
    assert report["notes"]["downstream"]["id"] == downstream["id"]
    [run] = dagster_server.runs(run_key(dagster_server, downstream["id"]))
    assert run["runId"] == downstream["id"]
    assert run["tags"]["eventflow/run_key"] == f"eventflow__{name}__{report['run_id']}"
    assert run["tags"]["eventflow/attempt"] == "1"
    assert run["tags"]["team"] == "data"
    received = dagster_server.received(run["runId"])
    assert received is not None
    assert received["job"] == "daily_report"
    assert received["partition"] == "2026-11-30"
    assert received["run_config"] == {"ops": {"report": {"config": {"batch": "b-7"}}}}

    times = dagster_times(dagster_server, downstream["id"])
    [announce_run] = [r for r in p.runs() if r["rule"] == "announce"]
    assert timestamp(report["finished_at"]) >= times["endTime"]
    assert timestamp(announce_run["created_at"]) >= times["endTime"]
    available = [
        e
        for e in p.published()
        if e["type"] == "eventflow.dataset.available" and e["data"]["dataset"] == "report"
    ]
    assert len(available) == 1
    fired = [e for e in p.log_events() if e["event"] == "rule_fired" and e["rule"] == "report"]
    fired_at = timestamp(fired[0]["timestamp"])
    print(
        f"\nfire -> Dagster run created: {times['creationTime'] - fired_at:.2f}s;"
        f" Dagster run ended -> eventflow run succeeded:"
        f" {timestamp(report['finished_at']) - times['endTime']:.2f}s;"
        f" Dagster run took {times['endTime'] - times['creationTime']:.2f}s;"
        f" dagster dev ready in {dagster_server.started_in:.1f}s"
    )


def test_failed_dagster_run_fails_the_attempt_and_each_retry_reexecutes_once(
    tmp_path: Path, kafka_broker: KafkaBroker, dagster_server: DagsterServer
) -> None:
    """A Dagster run that fails fails eventflow's attempt; each retry makes exactly one new
    Dagster run (a re-execution of the previous one) tagged with its attempt: a job that fails
    only the first time succeeds on attempt 2, one that always fails ends failed after 2."""
    p, topic = project(tmp_path, kafka_broker, dagster_server, retries=1)
    p.start()
    announce(
        kafka_broker,
        topic,
        batch("2026-11-01", "flaky", fail="first"),
        batch("2026-11-02", "broken", fail="always"),
    )
    runs = wait_until(lambda: finished(p, "report", 2), timeout=240)
    assert p.stop() == 0

    by_dt = {r["partition"]["dt"]: r for r in runs}
    flaky, broken = by_dt["2026-11-01"], by_dt["2026-11-02"]
    assert (flaky["status"], flaky["attempt"]) == ("succeeded", 2)
    assert (broken["status"], broken["attempt"]) == ("failed", 2)
    assert "dagster run" in broken["error"]
    assert "FAILURE" in broken["error"]
    assert "report" in broken["error"]  # the failed step
    for record, last in ((flaky, "SUCCESS"), (broken, "FAILURE")):
        key = run_key(dagster_server, record["output"]["downstream"]["id"])
        second, first = dagster_server.runs(key)  # newest first: exactly one per attempt
        assert [first["tags"]["eventflow/attempt"], second["tags"]["eventflow/attempt"]] == [
            "1",
            "2",
        ]
        assert (first["status"], second["status"]) == ("FAILURE", last)
        assert second["parentRunId"] == first["runId"]
        assert record["output"]["downstream"]["id"] == second["runId"]
    retrying = [e for e in p.published() if e["type"] == "eventflow.run.retrying"]
    assert len(retrying) == 2


def test_timeout_terminates_the_dagster_run(
    tmp_path: Path, kafka_broker: KafkaBroker, dagster_server: DagsterServer
) -> None:
    """eventflow's run.timeout terminates Dagster's run (CANCELED in Dagster) and fails the
    attempt with "timed out"."""
    p, topic = project(tmp_path, kafka_broker, dagster_server, timeout="8s")
    p.start()
    announce(kafka_broker, topic, batch("2026-10-01", "slow", sleep=300))
    [record] = wait_until(lambda: finished(p, "report"), timeout=120)
    assert p.stop() == 0

    assert record["status"] == "failed"
    assert "timed out after 8s" in record["error"]
    assert record["output"]["timed_out"] is True
    downstream_id = record["notes"]["downstream"]["id"]
    [run] = wait_until(
        lambda: [
            r
            for r in dagster_server.runs(run_key(dagster_server, downstream_id))
            if r["status"] == "CANCELED"
        ],
        timeout=60,
    )
    assert run["runId"] == downstream_id


def test_an_operator_cancel_terminates_the_dagster_run(
    tmp_path: Path, kafka_broker: KafkaBroker, dagster_server: DagsterServer
) -> None:
    """`eventflow cancel` of a run whose Dagster run is in flight terminates that Dagster run
    (CANCELED in Dagster) and ends eventflow's run `cancelled`, naming who cancelled it."""
    p, topic = project(tmp_path, kafka_broker, dagster_server)
    p.start()
    announce(kafka_broker, topic, batch("2026-10-02", "cancel-me", sleep=300))

    def handed_off() -> dict[str, Any] | None:
        return next((r for r in p.runs() if r.get("notes", {}).get("downstream")), None)

    record = wait_until(handed_off, timeout=120)
    downstream_id = record["notes"]["downstream"]["id"]
    p.cli("cancel", str(p.file), str(record["run_id"]))
    [done] = wait_until(lambda: [r for r in p.runs() if r["status"] == "cancelled"], timeout=120)
    assert p.stop() == 0
    assert str(done["error"]).startswith("cancelled by cli:")
    [run] = wait_until(
        lambda: [
            r
            for r in dagster_server.runs(run_key(dagster_server, downstream_id))
            if r["status"] == "CANCELED"
        ],
        timeout=60,
    )
    assert run["runId"] == downstream_id


def test_sigkill_while_dagster_runs_adopts_the_run_after_restart(
    tmp_path: Path, kafka_broker: KafkaBroker, dagster_server: DagsterServer
) -> None:
    """SIGKILL of eventflow once its run's notes show Dagster's run id: after the restart
    eventflow adopts that run (still exactly one Dagster run for the fire) and finishes with
    its outcome."""
    p, topic = project(tmp_path, kafka_broker, dagster_server, retries=2)
    p.start()
    announce(kafka_broker, topic, batch("2026-09-01", "crash", sleep=8))

    def noted() -> str | None:
        for record in p.runs():
            downstream = record.get("notes", {}).get("downstream")
            if downstream:
                return str(downstream["id"])
        return None

    downstream_id = wait_until(noted, timeout=120)
    p.kill()
    assert dagster_times(dagster_server, downstream_id)["endTime"] is None  # still in flight
    p.start()
    [record] = wait_until(lambda: finished(p, "report"), timeout=180)
    assert p.stop() == 0

    assert record["status"] == "succeeded", record["error"]
    assert record["attempt"] == 2  # the killed attempt, then the one that adopted the run
    assert record["output"]["downstream"]["id"] == downstream_id
    [run] = dagster_server.runs(run_key(dagster_server, downstream_id))
    assert run["status"] == "SUCCESS"
    adopted = [e for e in p.log_events() if e["event"] == "handoff_adopted"]
    assert [e["downstream_id"] for e in adopted] == [downstream_id]


@pytest.mark.parametrize(
    ("job", "run_config", "message"),
    [
        ("no_such_job", CONFIG, "has no job `no_such_job`"),
        (
            "report_job",
            "{ops: {report: {config: {bogus: 1}}}}",
            "Dagster launchRun: RunConfigValidationInvalid: Received unexpected config entry",
        ),
    ],
    ids=["unknown-job", "invalid-run-config"],
)
def test_graphql_refusal_answered_200_fails_in_one_line(
    tmp_path: Path,
    kafka_broker: KafkaBroker,
    dagster_server: DagsterServer,
    job: str,
    run_config: str,
    message: str,
) -> None:
    """Dagster's refusals come back with HTTP 200 (an unknown job, a run config the job does
    not take): the attempt fails at once with Dagster's message on one line; no traceback,
    no token in the log or the run."""
    p, topic = project(
        tmp_path, kafka_broker, dagster_server, job=job, run_config=run_config, retries=1
    )
    p.start()
    announce(kafka_broker, topic, batch("2026-08-01", "b"))
    [record] = wait_until(lambda: finished(p, "report"), timeout=60)
    assert p.stop() == 0

    assert record["status"] == "failed"
    assert record["attempt"] == 2  # the rule's retries apply; nothing within the attempt
    assert message in record["error"]
    assert "\n" not in record["error"]
    logs = "".join(log.read_text() for log in p.logs)
    assert "Traceback" not in logs
    assert TOKEN not in logs
    assert TOKEN not in json.dumps(p.runs())
    assert not [e for e in p.log_events() if e["event"] == "handoff_retried"]
