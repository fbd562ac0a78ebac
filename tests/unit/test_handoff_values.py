"""Values from events are data in what a hand-off task sends: a partition or payload value
that looks like GraphQL, JSON or a URL path never changes the request's structure.

The requests are captured with ``httpx.MockTransport`` (the request a task builds is pure
core); the tasks against the real systems are tested in ``tests/handoff/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventflow.tasks import airflow, dagster, flink
from eventflow.tasks.handoff import DownstreamRun
from eventflow.types import RunContext

EVIL = 'x"}) { deleteRun(runId: "all") } #/../../dags/other?dry_run=false&'


def context(tmp_path: Path) -> RunContext:
    values = {"dt": EVIL, "batch": EVIL, "run_id": "run_1", "rule": "r", "attempt": "1"}
    return RunContext(
        run_id="run_1",
        rule="r",
        attempt=1,
        partition={"dt": EVIL},
        inputs=(),
        events_file=tmp_path / "events.json",
        stdout_path=tmp_path / "out",
        stderr_path=tmp_path / "err",
        timeout=None,
        log_max_bytes=1024,
        variables=values,
        pipeline="p",
    )


def recording(answer: dict[str, Any]) -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answer)

    return httpx.AsyncClient(transport=httpx.MockTransport(handle)), seen


async def test_dagster_sends_event_values_as_graphql_variables_only(tmp_path: Path) -> None:
    job = dagster.DagsterJob.model_validate(
        {
            "url": "http://dagster:3000",
            "job": "report",
            "repository_location": "loc",
            "repository_name": "repo",
            "partition": "{dt}",
            "run_config": {"ops": {"report": {"config": {"batch": "{batch}"}}}},
        }
    )
    launched = {"__typename": "LaunchRunSuccess", "run": {"runId": "r1", "status": "QUEUED"}}
    client, seen = recording({"data": {"result": launched}})
    handoff = dagster.Dagster(job)
    handoff._client = client
    await handoff.submit(context(tmp_path))
    (request,) = seen
    body = json.loads(request.content)
    assert body["query"] == dagster._LAUNCH  # the query text is a constant
    params = body["variables"]["params"]
    assert params["runConfigData"] == {"ops": {"report": {"config": {"batch": EVIL}}}}
    assert {"key": "dagster/partition", "value": EVIL} in params["executionMetadata"]["tags"]


@pytest.mark.parametrize("where", ["conf", "logical_date"])
async def test_airflow_sends_event_values_in_the_json_body_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.setenv("AIRFLOW_TOKEN_FOR_TEST", "secret")
    config = {
        "url": "http://airflow:8080",
        "dag": "report",
        "auth": {"token_env": "AIRFLOW_TOKEN_FOR_TEST"},
    }
    config["conf" if where == "conf" else "logical_date"] = (
        {"batch": "{batch}"} if where == "conf" else "{dt}"
    )
    run = airflow.AirflowRun.model_validate(config)
    client, seen = recording({"dag_run_id": "k", "state": "queued"})
    handoff = airflow.AirflowHandoff(run)
    handoff._client = client
    result = await handoff.submit(context(tmp_path))
    assert isinstance(result, DownstreamRun)
    (request,) = seen
    assert request.url.path == "/api/v2/dags/report/dagRuns"  # no value in the path
    assert request.url.query == b""
    body = json.loads(request.content)
    if where == "conf":
        assert body["conf"]["batch"] == EVIL
    else:
        assert body["logical_date"] == EVIL


async def test_flink_sends_event_values_as_whole_program_arguments(tmp_path: Path) -> None:
    """Each rendered `args` item is one program argument (no shell splits a value with
    spaces or quotes) and no value reaches the request's path or query."""
    jar = tmp_path / "job.jar"
    jar.write_bytes(b"PK\x03\x04 a jar")
    run = flink.FlinkRun.model_validate(
        {"url": "http://flink:8081", "jar": "job.jar", "args": ["--dt", "{dt}", "x {batch} y"]}
    )
    name = flink.jar_name("job.jar", jar.read_bytes())
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/jars":
            return httpx.Response(200, json={"files": [{"id": f"abc_{name}", "name": name}]})
        if request.url.path.endswith("/run"):
            return httpx.Response(200, json={"jobid": json.loads(request.content)["jobId"]})
        return httpx.Response(200, json={"state": "RUNNING"})

    handoff = flink.FlinkHandoff(run, tmp_path)
    handoff._client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    ctx = context(tmp_path)
    result = await handoff.submit(ctx)
    assert result.outcome == "running"
    [_listing, submit, poll] = seen
    assert submit.url.path == f"/jars/abc_{name}/run"
    assert submit.url.query == b""
    body = json.loads(submit.content)
    assert body["programArgsList"] == ["--dt", EVIL, f"x {EVIL} y"]
    assert body["flinkConfiguration"] == {"pipeline.name": "eventflow__p__run_1"}
    assert body["jobId"] == flink.job_id_of("eventflow__p__run_1", 1) == result.id
    assert poll.url.path == f"/jobs/{result.id}"


def test_flink_names_and_causes() -> None:
    """A jar's cluster name follows its content; a job id is 32 hex digits per attempt; a
    Java trace is summed up by its last `Caused by`."""
    assert flink.jar_name("a.jar", b"1") == flink.jar_name("a.jar", b"1")
    assert flink.jar_name("a.jar", b"1") != flink.jar_name("a.jar", b"2")
    assert flink.jar_name("a.jar", b"1").startswith("eventflow-")
    first, second = flink.job_id_of("k", 1), flink.job_id_of("k", 2)
    assert len(first) == 32
    assert int(first, 16) >= 0
    assert first != second
    trace = (
        "java.lang.RuntimeException: outer\n\tat x\nCaused by: a.B: middle\nCaused by: c.D: root"
    )
    assert flink.last_cause(trace) == "c.D: root"
    assert flink.last_cause("one line\n\tat y") == "one line"
