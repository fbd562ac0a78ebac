"""Live backfill through the real CLI and HTTP API: submitted to a running ``eventflow run``
on SQLite, done by it at its rate while live events go on, each partition fired once, even
when the process is SIGKILLed in the middle of it."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.acceptance.harness import Project, lines, wait_until
from tests.services._process import free_port

PY = sys.executable
OPERATE = "operate-" + "3" * 32
READ = "read-" + "4" * 32
TASK = """
import sys
with open("runs.log", "a") as f:
    f.write(f"{sys.argv[1]} {sys.argv[2]}\\n")
"""
# v1 runs `audit` on each day; v2 adds `daily`, which has to be backfilled for the days
# that arrived before it existed (the live engine only evaluates what arrives now).
V1 = f"""
name: live
sensors:
  landing: {{type: directory, path: ./landing, poll_interval: 200ms}}
datasets:
  orders: {{sensor: landing, key: "orders/dt={{dt}}/_SUCCESS"}}
rules:
  audit:
    when: {{all: [orders], by: [dt]}}
    run: {{command: [{PY}, task.py, audit, "{{dt}}"]}}
engine: {{poll_interval: 100ms, backfill_rate: 20}}
"""
MAY = [f"2024-05-{d:02d}" for d in range(1, 31)]
JUNE = ["2024-06-01", "2024-06-02", "2024-06-03"]


def v2() -> str:
    """V1 with the ``daily`` rule added under ``rules`` (before ``engine``)."""
    head, _, tail = V1.partition("engine:")
    daily = (
        "  daily:\n"
        "    when: {all: [orders], by: [dt]}\n"
        f'    run: {{command: [{PY}, task.py, daily, "{{dt}}"]}}\n'
    )
    return head + daily + "engine:" + tail


def ran(p: Project, rule: str) -> Counter[str]:
    return Counter(
        line.split()[1] for line in lines(p.root / "runs.log") if line.startswith(rule + " ")
    )


def prepare(tmp_path: Path) -> Project:
    """May has arrived and run `audit`; the pipeline now has `daily` too (stopped)."""
    (tmp_path / "task.py").write_text(TASK)
    p = Project(tmp_path, V1)
    p.start()
    for dt in MAY:
        p.land(f"orders/dt={dt}/_SUCCESS")
    wait_until(lambda: len(ran(p, "audit")) == len(MAY))
    assert p.stop() == 0
    p.file.write_text(v2())
    return p


def backfills(p: Project) -> list[dict[str, Any]]:
    return p.cli_json("backfills")["backfills"]  # type: ignore[no-any-return]


def test_a_backfill_submitted_to_a_running_pipeline_fires_each_partition_once_with_live_data(
    tmp_path: Path,
) -> None:
    """With `eventflow run` going, `eventflow backfill --wait` submits (the SQLite file is
    held) and follows the request to done: 30 May days fire once each, June days landing
    meanwhile fire live, `audit` does not run again, and the row names who asked."""
    p = prepare(tmp_path)
    p.start()
    wait_until(p.started)
    dry = p.cli_json("backfill", "daily", "--from", "2024-05-01", "--to", "2024-05-31", "--dry-run")
    assert Counter(row["action"] for row in dry["partitions"]) == {"run": 30}
    for dt in JUNE:
        p.land(f"orders/dt={dt}/_SUCCESS")
    done = p.cli_json("backfill", "daily", "--from", "2024-05-01", "--to", "2024-05-31", "--wait")
    assert (done["status"], done["planned"], done["fired"], done["preview"]) == ("done", 30, 30, 30)
    assert done["requested_by"].startswith("cli:")
    wait_until(lambda: len(ran(p, "daily")) == len(MAY) + len(JUNE))
    assert p.stop() == 0
    assert ran(p, "daily") == Counter(MAY + JUNE)  # each exactly once
    assert ran(p, "audit") == Counter(MAY + JUNE)
    [row] = backfills(p)
    assert row["id"] == done["id"]
    assert row["status"] == "done"
    events = [e for e in p.log_events() if e.get("component") == "backfill"]
    assert [e["event"] for e in events] == ["backfill_started", "backfill_finished"]
    assert events[0]["requested_by"] == done["requested_by"]
    again = p.cli("backfill", str(p.file), "daily", "--from", "2024-05-01", "--to", "2024-05-31")
    assert "0 to run" in again.stdout  # nothing left: no second request


def test_a_live_backfill_killed_mid_way_resumes_and_fires_nothing_twice(tmp_path: Path) -> None:
    """SIGKILL right after the third chunk committed, then right before a chunk commits:
    each restart resumes the request after its cursor, and every May day has one run (a run
    that was executing at a kill runs again under its run id, as any run does)."""
    p = prepare(tmp_path)
    p.start(crash_at="backfill.after_commit:3")
    wait_until(p.started)
    submitted = p.cli_json("backfill", "daily", "--from", "2024-05-01", "--to", "2024-05-31")
    assert submitted["status"] == "pending"
    assert p.wait_exit() == -9
    fired_first = backfills(p)[0]["fired"]
    assert fired_first <= 6  # chunks of 2 at 20/s; the row lags the committed position
    p.start(crash_at="backfill.before_commit:2")
    assert p.wait_exit() == -9
    p.start()
    wait_until(lambda: backfills(p)[0]["status"] == "done", timeout=60)
    wait_until(lambda: len(ran(p, "daily")) == len(MAY))
    assert p.stop() == 0
    [row] = backfills(p)
    assert (row["planned"], row["fired"], row["skipped"]) == (30, 30, 0)
    runs = [r for r in p.runs() if r["rule"] == "daily"]
    assert sorted(r["partition"]["dt"] for r in runs) == MAY  # one run per day
    assert {(r["generation"], r["status"]) for r in runs} == {(1, "succeeded")}
    # A run that was executing at a SIGKILL runs again (at-least-once, same run id).
    again = {r["partition"]["dt"] for r in runs if r["attempt"] > 1}
    executed = ran(p, "daily")
    assert set(executed) == set(MAY)
    assert {dt for dt, n in executed.items() if n > 1} <= again


def test_the_api_submits_previews_and_cancels_backfills_for_an_operator_only(
    tmp_path: Path,
) -> None:
    """`POST /api/backfills` needs the operate token (a reader gets 403 and nothing is
    recorded); the preview and the list need the read one; the request names the principal;
    a slow backfill cancelled through the API ends cancelled with part of the range fired."""
    p = prepare(tmp_path)
    port = free_port()
    p.start(args=["--http", str(port)], EVENTFLOW_API_TOKEN=OPERATE, EVENTFLOW_READ_TOKEN=READ)
    wait_until(p.started)
    base = f"http://127.0.0.1:{port}/api/backfills"
    read = {"Authorization": f"Bearer {READ}"}
    operate = {"Authorization": f"Bearer {OPERATE}"}
    body = {"rule": "daily", "from": "2024-05-01", "to": "2024-05-31", "rate": 4}
    with httpx.Client(timeout=30) as client:
        assert client.post(base, json=body, headers=read).status_code == 403
        assert client.get(base).status_code == 401
        assert client.get(base, headers=read).json() == {"backfills": []}
        preview = client.get(
            f"{base}/preview",
            params={"rule": "daily", "from": "2024-05-01", "to": "2024-05-31"},
            headers=read,
        )
        assert preview.status_code == 200, preview.text
        assert preview.json()["counts"]["run"] == 30
        nothing = client.get(
            f"{base}/preview", params={"rule": "daily", "from": "2025", "to": "2025"}, headers=read
        ).json()
        assert nothing["why_empty"].startswith("30 partitions found, from 2024-05-01 to 2024-05-30")
        bad = client.post(base, json={**body, "rule": "nope"}, headers=operate)
        assert bad.status_code == 400
        assert "no rule 'nope'" in bad.json()["error"]
        made = client.post(base, json=body, headers=operate)
        assert made.status_code == 202, made.text
        request = made.json()
        assert request["requested_by"].startswith("api:")
        assert OPERATE not in made.text
        one = f"{base}/{request['id']}"
        wait_until(lambda: client.get(one, headers=read).json()["fired"] >= 2)
        assert client.post(f"{one}/cancel", json={}, headers=read).status_code == 403
        cancelled = client.post(f"{one}/cancel", json={}, headers=operate)
        assert cancelled.status_code == 202
        assert cancelled.json()["cancel_requested"]["by"].startswith("api:")
        final = wait_until(
            lambda: (r := client.get(one, headers=read).json())["status"] == "cancelled" and r
        )
        assert 2 <= final["fired"] < 30
        assert client.post(f"{one}/cancel", json={}, headers=operate).status_code == 409
        assert client.get(f"{base}/bf-none", headers=read).status_code == 404
    wait_until(lambda: len(ran(p, "daily")) == final["fired"])
    assert p.stop() == 0
    assert sum(ran(p, "daily").values()) == final["fired"]
    actions = [e for e in p.log_events() if e.get("event") == "http_action"]
    assert any(e["path"] == "/api/backfills" and e["status"] == 202 for e in actions)
    assert any(e["path"] == "/api/backfills" and e["status"] == 403 for e in actions)
