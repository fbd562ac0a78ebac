"""Dagster for the hand-off tests: ``dagster dev`` on a free loopback port, once a session.

``dagster_server`` installs Dagster into its own cached virtual environment
(``scripts/install-dagster.sh``: a minute or two the first time, nothing afterwards), then
starts ``dagster dev`` on ``dagster_defs.py`` with a temporary ``DAGSTER_HOME`` (runs are
launched at once, without the daemon's queue, so a test waits for Dagster's run worker and
not for a queue poll). Each run of the jobs there writes what it received into
``DagsterServer.out``. ``EVENTFLOW_TEST_DAGSTER=URL`` points the fixture at a Dagster that
already serves ``dagster_defs.py``; ``EVENTFLOW_TEST_DAGSTER_OUT`` must then name the
directory its runs write to.
"""

from __future__ import annotations

import contextlib
import json
import os
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

from tests.services._process import free_port, wait_listening

ENV = "EVENTFLOW_TEST_DAGSTER"
VERSION = "1.13.27"
ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = Path(__file__).with_name("dagster_defs.py")
INSTANCE = """\
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""


@dataclass
class DagsterServer:
    """A Dagster web server and the directory its runs write what they received to."""

    url: str
    out: Path
    started_in: float = 0.0
    """Seconds from ``dagster dev`` to its GraphQL answering (0 for an external one)."""

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        """The ``data`` of a GraphQL query; fails the test on errors."""
        answer = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=30
        ).json()
        assert not answer.get("errors"), answer["errors"]
        return dict(answer["data"])

    def runs(self, run_key: str) -> list[dict[str, Any]]:
        """Dagster's runs tagged ``eventflow/run_key=run_key``, newest first, with their
        status and tags as a dict."""
        data = self.graphql(
            """query($key: String!) { runsOrError(filter: {tags: [
                 {key: "eventflow/run_key", value: $key}]}) {
               ... on Runs { results { runId status parentRunId tags { key value } } } } }""",
            key=run_key,
        )
        runs = data["runsOrError"]["results"]
        for run in runs:
            run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
        return list(runs)

    def received(self, run_id: str) -> dict[str, Any] | None:
        """What the run ``run_id`` received (run config, tags, partition), once it ran."""
        path = self.out / f"{run_id}.json"
        return json.loads(path.read_text()) if path.exists() else None


def _install() -> Path:
    """The cached virtual environment's ``bin`` with Dagster in it."""
    done = subprocess.run(
        [str(ROOT / "scripts/install-dagster.sh")],
        env={**os.environ, "DAGSTER_VERSION": VERSION},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"installing Dagster failed:\n{done.stdout}{done.stderr}"
    cache = Path(os.environ.get("EVENTFLOW_TEST_CACHE", Path.home() / ".cache/eventflow-test"))
    return cache / f"dagster-{VERSION}" / "venv" / "bin"


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until the web server answers GraphQL with the code location loaded."""
    deadline = time.monotonic() + timeout
    query = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"dagster dev exited with {proc.returncode}"
        try:
            data = httpx.post(f"{url}/graphql", json={"query": query}, timeout=5).json()
            if data["data"]["repositoriesOrError"].get("nodes"):
                return
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"dagster dev did not load {DEFINITIONS.name} in {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``dagster dev`` and the web server, daemon, code servers and run workers it
    started (its process group)."""
    os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(30)
    # Its code servers wait for a heartbeat timeout before they exit: do not wait for them.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


@pytest.fixture(scope="session")
def dagster_server() -> Iterator[DagsterServer]:
    """The session's Dagster (started here, or ``EVENTFLOW_TEST_DAGSTER``)."""
    if os.environ.get(ENV):
        yield DagsterServer(os.environ[ENV].rstrip("/"), Path(os.environ[f"{ENV}_OUT"]))
        return
    bin_dir = _install()
    with tempfile.TemporaryDirectory(prefix="eventflow-dagster-") as tmp:
        home, out = Path(tmp, "home"), Path(tmp, "out")
        home.mkdir()
        out.mkdir()
        (home / "dagster.yaml").write_text(INSTANCE)
        port = free_port()
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "EVENTFLOW_TEST_DAGSTER_OUT": str(out),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        }
        command = [str(bin_dir / "dagster"), "dev", "-f", str(DEFINITIONS)]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        began = time.monotonic()
        with Path(tmp, "dagster.log").open("wb") as log:
            proc = subprocess.Popen(
                command,
                cwd=tmp,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_listening(proc, [port], timeout=120, what="dagster dev")
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, proc, timeout=60)
            yield DagsterServer(url, out, time.monotonic() - began)
        finally:
            _stop(proc)
