"""The PostgreSQL store's operations on one connection, and what makes several writers safe.

Each method runs on an :class:`psycopg.AsyncConnection` in autocommit mode; transactions are
explicit (``BEGIN``/``COMMIT``, see :mod:`eventflow.store.postgres`). Sets of ids travel as
one ``text[]`` parameter; writes are ``executemany`` over the row tuples of
:mod:`eventflow.store._codec` (pipelined by psycopg), events and dead letters one
``unnest`` insert each.

Several workers' engines may write the same match rows. :class:`ReadGuard` remembers what
this store *reported* to its engine — the version of each match row it returned and the
event ids it reported unseen — and :meth:`PostgresOps.apply` checks at commit that it still
holds: a match row changed (or created) by another worker since, or an event another worker
logged first, raises :class:`~eventflow.errors.StoreConflict` and the transaction commits
nothing; the engine reads again and re-evaluates the batch. States the store never reported
(tests, ``eventflow`` commands) are written unconditionally.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventflow.errors import StoreConflict
from eventflow.events import JSON
from eventflow.pauses import Pause, PauseAction, PauseActionName, PauseKind
from eventflow.records import (
    Changes,
    CheckGate,
    DeadLetter,
    InboxItem,
    MatchKey,
    OutboxItem,
    RunRecord,
    StoredEvent,
    Timer,
)
from eventflow.rules.core import MatchState
from eventflow.store import COUNT_KEYS, _pauses
from eventflow.store import _codec as c
from eventflow.store import _deadletters as dl
from eventflow.store import _gates as g
from eventflow.store._postgres_sql import queries
from eventflow.store._versions import start_row

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    Conn = AsyncConnection[tuple[Any, ...]]

GUARD_SIZE = 200_000
"""How many reported match versions and unseen ids the guard remembers; a match version it
has forgotten counts as a conflict (the engine reads it again), an id as not checked."""
ABSENT = 0
"""The version the guard records for a match row that did not exist."""


class ReadGuard:
    """What this store reported to its engine, checked when the engine commits."""

    def __init__(self, size: int = GUARD_SIZE) -> None:
        self.size = size
        self.versions: OrderedDict[MatchKey, int] = OrderedDict()
        self.unseen: OrderedDict[str, None] = OrderedDict()

    def saw_matches(self, keys: Iterable[MatchKey], versions: Mapping[MatchKey, int]) -> None:
        for key in keys:
            self.versions[key] = versions.get(key, ABSENT)
            self.versions.move_to_end(key)
        while len(self.versions) > self.size:
            self.versions.popitem(last=False)

    def saw_unseen(self, ids: Iterable[str]) -> None:
        for eid in ids:
            self.unseen[eid] = None
        while len(self.unseen) > self.size:
            self.unseen.popitem(last=False)


class PostgresOps:
    """Store operations on one connection (autocommit; transactions are explicit)."""

    def __init__(self, conn: Conn, guard: ReadGuard | None = None) -> None:
        self.conn = conn
        self.q = queries()
        self.guard = guard
        """Set on the connection whose reads the engine's commits are checked against."""

    async def _all(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = await self.conn.execute(sql, params)
        return await cur.fetchall()

    async def _one(self, sql: str, params: Any = None) -> tuple[Any, ...] | None:
        cur = await self.conn.execute(sql, params)
        return await cur.fetchone()

    async def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            async with self.conn.cursor() as cur:
                await cur.executemany(sql, rows)

    # reads the engine's commits are checked against

    async def seen_events(self, ids: Collection[str]) -> set[str]:
        wanted = list(ids)
        seen = {row[0] for row in await self._all(self.q["seen_events"], {"ids": wanted})}
        if self.guard is not None:
            self.guard.saw_unseen(i for i in wanted if i not in seen)
        return seen

    async def get_matches(self, keys: Collection[MatchKey]) -> dict[MatchKey, MatchState]:
        wanted = list(keys)
        params = {"rules": [k[0] for k in wanted], "keys": [k[1] for k in wanted]}
        found: dict[MatchKey, MatchState] = {}
        versions: dict[MatchKey, int] = {}
        for rule, key, state, version in await self._all(self.q["get_matches"], params):
            found[(rule, key)] = c.decode_match(state)
            versions[(rule, key)] = version
        if self.guard is not None:
            self.guard.saw_matches(wanted, versions)
        return found

    # the Transaction protocol

    async def claim_runs(
        self, now: datetime, limit: int, rule_limits: Mapping[str, int], worker: str | None
    ) -> list[RunRecord]:
        if limit <= 0:
            return []
        now_t = c.dt_text(now)
        running: dict[str, int] = {}
        fetch = limit
        if rule_limits:
            # Per-rule limits count running runs on every worker: claims queue for this
            # transaction-level lock so that two claims never both see the last free slot.
            await self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK,))
            running = {r: n for r, n in await self._all(self.q["running_per_rule"])}
            fetch = limit + 1000  # look past runs of rules at their limit
        rows = await self._all(self.q["claim_candidates"], {"now": now_t, "limit": fetch})
        claimed = c.pick_claims(rows, limit, rule_limits, running, now_t)
        await self._many(self.q["claim_run"], [(now_t, now_t, worker, r.run_id) for r in claimed])
        return [c.decode_run(r) for r in claimed]

    async def apply(self, ch: Changes) -> None:
        q = self.q
        # Encode everything first (a value that cannot be stored writes nothing). Rows are
        # written in key order, so two workers' transactions lock them in the same order.
        events = sorted((c.event_row(e) for e in ch.events), key=lambda r: r.id)
        listed = sorted((c.event_row(e) for e in ch.listed_events), key=lambda r: r.id)
        letters = sorted((c.deadletter_row(d) for d in ch.deadletters), key=lambda r: r.event_id)
        matches = sorted((c.match_row(m) for m in ch.matches.values()), key=_match_order)
        writes: list[tuple[str, Sequence[Sequence[Any]]]] = [
            (q["upsert_cursors"], [c.cursor_row(s, k, v) for (s, k), v in ch.cursors.items()]),
            (q["insert_runs"], [c.new_run_row(r) for r in ch.runs]),
            (q["update_runs"], [_run_update(c.run_update_row(u)) for u in ch.run_updates]),
            (q["note_runs"], [c.run_note_row(n) for n in ch.run_notes]),
            (q["upsert_timers"], [c.timer_row(t) for t in ch.timers_add]),
            (q["delete_timer"], ch.timers_delete),
            (q["insert_outbox"], [c.outbox_row(o) for o in ch.outbox]),
            (q["insert_inbox"], [c.inbox_row(i) for i in ch.inbox_add]),
            (q["delete_inbox"], [(i,) for i in ch.inbox_delete]),
            (q["upsert_gates"], sorted(g.gate_row(gate) for gate in ch.gates)),
            (q["insert_start"], [start_row(start) for start in ch.starts]),
        ]
        await self._insert_logged(q["insert_events"], events, "event")
        if listed:
            columns = [list(col) for col in zip(*listed, strict=True)]
            await self.conn.execute(q["insert_listed_events"], columns)
        await self._insert_logged(q["insert_deadletters"], letters, "dead letter")
        await self._write_matches(matches)
        for sql, rows in writes:
            await self._many(sql, rows)
        for outcome in sorted(ch.deadletter_outcomes, key=lambda o: o.event_id):
            done = await self.conn.execute(q["redrive_outcome"], dl.outcome_params(outcome))
            if not done.rowcount:
                raise dl.not_requested(outcome.event_id)

    async def _insert_logged(self, sql: str, rows: Sequence[Sequence[Any]], what: str) -> None:
        """Insert events or dead letters (one statement); an id this store reported unseen
        that another worker logged meanwhile is a conflict."""
        if not rows:
            return
        columns = [list(col) for col in zip(*rows, strict=True)]
        inserted = {row[0] for row in await self._all(sql, columns)}
        if self.guard is None:
            return
        unseen = self.guard.unseen
        lost = [row[0] for row in rows if row[0] not in inserted and row[0] in unseen]
        if lost:
            raise StoreConflict(
                f"{len(lost)} {what}(s) of this batch were logged by another worker meanwhile "
                f"(e.g. {lost[0]})",
                hint="the engine evaluates the batch again",
            )
        for eid in inserted:
            unseen.pop(eid, None)

    async def _write_matches(self, rows: Sequence[c.MatchRow]) -> None:
        """Write rule states: checked against the version this store reported, when it did."""
        if not rows:
            return
        q = self.q
        versions: dict[MatchKey, int] = self.guard.versions if self.guard is not None else {}
        unchecked: list[c.MatchRow] = []
        new: list[c.MatchRow] = []
        changed: list[tuple[Any, ...]] = []
        for row in rows:
            expected = versions.get((row.rule, row.key))
            if expected is None:
                unchecked.append(row)
            elif expected == ABSENT:
                new.append(row)
            else:
                changed.append((*row, expected))
        written: dict[MatchKey, int] = {}
        for sql, batch in (
            (q["upsert_matches"], unchecked),
            (q["insert_matches"], new),
            (q["update_matches"], changed),
        ):
            if batch:
                columns = [list(col) for col in zip(*batch, strict=True)]
                for rule, key, version in await self._all(sql, columns):
                    written[(rule, key)] = int(version)
        conflicts = [(r.rule, r.key) for r in rows if (r.rule, r.key) not in written]
        if conflicts:
            for conflict in conflicts:  # read again on the next evaluation
                versions.pop(conflict, None)
            rule, partition = conflicts[0]
            raise StoreConflict(
                f"{len(conflicts)} rule state(s) of this batch were changed by another worker "
                f"meanwhile (e.g. rule {rule!r}, key {partition})",
                hint="the engine evaluates the batch again",
            )
        if self.guard is not None:
            # What a pipelined next batch builds on (it does not read these keys again).
            self.guard.saw_matches(written, written)

    # the Store protocol

    async def load_cursors(self, sensor: str) -> dict[str, JSON]:
        rows = await self._all(self.q["load_cursors"], {"sensor": sensor})
        return {key: c.json_loads(value) for key, value in rows}

    async def delete_cursors(self, sensor: str, keys: Collection[str]) -> None:
        await self._many(self.q["delete_cursor"], [(sensor, k) for k in keys])

    async def recover_running(self, now: datetime) -> list[str]:
        rows = await self._all(self.q["recover_running"], {"now": c.dt_text(now)})
        return [run_id for run_id, _ in sorted(rows, key=lambda r: (r[1], r[0]))]

    async def next_run_due(self) -> datetime | None:
        row = await self._one(self.q["next_run_due"], {"min": c.MIN_TEXT})
        return c.opt_text_dt(row[0] if row else None)

    async def get_run(self, run_id: str) -> RunRecord | None:
        row = await self._one(self.q["get_run"], {"run_id": run_id})
        return None if row is None else c.decode_run(row)

    async def partition_runs(self, rule: str, key: str) -> list[RunRecord]:
        rows = await self._all(self.q["partition_runs"], {"rule": rule, "key": key})
        return [c.decode_run(row) for row in rows]

    async def list_runs(self, where: dict[str, Any], limit: int) -> list[RunRecord]:
        params = {**where, "limit": max(limit, 0)}
        return [c.decode_run(row) for row in await self._all(self.q["list_runs"], params)]

    async def count_runs(self, where: dict[str, Any]) -> int:
        row = await self._one(self.q["count_runs"], where)
        assert row is not None
        return int(row[0])

    async def unfinished_runs(self, rule: str) -> int:
        row = await self._one(self.q["unfinished_runs"], {"rule": rule})
        assert row is not None
        return int(row[0])

    async def retry_run(self, run_id: str, now: datetime) -> RunRecord:
        params = {"run_id": run_id, "now": c.dt_text(now)}
        return await self._changed("retry_run", params, c.not_retriable)

    async def request_cancel(self, run_id: str, by: str, now: datetime) -> RunRecord:
        params = {"run_id": run_id, "request": c.cancel_request_text(by, now)}
        return await self._changed("request_cancel", params, c.not_cancellable)

    async def _changed(self, query: str, params: dict[str, Any], refused: c.Refusal) -> RunRecord:
        """The run after ``query`` changed it; ``refused``'s error when it changed nothing."""
        changed = (await self.conn.execute(self.q[query], params)).rowcount
        run = await self.get_run(params["run_id"])
        if not changed or run is None:
            raise refused(params["run_id"], None if run is None else run.status)
        return run

    async def set_pause(
        self,
        kind: PauseKind,
        name: str,
        action: PauseActionName,
        by: str,
        reason: str | None,
        now: datetime,
    ) -> PauseAction:
        async def execute(sql: str, params: dict[str, Any]) -> int:
            return (await self.conn.execute(sql, params)).rowcount

        return await _pauses.postgres_set_pause(
            execute, self.q, kind, name, action, by, reason, now
        )

    async def pauses(self) -> list[Pause]:
        return [_pauses.decode_pause(row) for row in await self._all(self.q["list_pauses"])]

    async def pause_actions(self, limit: int) -> list[PauseAction]:
        rows = await self._all(self.q["list_pause_actions"], {"limit": max(limit, 0)})
        return [_pauses.decode_action(row) for row in rows]

    async def cancel_requests(self) -> list[RunRecord]:
        return [c.decode_run(row) for row in await self._all(self.q["cancel_requests"])]

    async def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        params = {"now": c.dt_text(now), "limit": max(limit, 0)}
        return [c.decode_timer(row) for row in await self._all(self.q["due_timers"], params)]

    async def next_timer_due(self) -> datetime | None:
        row = await self._one(self.q["next_timer_due"])
        return c.opt_text_dt(row[0] if row else None)

    async def fetch_outbox(self, publisher: str, limit: int) -> list[OutboxItem]:
        params = {"publisher": publisher, "limit": max(limit, 0)}
        rows = await self._all(self.q["fetch_outbox"], params)
        return [c.decode_outbox(i, p, e) for i, p, e in rows]

    async def delete_outbox(self, ids: Collection[int]) -> None:
        await self.conn.execute(self.q["delete_outbox"], {"ids": list(ids)})

    async def fetch_inbox(self, limit: int) -> list[InboxItem]:
        rows = await self._all(self.q["fetch_inbox"], {"limit": max(limit, 0)})
        return [c.decode_inbox(row[0], row[1:]) for row in rows]

    async def add_inbox(self, item: InboxItem) -> int:
        row = await self._one(self.q["add_inbox"], c.inbox_row(item))
        assert row is not None
        return int(row[0])

    async def list_matches(self, where: dict[str, Any], limit: int | None) -> list[MatchState]:
        params = {**where, "limit": None if limit is None else max(limit, 0)}
        rows = await self._all(self.q["list_matches"], params)
        return [c.decode_match(state) for (state,) in rows]

    async def count_matches(self, where: dict[str, Any]) -> int:
        row = await self._one(self.q["count_matches"], where)
        assert row is not None
        return int(row[0])

    async def get_match(self, rule: str, key: str) -> MatchState | None:
        row = await self._one(self.q["get_match"], {"rule": rule, "key": key})
        return None if row is None else c.decode_match(row[0])

    async def match_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for rule, status, n in await self._all(self.q["match_counts"]):
            counts.setdefault(rule, {})[status] = n
        return counts

    async def get_events(self, ids: Collection[str]) -> list[StoredEvent]:
        wanted = list(dict.fromkeys(ids))
        rows = await self._all(self.q["get_events"], {"ids": wanted})
        found = {row[0]: c.decode_event(row) for row in rows}
        return [found[i] for i in wanted if i in found]

    async def read_events(
        self, since: datetime | None, sensors: Collection[str] | None, after: int, limit: int
    ) -> list[tuple[int, StoredEvent]]:
        params = {
            "since": c.opt_dt_text(since),
            "sensors": None if sensors is None else list(sensors),
            "after": after,
            "limit": max(limit, 0),
        }
        rows = await self._all(self.q["read_events"], params)
        return [(int(row[0]), c.decode_event(row[1:])) for row in rows]

    async def prune_events(self, before: datetime, limit: int) -> int:
        params = {"before": c.dt_text(before), "limit": max(limit, 0)}
        cur = await self.conn.execute(self.q["prune_events"], params)
        return cur.rowcount

    async def list_events(self, where: dict[str, Any], limit: int) -> list[StoredEvent]:
        rows = await self._all(self.q["list_events"], {**where, "limit": max(limit, 0)})
        return [c.decode_event(row) for row in rows]

    async def count_events(self, where: dict[str, Any]) -> int:
        row = await self._one(self.q["count_events"], where)
        assert row is not None
        return int(row[0])

    async def list_deadletters(self, where: dict[str, Any], limit: int) -> list[DeadLetter]:
        rows = await self._all(self.q["list_deadletters"], {**where, "limit": max(limit, 0)})
        return [c.decode_deadletter(row) for row in rows]

    async def get_deadletter(self, event_id: str) -> DeadLetter | None:
        row = await self._one(self.q["get_deadletter"], {"event_id": event_id})
        return None if row is None else c.decode_deadletter(row)

    async def act_on_deadletter(
        self, event_id: str, action: dl.DeadLetterAction, by: str, now: datetime
    ) -> DeadLetter:
        query = "request_redrive" if action == "redrive" else "discard_deadletter"
        params = dl.act_params(event_id, action, by, now)
        changed = (await self.conn.execute(self.q[query], params)).rowcount
        letter = await self.get_deadletter(event_id)
        if not changed or letter is None:
            raise dl.refused(event_id, letter, action)
        return letter

    async def fetch_redrives(self, limit: int) -> list[DeadLetter]:
        rows = await self._all(self.q["fetch_redrives"], {"limit": max(limit, 0)})
        return [c.decode_deadletter(row) for row in rows]

    async def list_gates(self, where: dict[str, Any], limit: int) -> list[CheckGate]:
        params = {**where, "limit": max(limit, 0)}
        return [g.decode_gate(row) for row in await self._all(self.q["list_gates"], params)]

    async def get_gate(self, run_id: str) -> CheckGate | None:
        """The gate, its row locked until the transaction ends (``FOR UPDATE``)."""
        row = await self._one(self.q["lock_gate"], {"run_id": run_id})
        return g.decode_gate(row) if row is not None else None

    async def claim_gates(self, params: dict[str, Any]) -> list[tuple[CheckGate, str]]:
        """Claim the gates to check (one ``UPDATE … FOR UPDATE SKIP LOCKED``: two workers
        never claim one gate); each claimed gate with its status before, oldest first."""
        rows = await self._all(self.q["claim_gates"], params)
        claimed = [(g.decode_gate(row[:-1]), str(row[-1])) for row in rows]
        return sorted(claimed, key=lambda c: (c[0].created_at, c[0].run_id))

    async def renew_gates(self, params: dict[str, Any]) -> set[str]:
        return {row[0] for row in await self._all(self.q["renew_gates"], params)}

    async def count_deadletters(self, where: dict[str, Any]) -> int:
        row = await self._one(self.q["count_deadletters"], where)
        assert row is not None
        return int(row[0])

    async def counts(self) -> dict[str, int]:
        row = await self._one(self.q["counts"])
        assert row is not None
        return dict(zip(COUNT_KEYS, row, strict=True))


CLAIM_LOCK = 0x6576_666C_6F78
"""The advisory lock key that serialises claims limited per rule."""


def _match_order(row: c.MatchRow) -> tuple[str, str]:
    return (row.rule, row.key)


def _run_update(row: c.RunUpdateRow) -> tuple[Any, ...]:
    """``update_runs`` parameters: the row, with the status again before the run id and the
    attempt after it."""
    return (*row[:-1], row.status, row.run_id, row.attempt)
