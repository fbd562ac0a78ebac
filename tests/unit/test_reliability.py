"""Each rule's error rates and mean time to recover, computed from its runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from eventflow.records import RunRecord, RunStatus
from eventflow.views.reliability import failed_attempts, figures

T0 = datetime(2026, 12, 2, tzinfo=UTC)
DAY = timedelta(days=1)


def run(
    key: str, minute: int, status: RunStatus, attempt: int, ended: int | None = None
) -> RunRecord:
    created = T0 + timedelta(minutes=minute)
    finished = None if ended is None else T0 + timedelta(minutes=ended)
    return RunRecord(
        run_id=f"run-{key}-{minute}",
        rule="report",
        key=key,
        partition={"dt": key},
        generation=minute,
        status=status,
        attempt=attempt,
        max_attempts=3,
        inputs=(),
        created_at=created,
        updated_at=finished or created,
        finished_at=finished,
    )


def test_failed_attempts_count_what_each_status_implies() -> None:
    """A success at attempt 3 had two failures, a failure at 2 two, a pending retry all of its
    attempts so far, a running or cancelled attempt none yet."""
    assert failed_attempts(run("a", 0, "succeeded", 3, 1)) == 2
    assert failed_attempts(run("a", 0, "failed", 2, 1)) == 2
    assert failed_attempts(run("a", 0, "pending", 1)) == 1
    assert failed_attempts(run("a", 0, "running", 1)) == 0
    assert failed_attempts(run("a", 0, "cancelled", 2, 1)) == 1


def test_error_rates_and_mttr_per_partition_stream() -> None:
    """Stream a fails at minute 10 and recovers at 40 (30 min), stream b retries within one
    run from 0 to 5 (5 min), stream c fails at 50 and has not recovered: MTTR is the mean of
    the recoveries and c counts as failing since minute 50."""
    runs = [
        run("a", 0, "succeeded", 1, 1),
        run("a", 9, "failed", 1, 10),
        run("a", 20, "failed", 3, 25),  # still down: the incident started at 10
        run("a", 39, "succeeded", 1, 40),
        run("b", 0, "succeeded", 2, 5),
        run("c", 49, "failed", 1, 50),
        run("c", 55, "running", 1),
    ]
    f = figures("report", runs, DAY, truncated=False)
    assert (f.runs, f.finished, f.failed) == (7, 6, 3)
    assert (f.attempts, f.failed_attempts) == (10, 6)
    assert f.attempt_error_rate == 0.6
    assert f.run_error_rate == 0.5
    assert f.recoveries == 2
    assert f.mttr_seconds == (30 + 5) * 60 / 2
    assert f.failing == 1
    assert f.failing_since == T0 + timedelta(minutes=50)
    d = f.to_dict()
    assert d["mttr_seconds"] == 1050.0
    assert d["failing_streams"] == 1


def test_a_rule_without_runs_or_failures_has_no_errors_and_no_mttr() -> None:
    """No runs: rates 0, MTTR None; only successes: the same."""
    assert figures("report", [], DAY, False).mttr_seconds is None
    ok = figures("report", [run("a", 0, "succeeded", 1, 1)], DAY, False)
    assert ok.attempt_error_rate == 0.0
    assert ok.mttr_seconds is None
    assert ok.failing == 0
