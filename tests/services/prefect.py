"""A Prefect 3 server and a served flow for the hand-off tests, on a free loopback port.

``prefect_server`` (session) runs ``prefect server start`` from Prefect's own virtual
environment (``scripts/install-prefect.sh`` makes it, cached in ``~/.cache/eventflow-test``;
the fixture runs the script, which costs a fraction of a second once it is there) with a
private ``PREFECT_HOME`` (its SQLite database), and a second process that serves the flow of
``tests/data/prefect/flows.py`` as deployment ``report-flow/report``: that process picks up
the deployment's scheduled flow runs (polling every second) and runs each in a subprocess.
Both are stopped by their pids at the end of the session. The server requires an auth
string (``PREFECT_SERVER_API_AUTH_STRING``, HTTP basic authentication): every client sends
``PrefectServer.authorization``, and a test of bad credentials gets a real 401.

``EVENTFLOW_TEST_PREFECT_API_URL=http://host:port/api`` uses an external Prefect server
instead (with ``EVENTFLOW_TEST_PREFECT_AUTH_STRING=user:password`` if it requires one); the
flow is still served from here (it must write the files the tests read).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services._process import free_port, stop, wait_listening

ENV_VAR = "EVENTFLOW_TEST_PREFECT_API_URL"
AUTH_VAR = "EVENTFLOW_TEST_PREFECT_AUTH_STRING"
ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install-prefect.sh"
FLOWS = ROOT / "tests" / "data" / "prefect" / "flows.py"
FLOW = "report-flow"
DEPLOYMENT = "report"
VERSION = os.environ.get("PREFECT_VERSION", "3.8.8")


def prefect_venv() -> Path:
    """Prefect's virtual environment, installed by ``scripts/install-prefect.sh`` if missing."""
    subprocess.run([str(INSTALL)], check=True, timeout=900)
    cache = Path(os.environ.get("EVENTFLOW_TEST_CACHE", Path.home() / ".cache/eventflow-test"))
    return cache / f"prefect-{VERSION}" / "venv"


@dataclass
class PrefectServer:
    """A Prefect API with the served test flow, and what that flow received."""

    api_url: str
    auth_string: str
    """``user:password`` the server requires; "" when it requires none."""
    out: Path
    """Where the served flow writes ``received.jsonl`` and reads ``sleep-DT``/``fail-DT``."""
    started_in: float
    """Seconds from starting the server to the deployment being served."""

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value that the server accepts."""
        return basic(self.auth_string)

    def client(self) -> httpx.Client:
        headers = {"Authorization": self.authorization} if self.auth_string else {}
        return httpx.Client(base_url=self.api_url, headers=headers, timeout=30)

    def received(self, dt: str) -> list[dict[str, Any]]:
        """What the flow's runs for partition ``dt`` received, oldest first."""
        path = self.out / "received.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [r for r in map(json.loads, lines) if r["dt"] == dt]

    def steer(self, dt: str, *, sleep: float | None = None, fail: bool = False) -> None:
        """Make the next run of ``dt`` sleep ``sleep`` seconds, and fail once if ``fail``."""
        if sleep is not None:
            (self.out / f"sleep-{dt}").write_text(str(sleep))
        if fail:
            (self.out / f"fail-{dt}").touch()

    def flow_runs(self, key: str) -> list[dict[str, Any]]:
        """The flow runs with idempotency key ``key`` (the deployment's)."""
        with self.client() as client:
            response = client.post(
                "/flow_runs/filter", json={"flow_runs": {"idempotency_key": {"any_": [key]}}}
            )
            response.raise_for_status()
            runs: list[dict[str, Any]] = response.json()
            return runs

    def flow_run(self, run_id: str) -> dict[str, Any]:
        with self.client() as client:
            response = client.get(f"/flow_runs/{run_id}")
            response.raise_for_status()
            found: dict[str, Any] = response.json()
            return found


def basic(auth_string: str) -> str:
    """``Basic BASE64``: how Prefect's clients send an auth string."""
    return "Basic " + base64.b64encode(auth_string.encode()).decode()


def _environ(home: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        **extra,
    }


def _wait_http(
    url: str, proc: subprocess.Popen[bytes], timeout: float, what: str, auth_string: str = ""
) -> None:
    """Wait until ``url`` answers 200 while ``proc`` lives."""
    headers = {"Authorization": basic(auth_string)} if auth_string else {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} at start")
        try:
            if httpx.get(url, headers=headers, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} was not ready at {url} in {timeout}s")


def _serve_flow(
    venv: Path, api_url: str, auth_string: str, home: Path, out: Path
) -> subprocess.Popen[bytes]:
    """Start the process that serves the test flow; return once its deployment exists.

    Its first API calls may fail while a busy server finishes starting: a process that
    exits at start is started again (three times at most)."""
    env = _environ(home, PREFECT_API_URL=api_url, FLOW_OUT=str(out))
    env["PREFECT_RUNNER_POLL_FREQUENCY"] = "1"
    if auth_string:
        env["PREFECT_API_AUTH_STRING"] = auth_string
    for _ in range(3):
        with (home / "flow.log").open("ab") as log:
            proc = subprocess.Popen(
                [str(venv / "bin" / "python"), str(FLOWS)],
                cwd=FLOWS.parent,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"{api_url}/deployments/name/{FLOW}/{DEPLOYMENT}"
        try:
            _wait_http(url, proc, 120, "the served Prefect flow", auth_string)
        except RuntimeError:
            if proc.poll() is None:
                raise
            continue
        return proc
    raise RuntimeError(f"the served Prefect flow did not start: see {home / 'flow.log'}")


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[PrefectServer]:
    venv = prefect_venv()
    home = Path(tempfile.mkdtemp(prefix="eventflow-prefect-"))
    out = home / "out"
    out.mkdir()
    began = time.monotonic()
    server: subprocess.Popen[bytes] | None = None
    api_url = os.environ.get(ENV_VAR, "")
    auth_string = os.environ.get(AUTH_VAR, "")
    if not api_url:
        auth_string = f"eventflow:{secrets.token_urlsafe(12)}"
        port = free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        with (home / "server.log").open("wb") as log:
            server = subprocess.Popen(
                [str(venv / "bin" / "prefect"), "server", "start",
                 "--host", "127.0.0.1", "--port", str(port)],
                env=_environ(home, PREFECT_SERVER_API_AUTH_STRING=auth_string),
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_listening(server, [port], timeout=180, what="prefect server")
        _wait_http(f"{api_url}/health", server, 60, "prefect server")
    flow = _serve_flow(venv, api_url, auth_string, home, out)
    try:
        yield PrefectServer(api_url, auth_string, out, time.monotonic() - began)
    finally:
        stop(flow)
        with contextlib.suppress(ProcessLookupError):  # flow runs it started, in its session
            os.killpg(flow.pid, signal.SIGKILL)
        if server is not None:
            stop(server)
        shutil.rmtree(home, ignore_errors=True)
