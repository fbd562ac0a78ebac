"""The ``prefect`` task against a real Prefect 3 server and a served flow, driven through the
real ``eventflow run``: one flow run per fire with the partition and a payload field as
parameters, ``produces`` only after it completed, a failure re-run as the same flow run, the
timeout cancelling it, a SIGKILL mid-run adopted after the restart, and clean one-line
failures for an unknown deployment and bad credentials."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.harness import Project, wait_until
from tests.services.kafka import KafkaBroker
from tests.services.prefect import PrefectServer

# The first test also waits for the Prefect server and the served flow to start.
pytestmark = [pytest.mark.handoff, pytest.mark.timeout(300)]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "howto" / "prefect.md"

PIPELINE = """
name: handoff
state: sqlite:///.eventflow/state.db
engine: {{poll_interval: 100ms}}
sensors:
  stream: {{type: kafka, bootstrap_servers: "{bootstrap}", topic: "{topic}", consumer_group: false}}
datasets:
  batches: {{sensor: stream, partition: {{dt: payload.dt}}}}
rules:
  report:
    when: {{any: [batches]}}
    params: {{batch_id: batches.payload.batch_id}}
    run:
      prefect:
        url: "{url}"
        deployment: {deployment}
        parameters:
          {{dt: "{{dt}}", batch: "{{batch_id}}", run_id: "{{run_id}}", attempt: "{{attempt}}"}}
        headers: {{Authorization: "${{PREFECT_AUTHORIZATION}}"}}
        poll: 200ms
        poll_max: 1s
        retry_for: 5s
      retries: {retries}
      backoff: {{initial: 100ms, jitter: false}}
      timeout: {timeout}
    produces: report
  after:
    when: {{any: [report]}}
    run: {{command: [touch, "after-{{dt}}"]}}
"""


def docs_pipeline() -> str:
    """The pipeline of docs/howto/prefect.md (this module runs it)."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    return next(b for b in blocks if "is run by tests/handoff/test_prefect.py" in b)


def project(
    tmp_path: Path,
    kafka: KafkaBroker,
    prefect: PrefectServer,
    *,
    deployment: str = "report-flow/report",
    retries: int = 0,
    timeout: str = "2m",
) -> tuple[Project, str]:
    topic = kafka.topic(1)
    text = PIPELINE.format(
        bootstrap=kafka.bootstrap,
        topic=topic,
        url=prefect.api_url,
        deployment=deployment,
        retries=retries,
        timeout=timeout,
    )
    return Project(tmp_path, text), topic


def send(kafka: KafkaBroker, topic: str, dt: str, batch: str) -> None:
    kafka.produce(topic, [(0, json.dumps({"dt": dt, "batch_id": batch}).encode())])


@pytest.fixture(autouse=True)
def authorized(monkeypatch: pytest.MonkeyPatch, prefect_server: PrefectServer) -> None:
    """``eventflow run`` and the CLI read the server's credentials from the environment."""
    monkeypatch.setenv("PREFECT_AUTHORIZATION", prefect_server.authorization)


def runs_of(p: Project, rule: str) -> list[dict[str, Any]]:
    return [r for r in p.runs() if r["rule"] == rule]


def finished(p: Project, rule: str) -> dict[str, Any] | None:
    done = [r for r in runs_of(p, rule) if r["status"] in ("succeeded", "failed")]
    return done[0] if done else None


def succeeded_after(p: Project, dt: str, attempts: int) -> dict[str, Any]:
    """Wait for the rule on the produced dataset, stop, and return the report run, which
    succeeded at attempt ``attempts``."""
    wait_until(lambda: (p.root / f"after-{dt}").exists(), timeout=150)
    assert p.stop() == 0
    [run] = runs_of(p, "report")
    assert run["status"] == "succeeded"
    assert run["attempt"] == attempts
    return run


def when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_docs_pipeline_hands_off_once_and_announces_after_completion(
    tmp_path: Path, kafka_broker: KafkaBroker, prefect_server: PrefectServer
) -> None:
    """The docs pipeline: a Kafka message runs the deployment once with its partition and
    batch id as parameters; eventflow's run succeeds after the flow run completed, notes it
    with a link to its page, and only then does the rule on the produced dataset fire."""
    topic = kafka_broker.topic(1)
    p = Project(tmp_path, docs_pipeline())
    dt = "2031-01-01"
    prefect_server.steer(dt, sleep=1)
    sent = time.monotonic()
    send(kafka_broker, topic, dt, "b-42")
    p.start(
        KAFKA_BOOTSTRAP=kafka_broker.bootstrap,
        BATCHES_TOPIC=topic,
        PREFECT_API_URL=prefect_server.api_url,
    )
    wait_until(lambda: (tmp_path / f"report-{dt}.published").exists(), timeout=120)
    elapsed = time.monotonic() - sent
    assert p.stop() == 0

    [run] = runs_of(p, "report")
    assert run["status"] == "succeeded"
    assert run["attempt"] == 1
    downstream = run["notes"]["downstream"]
    assert downstream["system"] == "prefect"
    assert downstream["state"] == "Completed"
    assert run["output"]["downstream"]["id"] == downstream["id"]
    base = prefect_server.api_url.removesuffix("/api")
    assert downstream["url"] == f"{base}/runs/flow-run/{downstream['id']}"

    [received] = prefect_server.received(dt)
    assert received["batch"] == "b-42"
    assert received["run_id"] == run["run_id"]
    store_id = p.cli_json("versions")["store"]["store_id"]
    key = f"eventflow__reports__{store_id[:12]}__{run['run_id']}"
    assert downstream["key"] == key
    [flow_run] = prefect_server.flow_runs(key)
    assert flow_run["id"] == downstream["id"] == received["flow_run_id"]
    assert flow_run["parameters"] == {"dt": dt, "batch": "b-42", "run_id": run["run_id"]}
    assert "eventflow" in flow_run["tags"]
    assert key in flow_run["tags"]

    # Succeeded only after Prefect's flow run ended; the produced dataset's rule after that.
    assert when(run["finished_at"]) >= when(flow_run["end_time"])
    [after] = runs_of(p, "publish")
    assert when(after["started_at"]) >= when(run["finished_at"])
    submit = when(flow_run["created"]) - when(run["started_at"])
    finish = when(run["finished_at"]) - when(flow_run["end_time"])
    print(
        f"\nprefect: server and served flow ready in {prefect_server.started_in:.1f}s;"
        f" message to the produced dataset's rule {elapsed:.1f}s; eventflow run start to flow"
        f" run created {submit:.2f}s, flow run end to eventflow run succeeded {finish:.2f}s"
    )


def test_a_failed_flow_run_fails_the_attempt_and_the_retry_reruns_the_same_flow_run(
    tmp_path: Path, kafka_broker: KafkaBroker, prefect_server: PrefectServer
) -> None:
    """The flow fails once: attempt 1 fails with Prefect's message and nothing is produced;
    attempt 2 sets the same flow run back to Scheduled, it completes (run_count 2), and
    there is still one flow run for the fire."""
    p, topic = project(tmp_path, kafka_broker, prefect_server, retries=1)
    dt = "2031-01-02"
    prefect_server.steer(dt, fail=True)
    send(kafka_broker, topic, dt, "b-7")
    p.start()
    run = succeeded_after(p, dt, attempts=2)
    received = prefect_server.received(dt)
    assert [r["run_count"] for r in received] == [1, 2]
    assert {r["flow_run_id"] for r in received} == {run["notes"]["downstream"]["id"]}
    assert len(prefect_server.flow_runs(run["notes"]["downstream"]["key"])) == 1
    [retrying] = [e for e in p.log_events() if e.get("event") == "run_retrying"]
    assert retrying["error"].startswith(f"prefect run {received[0]['flow_run_id']} ended Failed")
    assert "asked to fail for dt=2031-01-02" in retrying["error"]
    assert any(e.get("event") == "handoff_rerun" for e in p.log_events())
    [after] = runs_of(p, "after")
    assert when(after["started_at"]) >= when(run["finished_at"])


def test_the_run_timeout_cancels_the_flow_run(
    tmp_path: Path, kafka_broker: KafkaBroker, prefect_server: PrefectServer
) -> None:
    """A flow run that outlives ``run.timeout`` is set to Cancelling and ends Cancelled in
    Prefect; eventflow's run fails as timed out and announces nothing."""
    p, topic = project(tmp_path, kafka_broker, prefect_server, timeout="12s")
    dt = "2031-01-03"
    prefect_server.steer(dt, sleep=120)
    send(kafka_broker, topic, dt, "b-slow")
    p.start()
    run = wait_until(lambda: finished(p, "report"), timeout=90)
    assert run["status"] == "failed"
    assert run["error"].startswith("timed out after 12s")
    flow_id = run["notes"]["downstream"]["id"]
    state = wait_until(
        lambda: (s := prefect_server.flow_run(flow_id)["state"]["type"]) == "CANCELLED" and s,
        timeout=60,
    )
    assert state == "CANCELLED"
    assert p.stop() == 0
    assert runs_of(p, "after") == []
    assert any(e.get("event") == "handoff_cancelled" for e in p.log_events())


def test_sigkill_mid_flow_run_adopts_it_after_the_restart(
    tmp_path: Path, kafka_broker: KafkaBroker, prefect_server: PrefectServer
) -> None:
    """``eventflow run`` killed with SIGKILL once the run's notes name the flow run: the
    restarted process adopts that flow run (no second one), and finishes with its outcome."""
    p, topic = project(tmp_path, kafka_broker, prefect_server)
    dt = "2031-01-04"
    prefect_server.steer(dt, sleep=8)
    send(kafka_broker, topic, dt, "b-9")
    p.start()
    noted = wait_until(
        lambda: [r for r in runs_of(p, "report") if r["notes"].get("downstream")], timeout=90
    )
    p.kill()
    flow_id = noted[0]["notes"]["downstream"]["id"]
    p.start()
    run = succeeded_after(p, dt, attempts=2)
    assert run["notes"]["downstream"]["id"] == flow_id
    assert len(prefect_server.flow_runs(run["notes"]["downstream"]["key"])) == 1
    assert [r["flow_run_id"] for r in prefect_server.received(dt)] == [flow_id]
    assert any(e.get("event") == "handoff_adopted" for e in p.log_events())


@pytest.mark.parametrize(
    ("case", "deployment", "authorization", "expected"),
    [
        ("unknown-deployment", "report-flow/nope", None, "HTTP 404: Deployment not found"),
        ("bad-credentials", "report-flow/report", "Basic d3Jvbmc6czNjcmV0LXRva2Vu", "HTTP 401"),
    ],
)
def test_an_unknown_deployment_or_bad_credentials_fail_in_one_line(
    tmp_path: Path,
    kafka_broker: KafkaBroker,
    prefect_server: PrefectServer,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    deployment: str,
    authorization: str | None,
    expected: str,
) -> None:
    """Prefect's refusal fails the attempt at once with a one-line error naming the request
    and Prefect's answer; no traceback, and the credentials appear nowhere."""
    p, topic = project(tmp_path, kafka_broker, prefect_server, deployment=deployment)
    send(kafka_broker, topic, f"2031-02-0{1 if case == 'unknown-deployment' else 2}", "b-x")
    sent = authorization or prefect_server.authorization
    monkeypatch.setenv("PREFECT_AUTHORIZATION", sent)
    p.start()
    run = wait_until(lambda: finished(p, "report"), timeout=60)
    assert p.stop() == 0
    assert run["status"] == "failed"
    assert run["error"].startswith("prefect: read deployment ")
    assert expected in run["error"]
    assert "\n" not in run["error"]
    logs = "".join(log.read_text() for log in p.logs)
    everything = logs + json.dumps(p.runs())
    assert "Traceback" not in logs
    secret = sent.split()[1]
    assert secret not in everything
    assert runs_of(p, "after") == []


def test_staging_and_production_handing_off_the_same_run_id_get_a_flow_run_each(
    tmp_path: Path, kafka_broker: KafkaBroker, prefect_server: PrefectServer
) -> None:
    """One pipeline run as staging and as production (two stores) fires the same run id
    into the same deployment: the key holds each store's identity, so each environment gets
    its own flow run and neither adopts the other's."""
    topic = kafka_broker.topic(1)
    text = PIPELINE.format(
        bootstrap=kafka_broker.bootstrap,
        topic=topic,
        url=prefect_server.api_url,
        deployment="report-flow/report",
        retries=0,
        timeout="2m",
    )
    # Each environment has its own consumer group (the default, eventflow.<pipeline>.<sensor>,
    # would be shared by both on one Kafka cluster).
    text += (
        "environments:\n"
        "  staging: {sensors: {stream: {group_id: eventflow.staging}}}\n"
        "  production: {sensors: {stream: {group_id: eventflow.production}}}\n"
    )
    dt = "2031-01-07"
    send(kafka_broker, topic, dt, "b-11")
    projects = {}
    for env in ("staging", "production"):
        (tmp_path / env).mkdir()
        projects[env] = Project(tmp_path / env, text)
        projects[env].start(args=["--env", env])
    runs = {env: succeeded_after(p, dt, attempts=1) for env, p in projects.items()}
    staging, production = runs["staging"], runs["production"]
    assert staging["run_id"] == production["run_id"]
    for env, p in projects.items():
        run = runs[env]
        store = p.cli_json("versions", "--env", env)["store"]
        assert store["environment"] == env
        key = run["notes"]["downstream"]["key"]
        assert key == f"eventflow__handoff__{store['store_id'][:12]}__{run['run_id']}"
        [flow_run] = prefect_server.flow_runs(key)
        assert flow_run["id"] == run["notes"]["downstream"]["id"]
    ids = {run["notes"]["downstream"]["id"] for run in runs.values()}
    assert len(ids) == 2
    assert {r["flow_run_id"] for r in prefect_server.received(dt)} == ids


def test_a_run_handed_off_before_keys_held_the_store_finds_its_flow_run_after_the_upgrade(
    tmp_path: Path, kafka_broker: KafkaBroker, prefect_server: PrefectServer
) -> None:
    """A run in flight whose note (written by a release before keys held the store) names a
    flow run started under the old key ``eventflow__<pipeline>__<run_id>``: after the restart
    it adopts that flow run, keeps that key, and finishes with it."""
    p, topic = project(tmp_path, kafka_broker, prefect_server)
    dt = "2031-01-08"
    prefect_server.steer(dt, sleep=8)
    send(kafka_broker, topic, dt, "b-12")
    p.start()
    [noted] = wait_until(
        lambda: [r for r in runs_of(p, "report") if r["notes"].get("downstream")], timeout=90
    )
    p.kill()
    # The store as the earlier release left it: the flow run it started under the old key,
    # noted without a key.
    legacy_key = f"eventflow__handoff__{noted['run_id']}"
    with prefect_server.client() as client:
        deployment = client.get("/deployments/name/report-flow/report").json()

        def create() -> Any:  # a busy server answers 503 (its SQLite is locked): again
            answer = client.post(
                f"/deployments/{deployment['id']}/create_flow_run",
                json={
                    "parameters": {"dt": dt, "batch": "b-12", "run_id": noted["run_id"]},
                    "idempotency_key": legacy_key,
                    "tags": ["eventflow", legacy_key],
                },
            )
            if answer.status_code >= 500:
                return None
            answer.raise_for_status()
            return answer.json()

        legacy = wait_until(create, timeout=60, interval=1)
    note = {k: v for k, v in noted["notes"]["downstream"].items() if k != "key"}
    notes = {**noted["notes"], "downstream": {**note, "id": legacy["id"]}}
    with sqlite3.connect(tmp_path / ".eventflow" / "state.db") as db:
        db.execute(
            "UPDATE runs SET notes = ? WHERE run_id = ?", (json.dumps(notes), noted["run_id"])
        )
    p.start()
    run = succeeded_after(p, dt, attempts=2)
    assert run["notes"]["downstream"]["id"] == legacy["id"]
    assert run["notes"]["downstream"]["key"] == legacy_key
    assert run["output"]["downstream"]["id"] == legacy["id"]
    assert [f["id"] for f in prefect_server.flow_runs(legacy_key)] == [legacy["id"]]
    assert any(e.get("event") == "handoff_adopted" for e in p.log_events())
