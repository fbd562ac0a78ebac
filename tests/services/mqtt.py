"""Mosquitto for the tests: started on a free loopback port with persistence on.

``mqtt_broker`` (session) is the broker most tests share; set ``EVENTFLOW_TEST_MQTT`` to
``host:port`` to point it at an external broker instead (it must keep sessions and allow
anonymous clients). ``mosquitto`` (per test) is always a broker of our own, which a test
may restart (``restart()``: a graceful stop that saves the persistence file, then a start
on the same port and directory). ``secure_mosquitto`` (session) listens with TLS (a CA and
a server certificate made with ``openssl`` for the test) and requires a user name and
password (``SECURE_USER``, ``SECURE_PASSWORD``). The machine's own mosquitto on 1883 is
never used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services._process import free_port, stop, wait_listening

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

CONFIG = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {data}/
autosave_interval 1
max_inflight_messages 1000
max_queued_messages 0
set_tcp_nodelay true
log_dest file {data}/mosquitto.log
log_type error
log_type warning
"""

SECURE = """\
allow_anonymous false
password_file {data}/passwords
cafile {data}/ca.pem
certfile {data}/server.pem
keyfile {data}/server.key
"""
SECURE_USER = "eventflow"
SECURE_PASSWORD = "s3cret-Pa55"


@dataclass
class Broker:
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class Mosquitto(Broker):
    """A mosquitto process of our own, restartable on the same port and data directory."""

    def __init__(self, *, secure: bool = False) -> None:
        super().__init__("127.0.0.1", free_port())
        # Not under pytest's temporary directory: pytest resets `pytest-of-USER` to mode 700
        # whenever a session starts, and mosquitto, running as its own user, could then no
        # longer reach its persistence file.
        self.data = Path(tempfile.mkdtemp(prefix="eventflow-mosquitto-"))
        self.data.chmod(0o755)
        if os.geteuid() == 0:  # mosquitto drops to its own user: it must write the data dir
            shutil.chown(self.data, "mosquitto", "mosquitto")
        config = CONFIG.format(port=self.port, data=self.data)
        self.ca_file: Path | None = None
        if secure:
            config = config.replace("allow_anonymous true\n", "")
            config += SECURE.format(data=self.data)
            self.ca_file = _certificates(self.data)
            passwords = self.data / "passwords"
            passwords.touch()
            subprocess.run(
                ["mosquitto_passwd", "-b", str(passwords), SECURE_USER, SECURE_PASSWORD],
                check=True,
                capture_output=True,
            )
            for f in self.data.iterdir():
                if os.geteuid() == 0:
                    shutil.chown(f, "mosquitto", "mosquitto")
        self.config = self.data / "mosquitto.conf"
        self.config.write_text(config)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.proc, [self.port], timeout=20, what="mosquitto")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        """Stop gracefully (the sessions and queued messages are saved), start again."""
        self.stop()
        self.start()


def _certificates(data: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 (and localhost), signed by it."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=data)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=eventflow test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (data / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
        "-out",
        "server.pem",
    )
    return data / "ca.pem"


def _own(*, secure: bool = False) -> Iterator[Mosquitto]:
    broker = Mosquitto(secure=secure)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(broker.data, ignore_errors=True)


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[Broker]:
    """A broker shared by the session: ours, or ``EVENTFLOW_TEST_MQTT=host:port``."""
    external = os.environ.get("EVENTFLOW_TEST_MQTT")
    if external:
        host, _, port = external.rpartition(":")
        yield Broker(host or "127.0.0.1", int(port))
        return
    yield from _own()


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A mosquitto of this test's own, which it may restart."""
    yield from _own()


@pytest.fixture(scope="session")
def secure_mosquitto() -> Iterator[Mosquitto]:
    """A mosquitto with TLS (``ca_file``) and a password (SECURE_USER, SECURE_PASSWORD)."""
    yield from _own(secure=True)
