"""The real ``eventflow run`` hands partitions to a real Flink session cluster with the
``flink`` task: the jar uploaded once, PyFlink SQL jobs submitted over REST with arguments
from the partition and the payload, waited for, their final state the run's outcome; a
failed job's root exception in the run's log; an unbounded job stopped with a savepoint at
the run's timeout, or cancelled with the run; eventflow SIGKILLed at the hand-off crash
points adopts the job it submitted instead of submitting a second one.

Kafka messages (tansu) announce the partitions. One session cluster serves the module
(``flink_session``); each test's pipeline has a name of its own, so job names never clash.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from eventflow.config.loader import check_file
from eventflow.tasks.flink import jar_name
from tests.acceptance.harness import Project, wait_until
from tests.flink.session_cluster import PYTHON_DRIVER, FlinkSession
from tests.services.kafka import KafkaBroker

pytestmark = [pytest.mark.flink, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]

PIPELINE = """
name: {name}
engine: {{poll_interval: 100ms}}
sensors:
  stream: {{type: kafka, bootstrap_servers: {bootstrap}, topic: {topic}, consumer_group: false}}
datasets:
  batches: {{sensor: stream, partition: {{dt: payload.dt}}}}
rules:
  load:
    when: {{any: [batches]}}
    params: {{rows: batches.payload.rows}}
    run:
      flink:
        url: {url}
        jar: {jar}
        entry_class: {entry}
        args: [-py, {job}, "{{dt}}", "{{rows}}", {out}]
        poll: 200ms
        poll_max: 1s
        stop: {stop}
        {configuration}
      retries: {retries}
      backoff: {{initial: 100ms, jitter: false}}
      {timeout}
publish:
  - {{type: file, path: out/events.jsonl}}
"""

BOUNDED = """
CREATE TABLE src (n BIGINT) WITH (
  'connector'='datagen', 'fields.n.kind'='sequence', 'fields.n.start'='1',
  'fields.n.end'='{1}', 'rows-per-second'='{3}'
)
;
CREATE TABLE lake (dt STRING, n BIGINT) WITH (
  'connector'='filesystem', 'path'='file://{2}/dt={0}', 'format'='csv'
)
;
INSERT INTO lake SELECT '{0}', n FROM src
"""
FAILING = """
CREATE TABLE src (n BIGINT) WITH ('connector'='datagen', 'number-of-rows'='{1}')
;
CREATE TABLE sink (n INT) WITH ('connector'='blackhole')
;
INSERT INTO sink SELECT CAST(CONCAT('not a number ', '{0}') AS INT) FROM src
"""
UNBOUNDED = """
CREATE TABLE src (n BIGINT) WITH ('connector'='datagen', 'rows-per-second'='{1}')
;
CREATE TABLE sink (n BIGINT) WITH ('connector'='blackhole')
;
INSERT INTO sink SELECT n FROM src
"""


def unique(name: str) -> str:
    """A pipeline name of this test only (job names carry it)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def project(
    root: Path,
    broker: KafkaBroker,
    flink: FlinkSession,
    job: Path,
    *,
    retries: int = 0,
    timeout: str = "",
    stop: str = "{savepoint: false}",
    configuration: str = "",
) -> tuple[Project, str, str]:
    topic = broker.topic(1)
    name = unique("flink")
    out = root / "lake"
    text = PIPELINE.format(
        name=name,
        bootstrap=broker.bootstrap,
        topic=topic,
        url=flink.url,
        jar=flink.python_jar,
        entry=PYTHON_DRIVER,
        job=job,
        out=out,
        stop=stop,
        configuration=f"configuration: {configuration}" if configuration else "",
        retries=retries,
        timeout=f"timeout: {timeout}" if timeout else "",
    )
    return Project(root, text), topic, name


def announce(broker: KafkaBroker, topic: str, *batches: dict[str, Any]) -> None:
    broker.produce(topic, [(0, json.dumps(b).encode()) for b in batches])


def finished(p: Project, count: int = 1) -> list[dict[str, Any]]:
    """The runs once ``count`` of them have ended."""
    done = [r for r in p.runs() if r["status"] in ("succeeded", "failed", "cancelled")]
    return done if len(done) >= count else []


def noted(p: Project, state: str | None = None) -> dict[str, Any] | None:
    """The first run whose notes name its Flink job (in ``state`` when given)."""
    for record in p.runs():
        downstream = record.get("notes", {}).get("downstream")
        if downstream and state in (None, downstream["state"]):
            return record
    return None


def docs_pipeline() -> str:
    page = (ROOT / "docs/howto/flink.md").read_text()
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", page, re.S) if "lake-loader" in b]
    return block


def run_log(p: Project, run_id: str) -> str:
    detail = p.cli_json("runs", run_id)
    return str(detail["logs"]["stdout"])


def key(name: str, record: dict[str, Any]) -> str:
    return f"eventflow__{name}__{record['run_id']}"


def test_bounded_jobs_run_once_each_with_arguments_from_partition_and_payload(
    tmp_path: Path, kafka_broker: KafkaBroker, flink_session: FlinkSession
) -> None:
    """The how-to's pipeline: two partitions fire, each is one Flink job named after its run,
    given the partition and the payload's row count as program arguments (it writes exactly
    those rows), waited for until FINISHED; both runs succeed; the jar is on the cluster
    once."""
    job = flink_session.sql_job(f"bounded-{uuid.uuid4().hex[:6]}", BOUNDED.replace("{3}", "50"))
    topic, name = kafka_broker.topic(1), unique("lake-loader")
    text = docs_pipeline()
    for old, new in (
        ("name: lake-loader", f"name: {name}"),
        ("localhost:9092", kafka_broker.bootstrap),
        ("lake.batches", topic),
        ("http://127.0.0.1:8081", flink_session.url),
        ("/opt/flink/opt/flink-python-2.3.0.jar", str(flink_session.python_jar)),
        ("/jobs/load.py", str(job)),
        ("/data/lake", str(tmp_path / "lake")),
    ):
        assert old in text
        text = text.replace(old, new)
    p = Project(tmp_path, text)
    p.start()
    announce(
        kafka_broker, topic, {"dt": "2026-11-01", "rows": 30}, {"dt": "2026-11-02", "rows": 70}
    )
    runs = wait_until(lambda: finished(p, 2), timeout=300)
    assert p.stop() == 0

    for record in runs:
        assert record["status"] == "succeeded", record["error"]
        downstream = record["output"]["downstream"]
        assert (downstream["system"], downstream["state"]) == ("flink", "FINISHED")
        [flink_job] = flink_session.jobs(key(name, record))
        assert flink_job["jid"] == downstream["id"]
        assert flink_job["state"] == "FINISHED"
        dt = record["partition"]["dt"]
        rows = [
            line
            for path in (tmp_path / "lake" / f"dt={dt}").rglob("*")
            if path.is_file() and not path.name.startswith(".")
            for line in path.read_text().splitlines()
        ]
        assert len(rows) == {"2026-11-01": 30, "2026-11-02": 70}[dt]
        assert f"submitted job {downstream['id']}" in run_log(p, record["run_id"])
    jar = jar_name(flink_session.python_jar.name, flink_session.python_jar.read_bytes())
    uploaded = [f for f in flink_session.get("/jars")["files"] if f["name"] == jar]
    assert len(uploaded) == 1


def test_a_failed_job_fails_the_run_with_its_root_exception(
    tmp_path: Path, kafka_broker: KafkaBroker, flink_session: FlinkSession
) -> None:
    """A job that fails at run time (a cast of text to INT) fails eventflow's run: the error
    names the job's state and its root cause on one line; the whole trace is in the run log."""
    job = flink_session.sql_job(f"failing-{uuid.uuid4().hex[:6]}", FAILING)
    p, topic, name = project(tmp_path, kafka_broker, flink_session, job)
    p.start()
    announce(kafka_broker, topic, {"dt": "2026-10-01", "rows": 5})
    [record] = wait_until(lambda: finished(p), timeout=300)
    assert p.stop() == 0

    assert record["status"] == "failed"
    error = str(record["error"])
    assert error.startswith(f"flink run {record['output']['downstream']['id']} ended FAILED: ")
    assert "not a number 2026-10-01" in error
    assert "\n" not in error
    [flink_job] = flink_session.jobs(key(name, record))
    assert flink_job["state"] == "FAILED"
    log = run_log(p, record["run_id"])
    assert "its root exception:" in log
    assert "\tat org.apache.flink" in log  # the whole trace, not one line
    assert "not a number 2026-10-01" in log


def test_the_timeout_stops_an_unbounded_job_with_a_savepoint_on_record(
    tmp_path: Path, kafka_broker: KafkaBroker, flink_session: FlinkSession
) -> None:
    """An unbounded job runs until the run's timeout: eventflow stops it with a savepoint
    (Flink ends it FINISHED), follows the savepoint until it completed and records its path
    on the run (notes, output, log); the run fails as timed out. The job got the task's
    rendered `configuration`. `eventflow retry` submits a new job that resumes from the
    savepoint."""
    job = flink_session.sql_job(f"unbounded-{uuid.uuid4().hex[:6]}", UNBOUNDED)
    p, topic, name = project(
        tmp_path,
        kafka_broker,
        flink_session,
        job,
        timeout="60s",
        stop="{savepoint: true, drain: false}",
        configuration='{execution.checkpointing.interval: "{rows}00 ms"}',
    )
    p.start()
    announce(kafka_broker, topic, {"dt": "2026-09-01", "rows": 20})
    [record] = wait_until(lambda: finished(p), timeout=300)
    assert p.stop() == 0

    assert record["status"] == "failed"
    assert record["error"] == "timed out after 1m"
    downstream = record["output"]["downstream"]
    savepoint = downstream["savepoint"]
    assert record["notes"]["downstream"]["savepoint"] == savepoint
    assert downstream["stopped"] == "savepoint"
    assert savepoint.startswith(f"file:{flink_session.savepoints}")
    assert (Path(savepoint.removeprefix("file:")) / "_metadata").is_file()
    [flink_job] = flink_session.jobs(key(name, record))
    assert flink_job["state"] == "FINISHED"
    assert f"stopped with a savepoint at {savepoint}" in run_log(p, record["run_id"])
    checkpoints = flink_session.get(f"/jobs/{flink_job['jid']}/checkpoints/config")
    assert checkpoints["interval"] == 2000  # `configuration`, rendered, reached the job

    p.start()  # `eventflow retry`: a new job of the run, resumed from the savepoint
    p.cli("retry", str(p.file), record["run_id"])
    resumed = wait_until(
        lambda: [j for j in flink_session.jobs(key(name, record)) if j["state"] == "RUNNING"],
        timeout=300,
    )[0]
    restored = wait_until(
        lambda: flink_session.get(f"/jobs/{resumed['jid']}/checkpoints")["latest"]["restored"],
        timeout=120,
    )
    assert restored["external_path"] == savepoint
    p.cli("cancel", str(p.file), record["run_id"])
    wait_until(lambda: finished(p) and finished(p)[0]["attempt"] == 2, timeout=120)
    assert p.stop() == 0


def test_cancelling_the_run_cancels_the_flink_job(
    tmp_path: Path, kafka_broker: KafkaBroker, flink_session: FlinkSession
) -> None:
    """``eventflow cancel`` of a run whose unbounded job runs cancels that job in Flink
    (CANCELED) and ends the run cancelled."""
    job = flink_session.sql_job(f"cancelled-{uuid.uuid4().hex[:6]}", UNBOUNDED)
    p, topic, name = project(tmp_path, kafka_broker, flink_session, job)
    p.start()
    announce(kafka_broker, topic, {"dt": "2026-08-01", "rows": 20})
    running = wait_until(lambda: noted(p, "RUNNING"), timeout=300)
    p.cli("cancel", str(p.file), running["run_id"])
    [record] = wait_until(lambda: finished(p), timeout=120)
    assert p.stop() == 0

    assert record["status"] == "cancelled"
    [flink_job] = wait_until(
        lambda: [j for j in flink_session.jobs(key(name, record)) if j["state"] == "CANCELED"],
        timeout=60,
    )
    assert flink_job["jid"] == running["notes"]["downstream"]["id"]


def test_a_timeout_during_the_submission_still_cancels_the_job(
    tmp_path: Path, kafka_broker: KafkaBroker, flink_session: FlinkSession
) -> None:
    """The run times out while the cluster still runs the program's ``main`` (before Flink
    answered with the job's id): eventflow waits for that answer and cancels the job it
    brings, so no job of the run is left running."""
    job = flink_session.sql_job(f"early-{uuid.uuid4().hex[:6]}", UNBOUNDED)
    p, topic, name = project(tmp_path, kafka_broker, flink_session, job, timeout="2s")
    p.start()
    announce(kafka_broker, topic, {"dt": "2026-06-01", "rows": 20})
    [record] = wait_until(lambda: finished(p), timeout=300)
    assert record["status"] == "failed"
    assert "timed out after 2s" in str(record["error"])
    [flink_job] = wait_until(
        lambda: [j for j in flink_session.jobs(key(name, record)) if j["state"] == "CANCELED"],
        timeout=120,
    )
    assert p.stop() == 0
    assert record["notes"]["downstream"]["id"] == flink_job["jid"]


@pytest.mark.parametrize("point", ["handoff.after_submit", "handoff.after_note"])
def test_sigkill_after_the_submission_adopts_the_job_after_the_restart(
    tmp_path: Path, kafka_broker: KafkaBroker, flink_session: FlinkSession, point: str
) -> None:
    """eventflow SIGKILLed right after it submitted the job (before and after noting it):
    after the restart the next attempt finds the job by its name and adopts it; Flink holds
    exactly one job of the run's name, and the run succeeds with it."""
    job = flink_session.sql_job(f"crash-{uuid.uuid4().hex[:6]}", BOUNDED.replace("{3}", "20"))
    p, topic, name = project(tmp_path, kafka_broker, flink_session, job, retries=2)
    p.start(crash_at=point)
    announce(kafka_broker, topic, {"dt": "2026-07-01", "rows": 100})
    assert p.wait_exit(timeout=300) == -9
    assert any(e.get("point") == point for e in p.log_events())
    [submitted] = [j for j in flink_session.jobs() if j["name"].startswith(f"eventflow__{name}__")]
    p.start()
    [record] = wait_until(lambda: finished(p), timeout=300)
    assert p.stop() == 0

    assert record["status"] == "succeeded", record["error"]
    assert record["attempt"] == 2  # the killed attempt, then the one that adopted the job
    assert record["output"]["downstream"]["id"] == submitted["jid"]
    assert len(flink_session.jobs(key(name, record))) == 1
    adopted = [e for e in p.log_events() if e["event"] == "handoff_adopted"]
    assert [e["downstream_id"] for e in adopted] == [submitted["jid"]]
    submissions = [e for e in p.log_events() if e["event"] == "handoff_submitted"]
    assert len(submissions) == 1


# -- configuration (no cluster) ----------------------------------------------------------


CONFIG = """\
name: flinkconf
sensors:
  landing: {{type: directory, path: ./landing}}
datasets:
  a: {{sensor: landing, key: "a/{{dt}}.csv"}}
rules:
  load:
    when: {{any: [a]}}
    run:
      flink:
        url: http://127.0.0.1:8081
{flink}
"""


@pytest.mark.parametrize(
    ("flink", "line", "message", "hint"),
    [
        (
            "        jar: job.jar\n        argz: [--dt]",
            13,
            "unknown key `argz`",
            "did you mean `args`",
        ),
        ("        args: [--dt, '{dt}']", 10, "missing required key `jar`", "add `jar:`"),
        (
            "        jar: job.jar\n        configuration: {pipeline.name: mine}",
            13,
            "`pipeline.name` names the job after the run",
            "remove it from `configuration`",
        ),
        (
            "        jar: job.jar\n        stop: {savepoint: true, drian: true}",
            13,
            "`drian`",
            "drain",
        ),
    ],
    ids=["unknown-key", "missing-jar", "own-name", "unknown-stop-key"],
)
def test_config_errors_name_the_file_line_and_fix(
    tmp_path: Path, flink: str, line: int, message: str, hint: str | None
) -> None:
    """`eventflow validate` rejects a ``flink`` task with an unknown key, without `jar`, or
    naming the job itself, each with the file, the line and what to do."""
    file = tmp_path / "pipeline.yaml"
    file.write_text(CONFIG.format(flink=flink))
    [problem] = check_file(file)
    assert message in problem.message
    assert problem.line == line
    assert str(problem.file) == str(file)
    if hint is not None:
        assert hint in (problem.hint or "")
