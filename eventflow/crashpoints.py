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
- ``checks.after_claim``: a produced partition's checks are recorded as running, not yet run.
- ``checks.before_record``: its checks have run, their results are not yet recorded.
- ``outbox.before_publish``: completion events are recorded, not yet published.
- ``outbox.after_publish``: published, not yet removed from the outbox.
- ``versions.before_commit``: a new version's start is planned (migrations, moved timers,
  the start's row), nothing of it committed.
- ``versions.after_migrate``: a new version's accepted plan, its moved timers and its start
  are committed in one transaction, nothing after it has run.
- ``backfill.before_commit``: a live backfill's chunk is decided, not yet committed.
- ``backfill.after_commit``: the chunk and its position are committed, the request's row
  not yet updated.
- ``deadletter.before_commit``: a redrive's event and the dead letter's outcome are
  evaluated, nothing committed.
- ``deadletter.after_commit``: both are committed, the rule's runs not yet dispatched.
- ``handoff.after_submit``: a hand-off task started its downstream run, its id is not yet
  noted on the run.
- ``handoff.after_note``: the downstream run is noted on the run, not yet waited for.
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
    "versions.before_commit",
    "versions.after_migrate",
)
CHECK_POINTS = ("checks.after_claim", "checks.before_record")
"""The points reached only by a pipeline with data-quality checks."""
BACKFILL_POINTS = ("backfill.before_commit", "backfill.after_commit")
"""The points reached only by a live backfill (tests/acceptance/test_live_backfill.py)."""
DEADLETTER_POINTS = ("deadletter.before_commit", "deadletter.after_commit")
"""The points reached only by a redrive (tests/acceptance/test_deadletters.py)."""
HANDOFF_POINTS = ("handoff.after_submit", "handoff.after_note")
"""The points reached only by a hand-off task (tests/flink/test_flink_task.py)."""


def _parse(spec: str | None) -> dict[str, int]:
    armed: dict[str, int] = {}
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, _, count = part.partition(":")
        known = POINTS + CHECK_POINTS + BACKFILL_POINTS + DEADLETTER_POINTS + HANDOFF_POINTS
        if name not in known:
            raise SystemExit(f"EVENTFLOW_CRASH_AT: unknown crash point {name!r}; known: {known}")
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
