"""The real ``eventflow run --http`` process: webhooks survive SIGKILL, the API matches its
OpenAPI document (schemathesis), refused webhooks record nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.acceptance.harness import EVENTFLOW, Project, wait_until
from tests.services._process import free_port, wait_listening

SECRET = "acceptance-secret"
PIPELINE = """
name: webhooks
sensors:
  hooks: {type: http, auth: hmac, secret_env: HOOK_SECRET}
  landing: {type: directory, path: ./landing}
datasets:
  pings: {sensor: hooks, partition: {n: payload.n}}
  files: {sensor: landing, key: "{n}.csv"}
rules:
  ping:
    when: {any: [pings]}
    run: {command: [sh, -c, "echo {run_id} $EVENTFLOW_VAR_N >> runs.log"]}
  join:
    when: {all: [pings, files], by: [n]}
    run: {command: [sh, -c, "echo joined $EVENTFLOW_VAR_N"]}
engine: {poll_interval: 100ms}
"""


def start(p: Project, port: int, crash_at: str | None = None) -> subprocess.Popen[bytes]:
    """``eventflow run --http`` like ``Project.start`` (which it leaves to clean up)."""
    log = p.root / f"eventflow-{len(p.logs)}.log"
    p.logs.append(log)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOOK_SECRET": SECRET}
    env.pop("EVENTFLOW_CRASH_AT", None)
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
    return p.proc


def deliver(client: httpx.Client, n: int) -> int | None:
    """POST delivery ``n``; its status code, or None when the connection broke."""
    body = json.dumps({"n": str(n)}).encode()
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": sig, "Idempotency-Key": f"delivery-{n}"}
    try:
        return client.post("/hooks/hooks", content=body, headers=headers).status_code
    except httpx.TransportError:
        return None


def sender(port: int, count: int, acked: set[int], stop: threading.Event) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        for n in range(count):
            if stop.is_set():
                return
            if deliver(client, n) == 200:
                acked.add(n)


def pings_committed(p: Project) -> set[str]:
    runs = p.cli_json("runs", "--rule", "ping", "--limit", "100000")
    return {r["partition"]["n"] for r in runs}


@pytest.mark.parametrize(
    "crash_at",
    [
        None,
        "engine.after_commit:5",
        pytest.param("engine.before_commit:5", marks=pytest.mark.slow),
    ],
)
def test_acknowledged_webhooks_survive_sigkill(tmp_path: Path, crash_at: str | None) -> None:
    """Every delivery answered 200 is in the store after a SIGKILL (at a random moment, or
    between commit and answer, or before the commit); the sender's retries of the others
    are processed once each."""
    p = Project(tmp_path, PIPELINE)
    port = free_port()
    count = 40
    start(p, port, crash_at)
    acked: set[int] = set()
    stop = threading.Event()
    thread = threading.Thread(target=sender, args=(port, count, acked, stop))
    thread.start()
    if crash_at is None:  # at a random moment of the traffic (a loaded host starts slowly)
        wait_until(lambda: acked or p.proc is None or p.proc.poll() is not None, timeout=60)
        time.sleep(random.uniform(0.05, 0.5))
        p.kill()
    p.wait_exit(30)
    stop.set()
    thread.join(30)
    assert acked, "nothing was acknowledged before the crash"
    assert {str(n) for n in acked} <= pings_committed(p), "an acknowledged webhook was lost"

    start(p, port)  # the senders retry what was not acknowledged
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for n in range(count):
            if n not in acked:
                assert deliver(client, n) == 200
        for n in random.sample(
            sorted(acked), min(5, len(acked))
        ):  # and some that were acknowledged
            assert deliver(client, n) == 200

        def fired() -> bool:
            runs = client.get("/api/runs", params={"rule": "ping", "limit": "10000"}).json()
            return len(runs["runs"]) >= count

        wait_until(fired, timeout=30)
    assert p.stop() == 0
    runs = p.cli_json("runs", "--rule", "ping", "--limit", "100000")
    assert len(runs) == count, "a delivery fired twice"


def test_bad_signature_records_nothing(tmp_path: Path) -> None:
    """Requests with a bad signature get 401 and leave no event, dead letter or run."""
    p = Project(tmp_path, PIPELINE)
    port = free_port()
    start(p, port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        for sig in ("sha256=" + "0" * 64, "", "md5=abc"):
            answer = client.post("/hooks/hooks", content=b'{"n": "1"}', headers={
                "X-Hub-Signature-256": sig, "Idempotency-Key": "x"})  # fmt: skip
            assert answer.status_code == 401
        assert client.get("/readyz").status_code == 200
    assert p.stop() == 0
    counts = p.status()["counts"]
    assert counts["events"] == 0
    assert counts["deadletters"] == 0
    assert p.runs() == []


def test_api_conforms_to_its_openapi_document(tmp_path: Path) -> None:
    """schemathesis, run against the live server, finds no response that contradicts the
    OpenAPI document and no server error."""
    p = Project(tmp_path, PIPELINE)
    port = free_port()
    start(p, port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        assert deliver(client, 1) == 200  # some state: a match, a run
        wait_until(lambda: client.get("/api/runs").json()["runs"])
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [
            str(st),
            "run",
            f"http://127.0.0.1:{port}/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            "ignored_auth,positive_data_acceptance",
            "--max-examples",
            "10",
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "10",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert p.stop() == 0
