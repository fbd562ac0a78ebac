"""Apache Airflow 3 for the hand-off tests: ``airflow standalone`` on SQLite, on loopback.

``airflow`` (session): Airflow installed into its own cached virtual environment by
``scripts/install-airflow.sh`` (its pins conflict with eventflow's), started once per session
because it is heavy (~1.2 GB, ~40 processes): ``airflow standalone`` with a fresh
``AIRFLOW_HOME``, the DAGs of ``tests/services/airflow_dags``, no examples, free ports for
the API server and both log servers, and the simple auth manager's user ``eventflow`` whose
password the fixture writes into the passwords file before the start (Airflow keeps a
password it finds there). Ready when *our* process serves the API port and the DAG
``record`` is parsed and unpaused; stopped by its process group at the end.

API tokens expire after ``JWT_SECONDS``: every hand-off that runs longer has to refresh its
token, so the tests exercise that path without waiting a day. The DAG writes what each try
received into ``Airflow.out`` (see ``airflow_dags/eventflow_record.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services._process import free_port, wait_listening

ROOT = Path(__file__).resolve().parents[2]
DAGS = Path(__file__).with_name("airflow_dags")
USER = "eventflow"
JWT_SECONDS = 20
START_TIMEOUT = 300.0
"""Seconds to wait for the first start: ~15 s on an idle machine, minutes on a busy one."""


@dataclass
class Airflow:
    """A running Airflow: its API server's URL, a user and where the test DAG writes."""

    url: str
    password: str
    out: Path
    home: Path
    log: Path
    install_seconds: float
    start_seconds: float
    username: str = USER

    def token(self) -> str:
        response = httpx.post(
            f"{self.url}/auth/token",
            json={"username": self.username, "password": self.password},
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request to ``/api/v2`` + ``path`` with a fresh token."""
        headers = {"Authorization": f"Bearer {self.token()}"}
        return httpx.request(
            method, f"{self.url}/api/v2{path}", headers=headers, timeout=30, **kwargs
        )

    def dag_runs(self, dag: str, prefix: str = "") -> list[dict[str, Any]]:
        """The DAG's runs whose id starts with ``prefix``."""
        response = self.api("GET", f"/dags/{dag}/dagRuns", params={"limit": 1000})
        response.raise_for_status()
        runs = response.json()["dag_runs"]
        return [r for r in runs if r["dag_run_id"].startswith(prefix)]

    def task_states(self, dag: str, run_id: str) -> dict[str, str | None]:
        response = self.api("GET", f"/dags/{dag}/dagRuns/{run_id}/taskInstances")
        response.raise_for_status()
        return {t["task_id"]: t["state"] for t in response.json()["task_instances"]}

    def received(self, run_id: str) -> list[dict[str, Any]]:
        """What the ``record`` DAG wrote for a run: a ``start`` and an ``end`` line per try."""
        path = self.out / f"{run_id}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


def _install() -> tuple[Path, float]:
    began = time.monotonic()
    result = subprocess.run(
        [str(ROOT / "scripts/install-airflow.sh")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/install-airflow.sh failed:\n{result.stderr[-3000:]}")
    return Path(result.stdout.strip().splitlines()[-1]), time.monotonic() - began


def _environ(venv: Path, home: Path, out: Path, ports: dict[str, int]) -> dict[str, str]:
    """``airflow standalone`` starts its parts by calling ``airflow`` from PATH: the venv's
    ``bin`` goes first. Every port is a free one, so parallel sessions never collide."""
    api = f"http://127.0.0.1:{ports['api']}"
    return {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Four LocalExecutor workers, not 32 idle processes on a shared machine.
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(ports["api"]),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME": str(JWT_SECONDS),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports["worker_logs"]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(ports["trigger_logs"]),
        # A task's supervisor talks to the API server; on a busy machine the default 5 s
        # per request is not enough and the task dies before it starts.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
        # New DAG files are listed within a second, not five minutes.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "1",
        "EVENTFLOW_TEST_AIRFLOW_OUT": str(out),
    }


def _wait_ready(airflow: Airflow, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Ready when a token is issued and the DAG ``record`` is parsed and not paused."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"airflow standalone exited with {proc.returncode} at start")
        try:
            response = airflow.api("GET", "/dags/record")
            if response.status_code == 200 and not response.json()["is_paused"]:
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise RuntimeError(f"Airflow was not ready in {timeout}s: {last}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole process group (scheduler, API server, dag processor, triggerer
    and their task processes), SIGKILL to what is left after a grace period: the group can
    outlive ``airflow standalone`` itself."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _group_alive(proc):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    proc.poll()  # reap the leader, or the group stays alive as its zombie
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:
    """Airflow for the session; its home (logs, task logs) stays in pytest's basetemp."""
    venv, install_seconds = _install()
    home = tmp_path_factory.mktemp("airflow")
    out = home / "out"
    out.mkdir()
    shutil.copytree(DAGS, home / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    password = os.urandom(12).hex()
    (home / "passwords.json").write_text(json.dumps({USER: password}) + "\n")
    ports = {"api": free_port(), "worker_logs": free_port(), "trigger_logs": free_port()}
    log = home / "standalone.log"
    began = time.monotonic()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(venv / "bin/airflow"), "standalone"],
            cwd=home,
            env=_environ(venv, home, out, ports),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{ports['api']}"
        wait_listening(proc, [ports["api"]], timeout=START_TIMEOUT, what="airflow api-server")
        found = Airflow(url, password, out, home, log, install_seconds, 0.0)
        _wait_ready(found, proc, START_TIMEOUT)
        found.start_seconds = time.monotonic() - began
        yield found
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{log.read_text(errors='replace')[-3000:]}") from None
    finally:
        _stop(proc)
