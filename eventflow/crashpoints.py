"""Named crash points for crash-safety tests.

``EVENTFLOW_CRASH_AT=engine.after_commit`` (or ``NAME:N`` for the N-th time the point is
reached) makes the process SIGKILL itself there, so an acceptance test can check that the
guarantees hold when the process dies at exactly that instant. Unset, a crash point costs
one dictionary lookup. The points:

- ``engine.before_commit``: observations received and evaluated, nothing committed.
- ``engine.after_commit``: the batch is committed, the sources are not yet acknowledged.
- ``dispatcher.after_claim``: a run is recorded as running, its task not yet started.
- ``dispatcher.after_task``: the task has finished, its result is not yet recorded.
- ``dispatcher.after_result``: an attempt's result (and an ``on_failure`` hook run) is
  recorded, nothing after it has happened.
- ``outbox.before_publish``: completion events are recorded, not yet published.
- ``outbox.after_publish``: published, not yet removed from the outbox.
"""

from __future__ import annotations

import os
import signal
import sys

POINTS = (
    "engine.before_commit",
    "engine.after_commit",
    "dispatcher.after_claim",
    "dispatcher.after_task",
    "dispatcher.after_result",
    "outbox.before_publish",
    "outbox.after_publish",
)


def _parse(spec: str | None) -> dict[str, int]:
    armed: dict[str, int] = {}
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, _, count = part.partition(":")
        if name not in POINTS:
            raise SystemExit(f"EVENTFLOW_CRASH_AT: unknown crash point {name!r}; known: {POINTS}")
        armed[name] = int(count or 1)
    return armed


_armed = _parse(os.environ.get("EVENTFLOW_CRASH_AT"))


def crash_point(name: str) -> None:
    """SIGKILL this process if ``name`` is armed and reached for the armed time."""
    if not _armed or name not in _armed:
        return
    _armed[name] -= 1
    if _armed[name] <= 0:
        sys.stderr.write(f'{{"event": "crash_point_reached", "point": "{name}"}}\n')
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
