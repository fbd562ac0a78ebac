"""A standalone Flink session cluster for the tests: one JobManager and one TaskManager from
the pip package's ``bin/``, on loopback ports of their own, kept up for the whole session.

``flink_session`` (session scope) writes a ``config.yaml`` into a ``FLINK_CONF_DIR`` of its
own (every address 127.0.0.1, free ports, two task slots, parallelism 1, checkpoint and
savepoint directories under the session's temporary directory), starts both processes each
in its own process group, waits until the REST API reports a registered TaskManager (7-60 s
on a busy machine) and kills both groups at teardown. :meth:`FlinkSession.sql_job` writes a
PyFlink SQL job file that a test submits over REST with the ``flink-python`` jar
(:attr:`FlinkSession.python_jar`, entry class :data:`PYTHON_DRIVER`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services._process import free_port, owns_listener

PYTHON_DRIVER = "org.apache.flink.client.python.PythonDriver"
"""The entry class of the ``flink-python`` jar that runs a ``-py JOB.py`` program."""
READY_TIMEOUT = 180.0
"""Seconds the cluster may take to start (7-19 s measured; more on a loaded machine)."""

JOB_HEADER = '''\
"""A PyFlink SQL job written by the test session (tests/flink/session_cluster.py)."""
import os
import sys

from pyflink.table import EnvironmentSettings, TableEnvironment

# No Beam worker pool (it needs grpc and listens on every interface); no UDFs here.
os.environ["_python_worker_execution_mode"] = "process"
ARGS = sys.argv[1:]
env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
env.get_config().set("table.local-time-zone", "UTC")
'''


@dataclass
class FlinkSession:
    """A running session cluster: its REST base URL and where its state goes."""

    url: str
    checkpoints: Path
    savepoints: Path
    jobs_dir: Path
    python_jar: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def sql_job(self, name: str, sql: str) -> Path:
        """Write ``name.py``: a PyFlink program that runs ``sql`` (statements separated by
        ``;`` on a line of its own; the last is submitted, never waited for: a job submitted
        over REST must not call ``TableResult.wait()``). Its program arguments are in
        ``ARGS``; ``{0}``, ``{1}`` in ``sql`` are replaced by them."""
        statements = [s.strip() for s in textwrap.dedent(sql).split("\n;\n") if s.strip()]
        body = JOB_HEADER + f"STATEMENTS = {statements!r}\n"
        body += "for statement in STATEMENTS[:-1]:\n    env.execute_sql(statement.format(*ARGS))\n"
        body += "env.execute_sql(STATEMENTS[-1].format(*ARGS))\n"
        path = self.jobs_dir / f"{name}.py"
        path.write_text(body)
        return path

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def jobs(self, name: str | None = None) -> list[dict[str, Any]]:
        """``/jobs/overview``, only the jobs named ``name`` when given (newest first)."""
        jobs = [j for j in self.get("/jobs/overview")["jobs"] if name in (None, j["name"])]
        return sorted(jobs, key=lambda j: j["start-time"], reverse=True)

    def cancel_all(self) -> None:
        """Cancel every job still running (what a test left behind)."""
        for job in self.jobs():
            if job["state"] not in ("FINISHED", "FAILED", "CANCELED"):
                with contextlib.suppress(httpx.HTTPError):
                    httpx.patch(f"{self.url}/jobs/{job['jid']}?mode=cancel", timeout=30)

    def kill(self) -> None:
        for proc in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.processes.clear()


def pyflink_dir(home: Path) -> Path:
    """The ``pyflink`` package of the Flink venv (its ``bin``, ``lib`` and ``opt``)."""
    [found] = list((home / "venv" / "lib").glob("python3*/site-packages/pyflink"))
    return found


def java_options(package: Path) -> str:
    """The JVM options the package's own ``config.yaml`` sets for Java 17 (``--add-opens``)."""
    for line in (package / "conf" / "config.yaml").read_text().splitlines():
        if line.strip().startswith("all: --add-"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"no env.java.opts.all in {package / 'conf' / 'config.yaml'}")


def write_config(conf_dir: Path, root: Path, python: Path, java_opts: str) -> dict[str, int]:
    """A ``config.yaml`` binding everything to 127.0.0.1 on free ports; returns the ports."""
    ports = {name: free_port() for name in ("rest", "rpc", "blob", "tm_rpc", "tm_data")}
    settings: dict[str, object] = {
        "env.java.opts.all": f'"{java_opts}"',
        "rest.port": ports["rest"],
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.rpc.port": ports["rpc"],
        "jobmanager.bind-host": "127.0.0.1",
        "jobmanager.memory.process.size": "1024m",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
        "taskmanager.rpc.port": ports["tm_rpc"],
        "taskmanager.data.port": ports["tm_data"],
        "taskmanager.numberOfTaskSlots": 4,
        "taskmanager.memory.process.size": "1280m",
        "blob.server.port": ports["blob"],
        "parallelism.default": 1,
        "state.checkpoints.dir": f"file://{root / 'checkpoints'}",
        "execution.checkpointing.savepoint-dir": f"file://{root / 'savepoints'}",
        "web.upload.dir": str(root / "uploads"),
        "web.tmpdir": str(root / "web"),
        "io.tmp.dirs": str(root / "io"),
        "python.executable": str(python),
        "python.client.executable": str(python),
        "execution.checkpointing.interval": "1 s",
        "restart-strategy.type": "none",  # a failing job fails at once, not after restarts
    }
    conf_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"{key}: {value}" for key, value in settings.items()]
    (conf_dir / "config.yaml").write_text("\n".join(lines) + "\n")
    return ports


def start(home: Path, root: Path) -> FlinkSession:
    """Start the JobManager and the TaskManager; ready once a TaskManager has registered."""
    package = pyflink_dir(home)
    python = home / "venv" / "bin" / "python"
    conf_dir = root / "conf"
    for sub in ("checkpoints", "savepoints", "uploads", "web", "io", "jobs", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ports = write_config(conf_dir, root, python, java_options(package))
    for name in ("log4j.properties", "log4j-console.properties"):
        (conf_dir / name).write_text((package / "conf" / name).read_text())
    environ = {
        **os.environ,
        "FLINK_CONF_DIR": str(conf_dir),
        "FLINK_LOG_DIR": str(root / "log"),
        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    session = FlinkSession(
        url=f"http://127.0.0.1:{ports['rest']}",
        checkpoints=root / "checkpoints",
        savepoints=root / "savepoints",
        jobs_dir=root / "jobs",
        python_jar=next((package / "opt").glob("flink-python-*.jar")),
    )
    try:
        for part in ("jobmanager", "taskmanager"):
            with (root / "log" / f"{part}.out").open("wb") as out:
                proc = subprocess.Popen(
                    [str(package / "bin" / f"{part}.sh"), "start-foreground"],
                    env=environ,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            session.processes.append(proc)
            if part == "jobmanager":
                _wait_listening(proc, ports["rest"], root)
        _wait_for_taskmanager(session, root)
    except BaseException:
        session.kill()
        raise
    return session


def _wait_listening(proc: subprocess.Popen[bytes], port: int, root: Path) -> None:
    """Wait until the JobManager (a child of its script) listens on the REST port."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Flink JobManager exited at start; see {root / 'log'}")
        with contextlib.suppress(OSError):  # a process of the family exited meanwhile
            if owns_listener(proc.pid, port):
                return
        time.sleep(0.1)
    raise RuntimeError(f"the Flink JobManager did not listen in {READY_TIMEOUT}s")


def _wait_for_taskmanager(session: FlinkSession, root: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        for proc in session.processes:
            if proc.poll() is not None:
                raise RuntimeError(f"a Flink process exited at start; see {root / 'log'}")
        with contextlib.suppress(httpx.HTTPError):
            if session.get("/taskmanagers")["taskmanagers"]:
                return
        time.sleep(0.2)
    raise RuntimeError(f"no Flink TaskManager registered in {READY_TIMEOUT}s; see {root / 'log'}")


@pytest.fixture(scope="session")
def flink_session(
    flink_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlinkSession]:
    """A Flink session cluster shared by the session's tests; killed at the end."""
    session = start(flink_home, tmp_path_factory.mktemp("flink-session"))
    try:
        yield session
    finally:
        session.kill()
