"""A private PostgreSQL 15 for the tests, on a free loopback port.

Fixtures:

- ``postgres_server`` (session): the server. By default a private ``postgres`` process
  started from ``/usr/lib/postgresql/N/bin`` (the newest installed) on a free 127.0.0.1
  port, its data directory copied from a template made once by ``initdb`` (kept in the
  temp directory across sessions, because copying is ~5x faster than ``initdb``), stopped
  at the end of the session. The machine's own cluster on 5432 is never used.
- ``postgres_dsn`` (per test): the DSN (``postgresql://…``) of a **fresh, empty database
  created for this test** and dropped after it, so tests never see each other's rows.
  Fixtures of a wider scope call ``postgres_server.create_database()`` themselves.

``EVENTFLOW_TEST_POSTGRES_DSN=postgresql://user:pass@host:port/db`` points the tests at an
external server instead: its role must be allowed to create databases.

:class:`PostgresProcess` starts, restarts and stops a server of its own, for tests that take
the server away under a running worker (connection loss) and for the benchmarks.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.services._process import free_port, wait_listening

ENV_VAR = "EVENTFLOW_TEST_POSTGRES_DSN"


def _server_binaries() -> Path:
    """The newest PostgreSQL server installed from Debian's packages (15 on Debian 12)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


BIN = _server_binaries()
SERVICE_USER = "postgres"
# Durability settings a throwaway test server can do without (a crash of the *server* is
# never part of a test; crashes of eventflow are, and those never lose committed data).
_FAST = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def _as_service_user(*argv: str) -> list[str]:
    """``argv`` run as the ``postgres`` user (``initdb`` and ``postgres`` refuse root);
    ``setpriv`` execs in place, so the pid we hold is the server's own."""
    if os.geteuid() != 0:
        return list(argv)
    user = SERVICE_USER
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--", *argv]


def _chown_to_service_user(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, SERVICE_USER, SERVICE_USER)


def _template() -> Path:
    """An ``initdb``-made data directory, created once and reused by later sessions."""
    root = Path(tempfile.gettempdir())
    template = root / f"eventflow-test-pg15-template-{os.geteuid()}"
    if (template / "PG_VERSION").exists():
        return template
    scratch = Path(tempfile.mkdtemp(prefix="eventflow-pg-initdb-", dir=root))
    scratch.chmod(0o755)
    _chown_to_service_user(scratch)
    data = scratch / "data"
    subprocess.run(
        _as_service_user(
            str(BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "-N",
        ),
        check=True,
        capture_output=True,
    )
    with contextlib.suppress(OSError):  # another session made it first
        data.rename(template)
    shutil.rmtree(scratch, ignore_errors=True)
    return template


class PostgresProcess:
    """A private PostgreSQL server: ``start``, ``stop`` (fast shutdown), ``restart`` on the
    same port and data, ``kill`` (SIGKILL, no shutdown at all)."""

    def __init__(self, *, durable: bool = False) -> None:
        """``durable``: fsync commits like a production server (benchmarks); tests skip it."""
        self.durable = durable
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="eventflow-pg-"))
        self.dir.chmod(0o755)  # the service user must reach the data directory inside
        self.data = self.dir / "data"
        subprocess.run(["cp", "-a", str(_template()), str(self.data)], check=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "server.log"
        _chown_to_service_user(self.dir)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        settings = [
            "listen_addresses=127.0.0.1",
            f"unix_socket_directories={self.data}",
            "max_connections=200",
            *(() if self.durable else _FAST),
        ]
        argv = [str(BIN / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        for setting in settings:
            argv += ["-c", setting]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                _as_service_user(*argv), stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_listening(self.proc, [self.port], timeout=30, what="postgres")
            self._wait_accepting(timeout=30)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{self.log.read_text()[-2000:]}") from None

    def _wait_accepting(self, timeout: float) -> None:
        """Listening is not ready: the server refuses logins while it starts up (recovery)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=5).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres does not accept connections: {exc}") from None
                time.sleep(0.02)

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, everything is kept."""
        self._signal(signal.SIGINT, timeout)

    def kill(self) -> None:
        self._signal(signal.SIGKILL, 20.0)

    def crash(self) -> None:
        """Immediate shutdown (SIGQUIT): every server process exits at once, without a
        checkpoint, as in a crash; the next start runs crash recovery."""
        self._signal(signal.SIGQUIT, 20.0)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A server the tests may create databases on (private or external)."""

    _numbers = itertools.count(1)

    def __init__(self, dsn: str, process: PostgresProcess | None = None) -> None:
        self.admin_dsn = dsn
        self.process = process

    def dsn(self, database: str) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path=f"/{database}"))

    def create_database(self) -> str:
        """A fresh empty database; returns its DSN."""
        name = f"eventflow_test_{os.getpid()}_{next(self._numbers)}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        name = urlsplit(dsn).path.lstrip("/")
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    external = os.environ.get(ENV_VAR)
    if external:
        yield PostgresServer(external)
        return
    process = PostgresProcess()
    process.start()
    try:
        yield PostgresServer(process.dsn(), process)
    finally:
        process.remove()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh empty database for this test (dropped after it)."""
    dsn = postgres_server.create_database()
    yield dsn
    postgres_server.drop_database(dsn)
