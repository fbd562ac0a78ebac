"""The heartbeat rows of workers (:class:`~eventflow.records.WorkerBeat`), shared by the
stores: the parameters of ``beat_worker`` and the decoding of ``list_workers``.

SQLite and PostgreSQL keep them in ``worker_health`` (times as the codec's ISO text, leases
and sensors as JSON text); the memory store keeps the rows in a dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from eventflow.records import WorkerBeat
from eventflow.store import _codec as c

if TYPE_CHECKING:
    from eventflow.store._postgres_ops import PostgresOps
    from eventflow.store._sqlite_ops import SQLiteOps

KEEP = timedelta(days=1)
"""How long the row of a worker that stopped beating is kept (then it is forgotten)."""


def params(beat: WorkerBeat) -> dict[str, Any]:
    """The ``beat_worker`` parameters of a beat."""
    return {
        "worker": beat.worker,
        "host": beat.host,
        "pid": beat.pid,
        "started_at": c.dt_text(beat.started_at),
        "heartbeat_at": c.dt_text(beat.heartbeat_at),
        "beat_seconds": beat.beat_seconds,
        "leases": c.json_text(list(beat.leases), "leases"),
        "sensors": c.json_text(dict(beat.sensors), "sensor health"),
        "stopped_at": c.opt_dt_text(beat.stopped_at),
    }


def decode(row: Sequence[Any]) -> WorkerBeat:
    """A ``list_workers`` row as a beat."""
    worker, host, pid, started, beat, seconds, leases, sensors, stopped = row
    return WorkerBeat(
        worker=worker,
        host=host,
        pid=int(pid),
        started_at=c.text_dt(started),
        heartbeat_at=c.text_dt(beat),
        beat_seconds=float(seconds),
        leases=tuple(orjson.loads(leases)),
        sensors=orjson.loads(sensors),
        stopped_at=c.opt_text_dt(stopped),
    )


def cutoff(beat: WorkerBeat) -> dict[str, str]:
    """The ``prune_workers`` parameter: rows that stopped beating :data:`KEEP` before."""
    return {"before": c.dt_text(beat.heartbeat_at - KEEP)}


def sqlite_beat(ops: SQLiteOps, beat: WorkerBeat) -> None:
    ops.conn.execute(ops.q["beat_worker"], params(beat))
    ops.conn.execute(ops.q["prune_workers"], cutoff(beat))


def sqlite_list(ops: SQLiteOps) -> list[WorkerBeat]:
    return [decode(row) for row in ops.conn.execute(ops.q["list_workers"])]


async def postgres_beat(ops: PostgresOps, beat: WorkerBeat) -> None:
    await ops.conn.execute(ops.q["beat_worker"], params(beat))
    await ops.conn.execute(ops.q["prune_workers"], cutoff(beat))


async def postgres_list(ops: PostgresOps) -> list[WorkerBeat]:
    cur = await ops.conn.execute(ops.q["list_workers"])
    return [decode(row) for row in await cur.fetchall()]


def memory_beat(rows: dict[str, WorkerBeat], beat: WorkerBeat) -> None:
    rows[beat.worker] = beat
    before: datetime = beat.heartbeat_at - KEEP
    for name in [n for n, b in rows.items() if b.heartbeat_at < before]:
        del rows[name]


def memory_list(rows: dict[str, WorkerBeat]) -> list[WorkerBeat]:
    return sorted(rows.values(), key=lambda b: (-b.heartbeat_at.timestamp(), b.worker))
