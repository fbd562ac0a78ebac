"""The real ``eventflow run --http`` with credentials: without one every read and action is
refused, a read token reads, an operate token also acts, health checks stay open, a trusted
proxy's user is believed only from its address, a non-loopback server refuses to start open,
and no token ever appears in a response or a log line."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.acceptance.harness import EVENTFLOW, Project, wait_until
from tests.services._process import free_port, wait_listening

READ_TOKEN = "read-9f86d081884c7d659a2feaa0c55ad015"
OPERATE_TOKEN = "operate-3c59dc048e8850243be8079a5c74d079"
FILE_TOKEN = "file-b6d767d2f8ed5d21a44b0e5886680cb9"
TOKENS = (READ_TOKEN, OPERATE_TOKEN, FILE_TOKEN)
PIPELINE = """
name: secured
sensors:
  open: {type: http, auth: none}
datasets:
  manual: {sensor: open, key: "manual/{n}"}
rules:
  fails:
    when: {any: [manual]}
    run: {command: [sh, -c, "exit 3"]}
engine: {poll_interval: 100ms}
"""
READS = (
    "/",
    "/openapi.json",
    "/metrics",
    "/api/status",
    "/api/rules",
    "/api/matches",
    "/api/runs",
    "/api/deadletters",
    "/api/sensors",
    "/api/workers",
    "/api/versions",
    "/api/plan",
    "/api/runs/nope",
    "/api/runs/nope/logs",
)
JSON = {"Content-Type": "application/json"}
EMIT = {"dataset": "manual", "partition": {"n": "1"}}


@contextlib.contextmanager
def serve(p: Project, *args: str, host: str = "127.0.0.1", **env: str) -> Iterator[httpx.Client]:
    """``eventflow run --http HOST:PORT ARGS`` with ``env`` (and no other ``EVENTFLOW_``
    variable); a client for it once it is ready."""
    port = free_port()
    log = p.root / f"eventflow-{len(p.logs)}.log"
    p.logs.append(log)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
    with log.open("wb") as out:
        p.proc = subprocess.Popen(
            [
                *EVENTFLOW,
                "run",
                str(p.file),
                "--log-format",
                "json",
                "--http",
                f"{host}:{port}",
                *args,
            ],
            cwd=p.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**environ, "PYTHONUNBUFFERED": "1", **env},
        )
    wait_listening(p.proc, [port], timeout=30, what="eventflow run --http")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200)
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Recorder:
    """Every response body a test saw, to check that no token is among them."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def __call__(self, response: httpx.Response) -> httpx.Response:
        response.read()
        self.bodies.append(f"{response.headers}\n{response.text}")
        return response

    def leaked(self, p: Project) -> Iterator[str]:
        """The tokens found in a response or a log line."""
        logs = [log.read_text(errors="replace") for log in p.logs]
        for token in TOKENS:
            if any(token in text for text in (*self.bodies, *logs)):
                yield token


def test_read_and_operate_tokens(tmp_path: Path) -> None:
    """No credential: every read and action is 401; the read token reads but gets 403 on an
    action; the operate token emits and retries, and each action is logged with its
    principal (a fingerprint, never the token); health checks stay open."""
    p = Project(tmp_path, PIPELINE)
    seen = Recorder()
    env = {"EVENTFLOW_READ_TOKEN": READ_TOKEN, "EVENTFLOW_API_TOKEN": OPERATE_TOKEN}
    with serve(p, **env) as client:
        for path in ("/healthz", "/readyz"):
            assert seen(client.get(path)).status_code == 200
        for path in READS:
            answer = seen(client.get(path))
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert "Bearer TOKEN" in answer.json()["error"]
            assert seen(client.get(path, headers=bearer("wrong"))).status_code == 401, path
        actions = [("/api/events", EMIT), ("/api/runs/nope/retry", {})]
        for path, body in actions:
            assert seen(client.post(path, json=body)).status_code == 401, path
            refused = seen(client.post(path, json=body, headers=bearer(READ_TOKEN)))
            assert refused.status_code == 403, path
            assert "operate" in refused.json()["error"]
        for path in READS:
            for token in (READ_TOKEN, OPERATE_TOKEN):
                answer = seen(client.get(path, headers=bearer(token)))
                assert answer.status_code == (404 if "nope" in path else 200), path
        emitted = seen(client.post("/api/events", json=EMIT, headers=bearer(OPERATE_TOKEN)))
        assert emitted.status_code == 202

        def failed() -> list[dict[str, str]]:
            runs = client.get("/api/runs", params={"status": "failed"}, headers=bearer(READ_TOKEN))
            return list(seen(runs).json()["runs"])

        run_id = wait_until(failed)[0]["run_id"]
        retried = seen(
            client.post(f"/api/runs/{run_id}/retry", json={}, headers=bearer(OPERATE_TOKEN))
        )
        assert retried.status_code == 200
    p.stop()
    actions_logged = [e for e in p.log_events() if e["event"] == "http_action"]
    by_status = {(e["path"], e["status"]): e["principal"] for e in actions_logged}
    assert by_status[("/api/events", 202)].startswith("operate-token:")
    assert by_status[(f"/api/runs/{run_id}/retry", 200)].startswith("operate-token:")
    assert by_status[("/api/events", 403)].startswith("read-token:")
    assert by_status[("/api/events", 401)] is None
    assert list(seen.leaked(p)) == []


def test_token_file_public_metrics_sessions_and_a_trusted_proxy(tmp_path: Path) -> None:
    """Tokens from a file work; `metrics: public` opens /metrics only; a sign-in sets an
    HttpOnly, SameSite=Strict cookie that is not the token and opens the page; a proxy's
    user is believed from its address with the role of its groups, and not from elsewhere."""
    p = Project(
        tmp_path,
        PIPELINE
        + """
server:
  auth:
    operate_token_file: secrets/operate
    metrics: public
    trusted_proxy:
      from: [127.0.0.0/8]
      read_roles: [viewers]
      operate_roles: [ops]
""",
    )
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "operate").write_text(f"old-rotated-token-value\n{FILE_TOKEN}\n")
    seen = Recorder()
    with serve(p) as client:
        assert seen(client.get("/metrics")).status_code == 200
        assert seen(client.get("/api/status")).status_code == 401
        assert seen(client.get("/api/status", headers=bearer(FILE_TOKEN))).status_code == 200

        login = seen(client.post("/login", json={"token": FILE_TOKEN}))
        assert login.status_code == 200
        assert login.json()["role"] == "operate"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert FILE_TOKEN not in cookie
        assert seen(client.get("/")).status_code == 200  # the client keeps the cookie
        assert seen(client.post("/logout", json={})).status_code == 200
        client.cookies.clear()
        assert seen(client.post("/login", json={"token": "guess"})).status_code == 401
        page = seen(client.get("/", headers={"Accept": "text/html"}))
        assert page.status_code == 401
        assert 'id="login"' in page.text

        viewer = {"X-Forwarded-User": "vera", "X-Forwarded-Groups": "viewers"}
        operator = {"X-Forwarded-User": "otto", "X-Forwarded-Groups": "staff, ops"}
        stranger = {"X-Forwarded-User": "sam", "X-Forwarded-Groups": "staff"}
        assert seen(client.get("/api/runs", headers=viewer)).status_code == 200
        assert seen(client.post("/api/events", json=EMIT, headers=viewer)).status_code == 403
        assert seen(client.post("/api/events", json=EMIT, headers=operator)).status_code == 202
        assert seen(client.get("/api/runs", headers=stranger)).status_code == 401
    p.stop()
    principals = {e["principal"] for e in p.log_events() if e["event"] == "http_action"}
    assert {"otto", "vera"} <= principals
    assert any(e["event"] == "http_login_refused" for e in p.log_events())
    assert list(seen.leaked(p)) == []


def test_a_proxy_header_from_an_untrusted_address_is_ignored(tmp_path: Path) -> None:
    """With the proxy trusted from another network only, its headers prove nothing."""
    p = Project(
        tmp_path,
        PIPELINE + "server: {auth: {trusted_proxy: {from: [10.0.0.0/8], header_roles: null}}}\n",
    )
    with serve(p) as client:
        headers = {"X-Forwarded-User": "mallory"}
        assert client.get("/api/runs", headers=headers).status_code == 401
        assert client.post("/api/events", json=EMIT, headers=headers).status_code == 401


def test_an_open_server_beyond_loopback_refuses_to_start(tmp_path: Path) -> None:
    """`--http 0.0.0.0:PORT` without a credential exits 2 with one line naming `--insecure`
    and `server.auth`; with `--insecure` it serves."""
    p = Project(tmp_path, PIPELINE)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
    refused = subprocess.run(
        [*EVENTFLOW, "run", str(p.file), "--http", f"0.0.0.0:{free_port()}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "--insecure" in refused.stderr
    assert "server.auth" in refused.stderr
    assert "Traceback" not in refused.stderr
    with serve(p, "--insecure", host="0.0.0.0") as client:
        assert client.get("/api/status").status_code == 200
