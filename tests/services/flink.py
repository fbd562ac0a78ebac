"""Apache Flink for the tests: a slim PyFlink 2.3 in its own venv, jobs in local mini-clusters.

``flink`` (session) runs ``scripts/install-flink.sh``, which installs a Java 17 runtime from
Debian where none is on PATH, PyFlink into ``~/.cache/eventflow-test/flink-2.3.0/venv`` and
the Kafka connector jars into ``…/jars`` (a second each when cached; set
``EVENTFLOW_TEST_CACHE`` to use another cache directory). A test starts a job of
``tests/flink/job.py`` with :meth:`Flink.start`: a subprocess of its own session, on loopback
ports of its own, killed with its JVM at teardown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.services._process import free_port

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "tests" / "flink" / "job.py"
JOB_TIMEOUT = 180.0
"""Seconds a bounded job may take; a job runs 10-40 s on a loaded two-core machine."""


@dataclass
class Flink:
    """The installed PyFlink and the jobs started from it."""

    home: Path
    jobs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def jars(self) -> str:
        return ",".join(str(self.home / "jars" / name) for name in KAFKA_JARS)

    def start(self, job: str, out: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
        """Start ``job.py JOB --out OUT ARGS`` in a mini-cluster; its output goes to ``log``."""
        rest, blob = free_port(), free_port()
        command = [
            str(self.home / "venv" / "bin" / "python"),
            str(JOB),
            job,
            "--out",
            str(out),
            "--rest-port",
            str(rest),
            "--blob-port",
            str(blob),
            "--jars",
            self.jars,
            *args,
        ]
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.jobs.append(proc)
        return proc

    def wait(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        """Wait for a bounded job to finish; fail with the end of its log if it did not."""
        try:
            code = proc.wait(JOB_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise AssertionError(f"Flink job ended with {code}:\n{tail}")

    def kill_all(self) -> None:
        """Kill every job started, with its JVM (the job's whole process group)."""
        for proc in self.jobs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        self.jobs.clear()


KAFKA_JARS = ("flink-connector-kafka.jar", "kafka-clients.jar")


def install() -> Path:
    """Run the install script (idempotent); returns the cache directory it prints last."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "install-flink.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/install-flink.sh failed:\n{result.stderr[-3000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def flink_home() -> Path:
    return install()


@pytest.fixture
def flink(flink_home: Path) -> Iterator[Flink]:
    """PyFlink, ready to start jobs; the test's jobs are killed at its end."""
    runner = Flink(flink_home)
    try:
        yield runner
    finally:
        runner.kill_all()
