"""The real ``eventflow run --http`` refuses cross-site and rebinding requests, closes
half-open connections, logs a disconnect in one line, and fires a webhook once per
delivery (Standard Webhooks) and once per path."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

from tests.acceptance.harness import EVENTFLOW, Project, wait_until
from tests.services._process import free_port, wait_listening

KEY = b"acceptance-standard-webhooks-key"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
PIPELINE = """
name: guarded
sensors:
  hooks: {type: http, auth: hmac, signature: standard, secret_env: HOOK_SECRET}
  open: {type: http, auth: none}
datasets:
  pings: {sensor: hooks, partition: {n: payload.n}}
  opened: {sensor: open, partition: {n: payload.n}}
  manual: {sensor: open, key: "manual/{n}"}
rules:
  ping:
    when: {any: [pings]}
    run: {command: [sh, -c, "echo {run_id} >> pings.log"]}
  opened:
    when: {any: [opened]}
    run: {command: [sh, -c, "echo {run_id} >> opened.log"]}
  manual:
    when: {any: [manual]}
    run: {command: [sh, -c, "true"]}
engine: {poll_interval: 100ms}
server: {header_timeout: 1s, body_timeout: 1s}
"""


def start(p: Project) -> int:
    """``eventflow run --http`` on a free port (the harness kills it at teardown)."""
    port = free_port()
    log = p.root / f"eventflow-{len(p.logs)}.log"
    p.logs.append(log)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOOK_SECRET": SECRET}
    env.pop("EVENTFLOW_CRASH_AT", None)
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
    return port


def standard_headers(delivery: str, body: bytes, stamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers of a delivery signed now (or at ``stamp``)."""
    ts = str(int(time.time()) if stamp is None else stamp)
    signed = f"{delivery}.{ts}.".encode() + body
    sig = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    return {"webhook-id": delivery, "webhook-timestamp": ts, "webhook-signature": f"v1,{sig}"}


def count_runs(p: Project, rule: str) -> int:
    return len(p.cli_json("runs", "--rule", rule, "--limit", "1000"))


def test_cross_site_and_foreign_host_requests_are_refused(tmp_path: Path) -> None:
    """A cross-site text/plain POST /api/events (415), a JSON one with a foreign Origin or
    Sec-Fetch-Site: cross-site (403) and any request with a foreign Host (400) start nothing;
    the same-origin JSON POST is accepted."""
    p = Project(tmp_path, PIPELINE)
    port = start(p)
    event = json.dumps({"dataset": "manual", "partition": {"n": "1"}}).encode()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        plain = client.post(
            "/api/events",
            content=event,
            headers={"Content-Type": "text/plain", "Origin": "http://evil.example"},
        )
        assert plain.status_code == 403
        form = client.post("/api/events", content=event, headers={"Content-Type": "text/plain"})
        assert form.status_code == 415
        assert "application/json" in form.json()["error"]
        json_ct = {"Content-Type": "application/json"}
        foreign = client.post(
            "/api/events", content=event, headers={**json_ct, "Origin": "http://evil.example"}
        )
        assert foreign.status_code == 403
        assert "server.allowed_origins" in foreign.json()["error"]
        fetch = client.post(
            "/api/events", content=event, headers={**json_ct, "Sec-Fetch-Site": "cross-site"}
        )
        assert fetch.status_code == 403
        hook = client.post(
            "/hooks/open", json={"n": "9"}, headers={"Origin": "http://evil.example"}
        )
        assert hook.status_code == 403
        for path in ("/api/runs", "/readyz", "/"):
            rebound = client.get(path, headers={"Host": f"attacker.example:{port}"})
            assert rebound.status_code == 400, path
            assert "server.allowed_hosts" in rebound.json()["error"]
        assert client.get("/healthz", headers={"Host": "10.1.2.3"}).status_code == 200
        for host in (f"localhost:{port}", f"[::1]:{port}", f"127.0.0.1:{port}"):
            assert client.get("/api/runs", headers={"Host": host}).status_code == 200
        same = client.post(
            "/api/events", content=event, headers={**json_ct, "Origin": f"http://127.0.0.1:{port}"}
        )
        assert same.status_code == 202
        wait_until(lambda: client.get("/api/runs", params={"rule": "manual"}).json()["runs"])
    assert p.stop() == 0
    assert count_runs(p, "manual") == 1
    assert count_runs(p, "opened") == 0


def test_replayed_standard_webhook_fires_once(tmp_path: Path) -> None:
    """A signed Standard Webhooks delivery sent four more times with new Idempotency-Keys is
    acknowledged each time and fires once; a stale or wrongly signed one is refused (401)."""
    p = Project(tmp_path, PIPELINE)
    port = start(p)
    body = json.dumps({"n": "1"}).encode()
    headers = standard_headers("msg_1", body)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for replay in range(5):
            sent = client.post(
                "/hooks/hooks", content=body, headers={**headers, "Idempotency-Key": f"k{replay}"}
            )
            assert sent.status_code == 200
        stale = standard_headers("msg_2", body, stamp=int(time.time()) - 3600)
        refused = client.post("/hooks/hooks", content=body, headers=stale)
        assert refused.status_code == 401
        assert "tolerance" in refused.json()["error"]
        forged = {**standard_headers("msg_3", body), "webhook-id": "msg_4"}
        assert client.post("/hooks/hooks", content=body, headers=forged).status_code == 401
        wait_until(lambda: client.get("/api/runs", params={"rule": "ping"}).json()["runs"])
    assert p.stop() == 0
    assert count_runs(p, "ping") == 1
    assert len((tmp_path / "pings.log").read_text().splitlines()) == 1


def test_same_body_on_two_paths_fires_twice(tmp_path: Path) -> None:
    """One body posted to two webhook paths is two events with two ids, and both fire."""
    p = Project(tmp_path, PIPELINE)
    port = start(p)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        first = client.post("/hooks/open/a", json={"n": "1"})
        second = client.post("/hooks/open/b", json={"n": "1"})
        again = client.post("/hooks/open/b", json={"n": "1"})
        assert [r.status_code for r in (first, second, again)] == [200, 200, 200]
        assert first.json()["id"] != second.json()["id"]
        assert second.json()["id"] == again.json()["id"]
    assert p.stop() == 0
    assert count_runs(p, "opened") == 2


def test_half_open_connections_are_closed(tmp_path: Path) -> None:
    """Connections that send half a request head, or a head and half its body, are closed
    by the server (the body ones after a 408), and the server still answers."""
    p = Project(tmp_path, PIPELINE)
    port = start(p)
    sockets = []
    for n in range(30):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        if n % 2:
            sock.sendall(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        else:
            sock.sendall(
                b"POST /hooks/open HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Length: 100\r\n\r\n" + b'{"n": "'
            )
        sockets.append(sock)
    answers = []
    for sock in sockets:
        received = b""
        while chunk := sock.recv(65536):  # b"" once the server closed; a timeout fails
            received += chunk
        answers.append(received)
        sock.close()
    assert all(a == b"" for a in answers[1::2])
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers[::2])
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        assert client.get("/healthz").status_code == 200
    assert p.stop() == 0
    assert count_runs(p, "opened") == 0


def test_client_disconnect_is_one_log_line(tmp_path: Path) -> None:
    """A client that hangs up half-way through a webhook body is logged as one
    ``http_client_disconnected`` line with the path, and no traceback."""
    p = Project(tmp_path, PIPELINE)
    port = start(p)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /hooks/open/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"n": '
        )
    wait_until(lambda: [e for e in p.log_events() if e["event"] == "http_client_disconnected"])
    assert p.stop() == 0
    [line] = [e for e in p.log_events() if e["event"] == "http_client_disconnected"]
    assert line["path"] == "/hooks/open/x"
    text = p.logs[-1].read_text()
    assert "Traceback" not in text
    assert '"level": "error"' not in text
