"""Failure notifications end to end: the real CLI with `on_failure` / `on_missed` hooks,
SIGKILLed at a crash point, and the Slack and PagerDuty recipes of the docs against local
receivers that check the request shapes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventflow_sensors.http import signatures
from tests.acceptance.harness import Project, lines, wait_until
from tests.services.receiver import Receiver, Request

ROOT = Path(__file__).resolve().parents[2]

HOOKED = """
name: alerting
sensors:
  landing: {type: directory, path: ./landing, ready: {stable_for: 100ms}, poll_interval: 500ms}
datasets:
  orders: {sensor: landing, key: "orders/{dt}.csv"}
rules:
  report:
    when: {all: [orders]}
    run:
      command: [sh, -c, 'echo "boom for $EVENTFLOW_VAR_DT" >&2; exit 3']
      retries: 1
      backoff: {initial: 100ms, max: 100ms}
    on_failure:
      command:
        - sh
        - -c
        - >-
          if [ "$EVENTFLOW_ATTEMPT" = 1 ]; then exit 1; fi;
          echo "$EVENTFLOW_RUN_ID $EVENTFLOW_VAR_FAILED_RUN_ID $EVENTFLOW_VAR_FAILED_ATTEMPT
          $EVENTFLOW_VAR_DT $EVENTFLOW_VAR_FAILED_RULE" >> hooks.log;
          printf %s "$EVENTFLOW_VAR_LOG_TAIL" > tail.txt;
          printf %s "$EVENTFLOW_VAR_ERROR" > error.txt
      retries: 2
      backoff: {initial: 100ms, max: 100ms}
publish:
  - {type: file, path: out/events.jsonl}
engine: {poll_interval: 100ms}
"""

MISSED = """
name: deadlines
sensors:
  landing: {type: directory, path: ./landing, ready: {stable_for: 100ms}, poll_interval: 500ms}
datasets:
  orders: {sensor: landing, key: "orders/{dt}.csv"}
  customers: {sensor: landing, key: "customers/{dt}.csv"}
rules:
  report:
    when: {all: [orders, customers], by: [dt]}
    expect_by: "{dt}T06:00Z + 1d"
    run: {command: ["true"]}
    on_missed:
      command:
        - sh
        - -c
        - >-
          echo "$EVENTFLOW_VAR_MISSED_RULE $EVENTFLOW_VAR_DT $EVENTFLOW_VAR_DEADLINE
          $EVENTFLOW_VAR_MISSING $EVENTFLOW_VAR_ARRIVED" >> missed.log
engine: {poll_interval: 100ms}
"""


def by_rule(p: Project) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for run in p.runs():
        out.setdefault(run["rule"], []).append(run)
    return out


def done(p: Project, rule: str, status: str) -> bool:
    try:
        return [r["status"] for r in by_rule(p).get(rule, [])] == [status]
    except AssertionError:
        return False


def test_on_failure_hook_runs_once_across_a_sigkill_after_the_failure(tmp_path: Path) -> None:
    """Killed right after the last attempt's failure was recorded, eventflow runs the
    `on_failure` hook once after the restart, with the failed run's context; the hook's own
    first attempt fails and is retried, and the failed run stays `failed`."""
    p = Project(tmp_path, HOOKED)
    p.land("orders/2024-01-01.csv")
    # The first result is attempt 1's (retried), the second the last attempt's failure.
    p.start(crash_at="dispatcher.after_result:2")
    assert p.wait_exit(timeout=60) == -9, "the crash point was not reached"
    runs = by_rule(p)
    assert [r["status"] for r in runs["report"]] == ["failed"]
    assert [(r["status"], r["attempt"]) for r in runs["report:on_failure"]] == [("pending", 0)]
    assert not (tmp_path / "hooks.log").exists()
    p.start()
    try:
        wait_until(lambda: done(p, "report:on_failure", "succeeded"), timeout=60, interval=0.3)
    finally:
        assert p.stop() == 0
    runs = by_rule(p)
    [failed] = runs["report"]
    [hook] = runs["report:on_failure"]
    assert (failed["status"], failed["attempt"]) == ("failed", 2)
    assert (hook["status"], hook["attempt"]) == ("succeeded", 2)
    assert hook["partition"] == {"dt": "2024-01-01"}
    assert hook["notes"]["hook"]["failed_run_id"] == failed["run_id"]
    [line] = lines(tmp_path / "hooks.log")
    assert line.split() == [hook["run_id"], failed["run_id"], "2", "2024-01-01", "report"]
    assert (tmp_path / "tail.txt").read_text().strip() == "boom for 2024-01-01"
    assert "3" in (tmp_path / "error.txt").read_text()
    failures = [e for e in p.published() if e["type"] == "eventflow.run.failed"]
    assert {e["data"]["rule"] for e in failures} == {"report"}


def test_on_missed_hook_runs_once_with_the_deadline_and_what_is_missing(tmp_path: Path) -> None:
    """A partition past its `expect_by` with an input missing runs `on_missed` once, with the
    deadline and the missing and arrived datasets; a restart does not run it again."""
    p = Project(tmp_path, MISSED)
    p.land("orders/2024-01-01.csv")
    p.start()
    try:
        wait_until(lambda: done(p, "report:on_missed", "succeeded"), timeout=60, interval=0.3)
    finally:
        assert p.stop() == 0
    p.start()
    wait_until(p.started, timeout=30)
    assert p.stop() == 0
    [line] = lines(tmp_path / "missed.log")
    assert line.split() == [
        "report",
        "2024-01-01",
        "2024-01-02T06:00:00+00:00",
        "customers",
        "orders",
    ]


def recipe(title: str) -> str:
    """The pipeline of a recipe section of docs/howto/notifications.md."""
    page = (ROOT / "docs/howto/notifications.md").read_text()
    section = page.split(f"## Recipe: {title}", 1)[1]
    return re.findall(r"```yaml\n(.*?)```", section, re.S)[0]


@pytest.fixture
def receiver() -> object:
    r = Receiver().start()
    yield r
    r.stop()


def test_slack_recipe_posts_text_messages(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Slack recipe posts `{"text": ...}` to the incoming webhook, once for the failure
    (with the error and the log tail) and once for the missed deadline."""
    monkeypatch.setenv("SLACK_WEBHOOK_URL", receiver.url + "/services/T000/B000/XXXX")
    p = Project(tmp_path, recipe("Slack"))
    p.land("orders/2024-01-01.csv")
    p.start()
    try:
        wait_until(lambda: len(receiver.accepted()) >= 2, timeout=60, interval=0.3)
        wait_until(lambda: done(p, "daily_report:on_missed", "succeeded"), timeout=30)
    finally:
        assert p.stop() == 0
    got = receiver.accepted()
    assert len(got) == 2
    assert {r.path for r in got} == {"/services/T000/B000/XXXX"}
    assert {r.headers["content-type"] for r in got} == {"application/json"}
    bodies = [json.loads(r.body) for r in got]
    assert all(set(b) == {"text"} for b in bodies)
    [failure] = [b["text"] for b in bodies if "failed for" in b["text"]]
    assert "*daily_report* failed for `dt=2024-01-01`" in failure
    assert "exit" in failure
    assert "report for 2024-01-01 failed: no disk" in failure
    [missed] = [b["text"] for b in bodies if "missed its deadline" in b["text"]]
    assert "2024-01-02T06:00:00+00:00" in missed


def test_pagerduty_recipe_triggers_with_a_dedup_key_from_the_run(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PagerDuty recipe sends one Events API v2 `trigger` with the routing key, a
    `dedup_key` from the failed run's id and the summary; a 500 from the API is retried."""
    answers = iter([500])
    receiver.answer = lambda request: next(answers, 202)
    p = Project(tmp_path, recipe("PagerDuty"))
    p.land("orders/2024-01-01.csv")
    monkeypatch.setenv("PAGERDUTY_EVENTS_URL", receiver.url + "/v2/enqueue")
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "R0UT1NGKEY")
    p.start()
    try:
        wait_until(receiver.accepted, timeout=60, interval=0.2)
        wait_until(lambda: done(p, "daily_report:on_failure", "succeeded"), interval=0.5)
    finally:
        assert p.stop() == 0
    [failed] = by_rule(p)["daily_report"]
    statuses = [r.status for r in receiver.requests]
    assert statuses == [500, 202]
    [req] = receiver.accepted()
    assert req.path == "/v2/enqueue"
    body = json.loads(req.body)
    assert body["routing_key"] == "R0UT1NGKEY"
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == f"eventflow-{failed['run_id']}"
    payload = body["payload"]
    assert payload["summary"].startswith("daily_report failed for dt=2024-01-01: ")
    assert (payload["source"], payload["severity"]) == ("eventflow", "error")
    assert payload["custom_details"]["attempt"] == "2"
    assert "warehouse unreachable" in payload["custom_details"]["log_tail"]
    assert all(isinstance(r, Request) for r in receiver.requests)


OUTAGE = """
name: outage
sensors:
  landing: {type: directory, path: ./landing, ready: {stable_for: 100ms}, poll_interval: 500ms}
datasets:
  orders: {sensor: landing, key: "orders/{dt}.csv"}
rules:
  report:
    when: {all: [orders]}
    run: {command: ["true"]}
publish:
  - {type: file, path: out/events.jsonl}
  - {type: webhook, url: "${RECEIVER_URL}/events", secret_env: HOOK_SECRET, mode: binary,
     retries: 1, backoff: 100ms}
engine: {poll_interval: 100ms}
"""


def test_a_receiver_outage_holds_up_neither_runs_nor_other_publishers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the webhook receiver is down, partitions still fire and the file publisher
    gets every event; once it is up (answering 500 now and then) it gets them all too,
    each signature verifying, none lost."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    receiver = Receiver(fail_every=3)
    monkeypatch.setenv("RECEIVER_URL", receiver.url)
    monkeypatch.setenv("HOOK_SECRET", secret)
    p = Project(tmp_path, OUTAGE)
    days = [f"2024-01-{d:02d}" for d in range(1, 6)]
    for dt in days:
        p.land(f"orders/{dt}.csv")
    p.start()
    try:

        def file_has_all() -> bool:
            events = p.published()
            return sum(e["type"] == "eventflow.run.succeeded" for e in events) == len(days)

        wait_until(file_has_all, timeout=60, interval=0.3)
        assert receiver.requests == []
        receiver.start()
        wanted = {e["id"] for e in p.published()}
        wait_until(lambda: {r.headers["ce-id"] for r in receiver.accepted()} >= wanted, 90)
    finally:
        assert p.stop() == 0
        receiver.stop()
    key = signatures.key("standard", secret)
    for request in receiver.accepted():
        found = signatures.verify(
            "standard",
            key,
            request.headers,
            request.body,
            now=datetime.now(UTC),
            tolerance=timedelta(minutes=5),
        )
        assert found.delivery_id == request.headers["ce-id"]
    assert {r.headers["ce-id"] for r in receiver.accepted()} == {e["id"] for e in p.published()}
    assert any(r.status == 500 for r in receiver.requests)
