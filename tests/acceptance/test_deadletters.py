"""Dead letters with the real process: a webhook the pipeline cannot read is dead-lettered,
the pipeline is fixed, `eventflow deadletters redrive` makes the rule fire exactly once
(also when the process is SIGKILLed mid-redrive), and a message that still fails stays."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.harness import EVENTFLOW, Project, lines, wait_until
from tests.services._process import free_port, wait_listening

SECRET = "deadletter-secret"
BROKEN = """
name: orders
sensors:
  hooks: {type: http, auth: bearer, secret_env: HOOK_SECRET}
datasets:
  orders: {sensor: hooks, partition: {dt: payload.day}}
rules:
  load:
    when: {any: [orders], by: [dt]}
    run: {command: [sh, -c, 'echo "{run_id} $EVENTFLOW_VAR_DT" >> runs.log']}
engine: {poll_interval: 100ms}
"""
FIXED = BROKEN.replace("payload.day", "payload.date")


def start(p: Project, port: int, crash_at: str | None = None) -> subprocess.Popen[bytes]:
    """``eventflow run --http PORT``, once it answers ``/readyz``."""
    log = p.root / f"eventflow-{len(p.logs)}.log"
    p.logs.append(log)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOOK_SECRET": SECRET}
    env.pop("EVENTFLOW_CRASH_AT", None)
    env.pop("EVENTFLOW_API_TOKEN", None)
    if crash_at:
        env["EVENTFLOW_CRASH_AT"] = crash_at
    with log.open("wb") as out:
        p.proc = subprocess.Popen(
            [*EVENTFLOW, "run", str(p.file), "--log-format", "json", "--http", str(port)],
            cwd=p.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    wait_listening(p.proc, [port], timeout=30, what="eventflow run --http")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200)
    return p.proc


def deliver(port: int, delivery: str, payload: dict[str, Any]) -> int:
    headers = {"Authorization": f"Bearer {SECRET}", "Idempotency-Key": delivery}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        return client.post("/hooks/hooks", json=payload, headers=headers).status_code


def letters(p: Project, *args: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = p.cli_json("deadletters", *args)
    return result


def show(p: Project, event_id: str) -> dict[str, Any]:
    """``eventflow deadletters FILE show ID --json``."""
    result = p.cli("deadletters", str(p.file), "show", event_id, "--json")
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def api(port: int, path: str) -> Any:
    """``GET path`` of the running process (cheaper to poll than a CLI process)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        return client.get(path).json()


def dead_lettered(tmp_path: Path) -> tuple[Project, int, str, str]:
    """The broken pipeline, run: one webhook it cannot read (and will once fixed), one it
    never will; then the pipeline is fixed and started again."""
    p = Project(tmp_path, BROKEN)
    port = free_port()
    start(p, port)
    assert deliver(port, "d-1", {"date": "2026-05-01", "rows": 3}) == 200
    assert deliver(port, "d-2", {"nothing": True}) == 200
    wait_until(lambda: api(port, "/api/deadletters")["total"] == 2)
    found = letters(p)
    assert p.stop() == 0
    by_payload = {"date" in d["excerpt"]: d["event_id"] for d in found}
    assert all(d["redrivable"] and d["status"] == "open" for d in found)
    p.file.write_text(FIXED)
    return p, port, by_payload[True], by_payload[False]


def test_a_fixed_pipeline_redrives_a_dead_letter_once(tmp_path: Path) -> None:
    """The dry run previews the fixed pipeline's reading; the redrive fires the rule once
    and marks the dead letter redriven (audited); a redelivery and a second redrive fire
    nothing more; a message that still fails stays open with its new error."""
    p, port, good, bad = dead_lettered(tmp_path)
    start(p, port)
    preview = p.cli_json("deadletters", "redrive", good, bad, "--dry-run")
    assert preview[0]["detail"] == "would announce orders dt=2026-05-01"
    assert preview[1]["detail"].startswith("would fail: dataset orders: partition variable")
    assert show(p, good)["status"] == "open"  # a dry run changes nothing

    asked = p.cli("deadletters", str(p.file), "redrive", good, bad)
    assert "redrives it within its poll interval" in asked.stdout
    wait_until(lambda: api(port, f"/api/deadletters/{good}")["status"] == "redriven")
    wait_until(lambda: len(api(port, f"/api/deadletters/{bad}")["history"]) == 2)
    wait_until(lambda: lines(p.root / "runs.log"))
    detail = show(p, good)
    assert [h["action"] for h in detail["history"]] == ["redrive_requested", "redriven"]
    assert detail["history"][0]["by"].startswith("cli:")
    assert detail["message"]["payload"] == {"date": "2026-05-01", "rows": 3}
    failed = show(p, bad)
    assert failed["status"] == "open"
    assert [h["action"] for h in failed["history"]] == ["redrive_requested", "redrive_failed"]
    assert "payload.date" in failed["error"]

    again = p.cli("deadletters", str(p.file), "redrive", good, check=False)
    assert again.returncode == 1
    assert "is redriven: only an open one can be redriven" in again.stdout
    assert deliver(port, "d-1", {"date": "2026-05-01", "rows": 3}) == 200  # a redelivery
    wait_until(lambda: api(port, "/api/status")["counts"]["runs_succeeded"] == 1)
    assert [line.split()[1] for line in lines(p.root / "runs.log")] == ["2026-05-01"]
    assert [d["event_id"] for d in letters(p)] == [bad]
    assert [d["event_id"] for d in letters(p, "--status", "redriven")] == [good]

    p.cli("deadletters", str(p.file), "discard", "--all")
    assert letters(p) == []
    assert [d["event_id"] for d in letters(p, "--status", "discarded")] == [bad]
    assert p.stop() == 0
    names = [e.get("event") for e in p.log_events()]
    assert "deadletter_redriven" in names
    assert "deadletter_redrive_failed" in names
    assert len(lines(p.root / "runs.log")) == 1


@pytest.mark.parametrize("point", ["deadletter.before_commit", "deadletter.after_commit"])
def test_a_redrive_killed_at_its_commit_loses_nothing_and_fires_once(
    tmp_path: Path, point: str
) -> None:
    """SIGKILL just before or just after the commit that admits the redriven event: after a
    restart the rule has fired exactly once and the dead letter is redriven once."""
    p, port, good, _ = dead_lettered(tmp_path)
    proc = start(p, port, crash_at=point)
    p.cli("deadletters", str(p.file), "redrive", good)
    assert proc.wait(30) == -9
    assert any(e.get("point") == point for e in p.log_events())
    start(p, port)
    wait_until(lambda: api(port, f"/api/deadletters/{good}")["status"] == "redriven")
    wait_until(lambda: api(port, "/api/status")["counts"]["runs_succeeded"] == 1)
    assert p.stop() == 0
    assert len(lines(p.root / "runs.log")) == 1
    actions = [h["action"] for h in show(p, good)["history"]]
    assert actions == ["redrive_requested", "redriven"]
