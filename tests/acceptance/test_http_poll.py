"""The real ``eventflow run`` with an ``http`` task in poll mode against a local asynchronous
job API: a SIGKILL while polling, then a restart, adopts the job instead of submitting a
second one; ``eventflow validate`` rejects a bad JMESPath with the file and line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.harness import Project, wait_until
from tests.services.job_api import JobApi, serve

PIPELINE = """
name: jobs
sensors:
  landing: {{type: directory, path: ./landing}}
datasets:
  ready: {{sensor: landing, key: "dt={{dt}}/_SUCCESS"}}
rules:
  report:
    when: {{any: [ready], by: [dt]}}
    run:
      http:
        url: {api}/jobs
        json: {{outcome: slow, args: "--dt {{dt}}"}}
        success: "{success}"
        poll:
          id: jobid
          url: "{api}/jobs/{{id}}"
          state: state
          success: [FINISHED]
          failure: [FAILED, CANCELED]
          cancel: {{url: "{api}/jobs/{{id}}/cancel"}}
          poll: 100ms
          poll_max: 200ms
      timeout: 1m
engine: {{poll_interval: 100ms}}
"""


@pytest.fixture
def api() -> Iterator[JobApi]:
    yield from serve()


def test_a_sigkill_while_polling_adopts_the_job_at_restart(tmp_path: Path, api: JobApi) -> None:
    """Killed (SIGKILL) while the job runs, the restarted process polls the job the killed
    one noted: the API saw exactly one submit, and the run succeeds when the job finishes."""
    p = Project(tmp_path, PIPELINE.format(api=api.url, success="jobid != null"))
    p.start()
    p.land("dt=2024-01-01/_SUCCESS")
    wait_until(lambda: len(api.polls) >= 2)  # noted before the first poll, and running
    p.kill()
    [run] = p.runs()
    assert run["status"] == "running"
    assert run["notes"]["downstream"]["id"] == "j-1"

    polls_before = len(api.polls)
    p.start()
    wait_until(lambda: len(api.polls) > polls_before)
    api.hold.clear()  # the job finishes
    [run] = wait_until(lambda: [r for r in p.runs() if r["status"] == "succeeded"])
    assert len(api.submits) == 1
    assert set(api.polls) == {"j-1"}
    assert run["notes"]["downstream"]["state"] == "FINISHED"
    assert any(e["event"] == "handoff_adopted" for e in p.log_events())
    assert p.stop() == 0


def test_validate_rejects_a_bad_jmespath_with_file_and_line(tmp_path: Path, api: JobApi) -> None:
    """A `success` that is not JMESPath fails `eventflow validate` with the file, the line
    and the fix; `{id}` in the poll URLs is accepted."""
    p = Project(tmp_path, PIPELINE.format(api=api.url, success="status == [ok"))
    result = p.cli("validate", str(p.file), check=False)
    assert result.returncode == 2, result.stderr
    line = PIPELINE.splitlines().index('        success: "{success}"') + 1
    assert f"{p.file}:{line}: rules.report.run.http.success" in result.stderr
    assert "`status == [ok` is not a JMESPath expression" in result.stderr
    assert "jmespath.org" in result.stderr
    assert "{id}" not in result.stderr
    assert "Traceback" not in result.stderr
