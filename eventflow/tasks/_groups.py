"""Process groups of command attempts: signalling them, and finding what an attempt left.

Every attempt of a ``command`` task runs in a process group of its own, so it is stopped as a
whole. The group is noted on the run (``notes.process``: the group id, the leader's start
time, the host and its boot) as soon as it exists. If eventflow dies abruptly, the program it
started dies with it (the parent-death signal), but what that program started in turn (the
``python job.py`` of ``sh -c "...; python job.py"``) is reparented and lives on. Before the
next attempt of the same run starts, :func:`stop_leftovers` ends what is left of the noted
group, so two attempts of one run never run side by side.

A noted group is only touched when it is certainly the same one: same host, same boot (the
kernel's ``boot_id``), and either its leader is alive with the noted start time or the leader
is gone and members remain (Linux does not give a new process the id of a group that still
has members, so those members are the attempt's).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import sys

from eventflow.events import JSON

_POLL = 0.05


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether the process group still has a member that is not a zombie."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if sys.platform.startswith("linux"):
        # Zombies count for kill(); orphans reparented to an init that does not reap (a
        # container without one) would hold every stop for the whole grace period.
        return _live_member_linux(pgid)
    return True


async def stop_group(pgid: int, grace: float) -> None:
    """SIGTERM the group, SIGKILL what is left of it after ``grace`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    signal_group(pgid, signal.SIGTERM)
    try:
        while loop.time() < deadline:
            if not group_alive(pgid):
                break
            await asyncio.sleep(_POLL)
    finally:  # also when cancelled meanwhile: nothing of the group survives
        signal_group(pgid, signal.SIGKILL)


def group_note(pgid: int, attempt: int) -> dict[str, JSON]:
    """What the run notes about an attempt's process group (``notes.process``)."""
    return {
        "pgid": pgid,
        "start_ticks": _start_ticks(pgid),
        "host": socket.gethostname(),
        "boot_id": _boot_id(),
        "attempt": attempt,
    }


def leftover_group(note: JSON) -> int | None:
    """The id of the noted group when members of it are alive here, else None (another host
    or boot, a group id now used by another program, or nothing left)."""
    if not isinstance(note, dict):
        return None
    pgid = note.get("pgid")
    if not isinstance(pgid, int) or pgid <= 1:
        return None
    if note.get("host") != socket.gethostname() or note.get("boot_id") != _boot_id():
        return None
    leader = _start_ticks(pgid)
    if leader is not None and leader != note.get("start_ticks"):
        return None  # the id belongs to a new process: the noted group ended long ago
    return pgid if group_alive(pgid) else None


def noted_elsewhere(note: JSON) -> str | None:
    """The host of a noted group that ran on another machine (this one cannot stop it)."""
    if isinstance(note, dict) and note.get("host") not in (None, socket.gethostname()):
        return str(note["host"])
    return None


@functools.cache
def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (from the state on)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), None when there is none."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def _live_member_linux(pgid: int) -> bool:
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            fields = _stat_fields(entry.name)
            if (
                fields
                and len(fields) > 2
                and int(fields[2]) == pgid
                and fields[0] not in (b"Z", b"X")
            ):
                return True
    return False
