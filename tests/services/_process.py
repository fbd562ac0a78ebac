"""Start a service process on a free loopback port and know that *it* is the one listening.

Other processes on the machine may hold ports (the machine runs its own PostgreSQL and
Mosquitto), so "the port is open" is not enough: :func:`wait_listening` checks that the
listening socket belongs to the process we started (through ``/proc``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """A service this machine cannot have: skip the test on a developer's machine, fail it in
    CI (``CI`` set), where every test must run for real."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI runs every test, so this machine must provide it")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(inode)
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    found: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return found
    for entry in entries:
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


def _family(pid: int) -> set[int]:
    """The process and its descendants (a service may listen from a child process), also
    the children its other threads started (``airflow standalone`` starts its parts so)."""
    pids = {pid}
    children: list[str] = []
    tasks = Path(f"/proc/{pid}/task")
    try:
        threads = os.listdir(tasks)
    except OSError:  # the process exited meanwhile (Path.glob raised here: a flaky start)
        return pids
    for thread in threads:
        try:
            children += (tasks / thread / "children").read_text().split()
        except OSError:
            continue
    for child in children:
        pids |= _family(int(child))
    return pids


def owns_listener(pid: int, port: int) -> bool:
    listening = _listening_inodes(port)
    return any(listening & _socket_inodes(p) for p in _family(pid))


def wait_listening(
    proc: subprocess.Popen[bytes], ports: Sequence[int], timeout: float = 30.0, what: str = ""
) -> None:
    """Wait until ``proc`` (or a child of it) listens on every port; raise if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what or proc.args!r} exited with {proc.returncode} at start")
        if all(owns_listener(proc.pid, port) for port in ports):
            return
        time.sleep(0.01)
    raise RuntimeError(f"{what or proc.args!r} did not listen on {list(ports)} in {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
