"""OpenLineage: the real ``eventflow run`` emits RunEvents to a file and to an HTTP lineage
endpoint (a local server standing in for Marquez), through the outbox."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from eventflow_sensors.openlineage.publisher import run_uuid
from tests.acceptance.harness import Project, wait_until


class LineageServer:
    """Records the JSON bodies POSTed to it; answers 503 to the first ``fail_first``."""

    def __init__(self, fail_first: int) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.refused = 0
        self.fail_first = fail_first
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if owner.refused < owner.fail_first:
                    owner.refused += 1
                    self.send_response(503)
                else:
                    owner.bodies.append(json.loads(body))
                    self.send_response(201)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def lineage_server() -> Iterator[LineageServer]:
    server = LineageServer(fail_first=2)
    yield server
    server.close()


PIPELINE = """
name: lineage
state: sqlite:///state.db
sensors:
  landing: {{type: directory, path: landing, ready: {{stable_for: 0s}}}}
datasets:
  orders: {{sensor: landing, key: "orders/{{dt}}.csv"}}
  stock: {{sensor: landing, key: "stock/{{dt}}.csv"}}
rules:
  report:
    when: {{all: [orders, stock], by: [dt]}}
    run: {{command: ["true"]}}
    produces: daily_report
  broken:
    when: {{any: [stock], by: [dt]}}
    run: {{command: [sh, -c, "exit 3"], retries: 1, backoff: {{initial: 0s}}}}
publish:
  - type: openlineage
    name: lineage_file
    transport: {{type: file, log_file_path: out/lineage.jsonl, append: true}}
    datasets:
      orders: {{namespace: "s3://lake", name: orders}}
  - type: openlineage
    name: marquez
    namespace: analytics
    transport: {{type: http, url: "{url}", retry: {{total: 0}}}}
"""


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_runs_become_openlineage_events(tmp_path: Path, lineage_server: LineageServer) -> None:
    project = Project(tmp_path, PIPELINE.format(url=lineage_server.url))
    project.start()
    project.land("orders/2024-01-01.csv")
    project.land("stock/2024-01-01.csv")
    lineage = tmp_path / "out/lineage.jsonl"
    # report: START + COMPLETE; broken: two attempts, each START + FAIL.
    events = wait_until(lambda: len(read_lines(lineage)) >= 6 and read_lines(lineage))
    wait_until(lambda: len(lineage_server.bodies) >= 6)
    project.stop()

    by_job: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_job.setdefault(event["job"]["name"], []).append(event)
    report = by_job["report"]
    assert [e["eventType"] for e in report] == ["START", "COMPLETE"]
    assert report[0]["job"]["namespace"] == "lineage"
    assert report[0]["run"]["runId"] == report[1]["run"]["runId"]
    [run] = project.runs() and [r for r in project.runs() if r["rule"] == "report"]
    assert report[0]["run"]["runId"] == run_uuid(run["run_id"], 1)
    inputs = {(d["namespace"], d["name"]) for d in report[1]["inputs"]}
    assert inputs == {("s3://lake", "orders"), ("eventflow://lineage", "stock")}
    [output] = report[1]["outputs"]
    assert (output["namespace"], output["name"]) == ("eventflow://lineage", "daily_report")
    assert output["facets"]["version"]["datasetVersion"] == "dt=2024-01-01"

    broken = by_job["broken"]
    assert [e["eventType"] for e in broken] == ["START", "FAIL", "START", "FAIL"]
    assert broken[0]["run"]["runId"] != broken[2]["run"]["runId"]  # one OpenLineage run per attempt
    assert broken[1]["run"]["facets"]["errorMessage"]["message"] == "exit code 3"

    # The HTTP endpoint refused twice; the outbox delivered everything anyway, once each.
    assert lineage_server.refused == 2
    received = {(b["run"]["runId"], b["eventType"]) for b in lineage_server.bodies}
    assert received == {(e["run"]["runId"], e["eventType"]) for e in events}
    assert {b["job"]["namespace"] for b in lineage_server.bodies} == {"analytics"}


def test_validate_rejects_a_transport_without_type(tmp_path: Path) -> None:
    project = Project(
        tmp_path,
        PIPELINE.format(url="http://127.0.0.1:9").replace("{type: http, url", "{url"),
    )
    result = project.cli("validate", str(project.file), check=False)
    assert result.returncode != 0
    assert "transport" in result.stderr + result.stdout
    assert "needs a `type`" in result.stderr + result.stdout
