"""The ``http`` task's success predicate and its submit-then-poll mode against a real local
asynchronous job API (``tests/services/job_api.py``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from eventflow.events import JSON
from eventflow.tasks.http import HttpTask
from eventflow.types import PluginEnv, RunContext
from tests.services.job_api import JobApi, serve


@pytest.fixture
def api() -> Iterator[JobApi]:
    yield from serve()


class Notes:
    """What the task noted on its run, in order."""

    def __init__(self) -> None:
        self.seen: list[Mapping[str, JSON]] = []

    async def __call__(self, facts: Mapping[str, JSON]) -> None:
        self.seen.append(dict(facts))

    def states(self) -> list[Any]:
        return [n["downstream"]["state"] for n in self.seen]  # type: ignore[index,call-overload]


def context(
    tmp_path: Path,
    notes: Notes,
    *,
    attempt: int = 1,
    timeout: float | None = 10.0,
    noted: Mapping[str, JSON] | None = None,
) -> RunContext:
    variables = {"dt": "2024-01-01", "run_id": "run-1", "rule": "report", "attempt": str(attempt)}
    return RunContext(
        run_id="run-1",
        rule="report",
        attempt=attempt,
        partition={"dt": "2024-01-01"},
        inputs=(),
        events_file=tmp_path / "events.json",
        stdout_path=tmp_path / f"attempt-{attempt}.stdout",
        stderr_path=tmp_path / f"attempt-{attempt}.stderr",
        timeout=timeout,
        log_max_bytes=65_536,
        variables=variables,
        pipeline="demo",
        notes=noted or {},
        note=notes,
    )


def task(api: JobApi, *, outcome: str = "done", **poll: Any) -> HttpTask:
    """An http task that submits a job to ``api`` and polls it (fast)."""
    options = {
        "id": "jobid",
        "url": api.url + "/jobs/{id}",
        "state": "state",
        "success": ["FINISHED"],
        "failure": ["FAILED", "CANCELED"],
        "cancel": {"url": api.url + "/jobs/{id}/cancel"},
        "poll": "20ms",
        "poll_max": "50ms",
        "retry_for": "5s",
        **poll,
    }
    request = {
        "url": api.url + "/jobs",
        "json": {"outcome": outcome, "dt": "{dt}", "tag": "{key}"},
        "headers": {"Authorization": "Bearer s3cret"},
        "poll": options,
    }
    return HttpTask({"http": request}, PluginEnv("demo", Path(".")))


def once(url: str, **request: Any) -> HttpTask:
    return HttpTask({"http": {"url": url, **request}}, PluginEnv("demo", Path(".")))


# --- the success predicate ----------------------------------------------------------------


async def test_a_200_with_an_error_body_fails_the_predicate(tmp_path: Path, api: JobApi) -> None:
    """``success`` false on a 200 answer fails the attempt; the detail names the status and
    the start of the body."""
    async with once(api.url + "/graphql", success="errors == null") as runner:
        result = await runner.run(context(tmp_path, Notes()))
    assert not result.ok
    assert result.detail == (
        'HTTP 200: `errors == null` is false for the answer: {"data": null, "errors":'
        ' [{"message": "Pipeline not found"}]}'
    )
    assert result.output == {"status_code": 200}


async def test_the_predicate_and_the_status_set_must_both_hold(tmp_path: Path, api: JobApi) -> None:
    """A truthy ``success`` on an expected status succeeds; the same body on a status not in
    ``expect`` fails."""
    async with once(api.url + "/jobs", success="jobid", json={"outcome": "done"}) as runner:
        assert (await runner.run(context(tmp_path, Notes()))).ok
    async with once(api.url + "/jobs", success="jobid", expect=[202]) as runner:
        result = await runner.run(context(tmp_path, Notes()))
    assert not result.ok
    assert result.detail.startswith('HTTP 200: {"jobid": "j-2"}')


async def test_a_body_that_is_not_json_fails_the_predicate(tmp_path: Path, api: JobApi) -> None:
    """With ``success``, an answer that is not JSON fails and says so."""
    async with once(api.url + "/text", success="ok") as runner:
        result = await runner.run(context(tmp_path, Notes()))
    assert not result.ok
    assert result.detail == (
        "HTTP 200: the answer is not JSON, so `ok` cannot hold: <html>Service is up</html>"
    )


# --- submit, then poll ------------------------------------------------------------------


async def test_submits_once_notes_the_job_and_succeeds_when_it_finished(
    tmp_path: Path, api: JobApi
) -> None:
    """One submit (with the run id as Idempotency-Key, the key in its body); the job is noted
    at once and at each change of state; the attempt succeeds when it is FINISHED."""
    notes = Notes()
    async with task(api) as runner:
        result = await runner.run(context(tmp_path, notes))
    assert result.ok, result.detail
    [submit] = api.submits
    assert submit["headers"]["idempotency-key"] == "run-1"
    assert submit["headers"]["authorization"] == "Bearer s3cret"
    assert submit["body"] == {
        "outcome": "done",
        "dt": "2024-01-01",
        "tag": "eventflow__demo__run-1",
    }
    assert notes.states() == ["submitted", "QUEUED", "RUNNING", "FINISHED"]
    assert api.polls == ["j-1"] * 3
    assert result.output["downstream"] == {
        "system": "http",
        "id": "j-1",
        "url": api.url + "/jobs/j-1",
        "state": "FINISHED",
        "outcome": "succeeded",
    }


async def test_a_failed_job_fails_the_attempt_with_its_status_answer(
    tmp_path: Path, api: JobApi
) -> None:
    """A job that ends in a ``failure`` state fails the attempt, naming the job and its
    state."""
    async with task(api, outcome="failed") as runner:
        result = await runner.run(context(tmp_path, Notes()))
    assert not result.ok
    assert result.detail == 'http run j-1 ended FAILED: {"jid":"j-1","state":"FAILED"}'


async def test_the_timeout_cancels_the_job(tmp_path: Path, api: JobApi) -> None:
    """At the rule's timeout the job is cancelled through ``cancel`` and the attempt fails
    as timed out; the cancelled state is noted."""
    notes = Notes()
    async with task(api, outcome="slow") as runner:
        result = await runner.run(context(tmp_path, notes, timeout=0.5))
    assert not result.ok
    assert result.detail == "timed out after 500ms"
    assert result.output["timed_out"] is True
    assert api.cancels == ["j-1"]
    assert notes.states()[-1] == "CANCELED"


async def test_without_cancel_a_timed_out_job_goes_on_and_the_detail_says_so(
    tmp_path: Path, api: JobApi
) -> None:
    """Without ``cancel`` nothing is sent at the timeout, and the detail says the job goes
    on."""
    async with task(api, outcome="slow", cancel=None) as runner:
        result = await runner.run(context(tmp_path, Notes(), timeout=0.3))
    assert result.detail == (
        "timed out after 300ms; the downstream run could not be cancelled:"
        " no `poll.cancel` is configured: job j-1 goes on"
    )
    assert api.cancels == []


async def test_adopts_the_job_an_earlier_attempt_noted(tmp_path: Path, api: JobApi) -> None:
    """An attempt whose run notes a job (the attempt before crashed) polls that job and
    submits nothing."""
    async with task(api) as first:
        await first.api().submit(context(tmp_path, Notes()))
    noted: dict[str, JSON] = {"downstream": {"system": "http", "id": "j-1", "state": "QUEUED"}}
    async with task(api) as runner:
        result = await runner.run(context(tmp_path, Notes(), attempt=2, noted=noted))
    assert result.ok, result.detail
    assert len(api.submits) == 1


async def test_find_adopts_a_job_by_its_key_without_a_note(tmp_path: Path, api: JobApi) -> None:
    """With ``find``, an attempt that has no note (the crash came before it) finds the job
    submitted under ``{key}`` and submits nothing."""
    find = {"url": api.url + "/jobs?tag={key}", "id": "jobs[0].jid"}
    async with task(api, outcome="slow", find=find) as runner:
        await runner.api().submit(context(tmp_path, Notes()))
        api.hold.clear()
        result = await runner.run(context(tmp_path, Notes(), attempt=2))
    assert result.ok, result.detail
    assert len(api.submits) == 1
    assert result.output["downstream"]["id"] == "j-1"  # type: ignore[index,call-overload]


async def test_a_failed_job_is_submitted_again_under_a_new_key(tmp_path: Path, api: JobApi) -> None:
    """The next attempt after a failed job submits a new one with ``<run_id>.<attempt>`` as
    Idempotency-Key (an API keeping keys would answer the failed job again)."""
    async with task(api, outcome="failed") as runner:
        await runner.run(context(tmp_path, Notes()))
    noted: dict[str, JSON] = {"downstream": {"system": "http", "id": "j-1", "state": "FAILED"}}
    async with task(api) as runner:
        result = await runner.run(context(tmp_path, Notes(), attempt=2, noted=noted))
    assert result.ok, result.detail
    assert [s["headers"]["idempotency-key"] for s in api.submits] == ["run-1", "run-1.2"]
    assert result.output["downstream"]["id"] == "j-2"  # type: ignore[index,call-overload]


async def test_status_answers_503_are_retried(tmp_path: Path, api: JobApi) -> None:
    """A status poll answered 503 is retried with backoff while the job goes on."""
    api.failures = 2
    async with task(api) as runner:
        result = await runner.run(context(tmp_path, Notes()))
    assert result.ok, result.detail
    assert len(api.polls) == 5


@pytest.mark.parametrize(
    ("options", "detail"),
    [
        ({"id": "job_id"}, 'submit: HTTP 200 has no job id at `job_id`: {"jobid":"j-1"}'),
        ({"state": "status"}, 'status: HTTP 200 has no state at `status`: {"jid":"j-1",'),
        (
            {"url": "http://127.0.0.1:1/jobs/{id}", "retry_for": "0s"},
            "status: GET http://127.0.0.1:1/jobs/j-1 failed: ConnectError",
        ),
    ],
)
async def test_answers_the_config_does_not_fit_fail_with_a_clear_detail(
    tmp_path: Path, api: JobApi, options: dict[str, Any], detail: str
) -> None:
    """A submit answer without the id, a status answer without the state, an unreachable
    status URL: the attempt fails saying which request and what was missing."""
    async with task(api, **options) as runner:
        result = await runner.run(context(tmp_path, Notes()))
    assert not result.ok
    assert result.detail.startswith(detail), result.detail
    assert "s3cret" not in result.detail
