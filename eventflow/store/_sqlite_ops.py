"""The SQLite store's operations on its connection.

Each method runs either on the store's thread (one executor hop of
:class:`~eventflow.store.sqlite.SQLiteStore`) or, inside a transaction, on the event loop.
Sets of ids and keys go to SQLite as JSON arrays of at most :data:`CHUNK` items (expanded
with ``json_each``), and writes are ``executemany`` over the row tuples of
:mod:`eventflow.store._codec`, so a batch of a thousand events costs a handful of
statements and one commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

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
from eventflow.store._sqlite_sql import queries
from eventflow.store._versions import start_row

T = TypeVar("T")
CHUNK = 500
"""Most ids or keys sent to SQLite in one statement."""

_SYNCHRONOUS = {0: "off", 1: "normal", 2: "full", 3: "extra"}


def _chunks(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


class SQLiteOps:
    """Store operations on one connection in autocommit mode (transactions are explicit)."""

    def __init__(self, conn: sqlite3.Connection, synchronous: str = "full") -> None:
        self.conn = conn
        self.q = queries()
        self.synchronous = synchronous
        """The store's own setting, restored after a relaxed (non-durable) commit."""

    # transactions

    def begin(self, immediate: bool = True, relaxed: bool = False) -> None:
        if relaxed:
            self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    def try_begin(self, relaxed: bool, busy_timeout_ms: int) -> bool:
        """BEGIN IMMEDIATE if the write lock is free right now; False (and no transaction)
        when another connection holds it. Never waits: the caller may be the event loop."""
        self.conn.execute("PRAGMA busy_timeout = 0")
        try:
            self.begin(True, relaxed)
        except sqlite3.OperationalError as exc:
            if relaxed:
                self.conn.execute(f"PRAGMA synchronous={self.synchronous}")
            if "locked" in str(exc) or "busy" in str(exc):
                return False
            raise
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        return True

    def commit(self, relaxed: bool = False) -> None:
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            self.rollback(relaxed)
            raise
        if relaxed:
            self.conn.execute(f"PRAGMA synchronous={self.synchronous}")

    def rollback(self, relaxed: bool = False) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        if relaxed:
            self.conn.execute(f"PRAGMA synchronous={self.synchronous}")

    def run(self, fn: Callable[..., T], *args: Any, immediate: bool = True) -> T:
        """``fn(*args)`` in a transaction of its own."""
        self.begin(immediate)
        try:
            result = fn(*args)
        except BaseException:
            self.rollback()
            raise
        self.commit()
        return result

    def close(self) -> None:
        self.rollback()
        self.conn.close()

    # the Transaction protocol

    def seen_events(self, ids: Collection[str]) -> set[str]:
        seen: set[str] = set()
        for chunk in _chunks(list(ids)):
            rows = self.conn.execute(self.q["seen_events"], {"ids": c.json_text(chunk)})
            seen.update(row[0] for row in rows)
        return seen

    def get_matches(self, keys: Collection[MatchKey]) -> dict[MatchKey, MatchState]:
        found: dict[MatchKey, MatchState] = {}
        for chunk in _chunks([list(k) for k in keys]):
            rows = self.conn.execute(self.q["get_matches"], {"keys": c.json_text(chunk)})
            found.update(((rule, key), c.decode_match(state)) for rule, key, state in rows)
        return found

    def claim_runs(
        self, now: datetime, limit: int, rule_limits: Mapping[str, int]
    ) -> list[RunRecord]:
        now_t = c.dt_text(now)
        if limit <= 0:
            return []
        running: dict[str, int] = dict(self.conn.execute(self.q["running_per_rule"]).fetchall())
        cursor = self.conn.execute(self.q["claim_candidates"], {"now": now_t})
        try:
            claimed = c.pick_claims(cursor, limit, rule_limits, running, now_t)
        finally:
            cursor.close()
        self.conn.executemany(self.q["claim_run"], [(now_t, now_t, r.run_id) for r in claimed])
        return [c.decode_run(r) for r in claimed]

    def apply(self, ch: Changes) -> None:
        q = self.q
        # Encode everything first (a value that cannot be stored writes nothing). Adds come
        # before deletes: a timer scheduled and cancelled in one batch is gone.
        writes: list[tuple[str, Sequence[Sequence[Any]]]] = [
            (q["insert_events"], [c.event_row(e) for e in ch.events]),
            (q["insert_listed_events"], [c.event_row(e) for e in ch.listed_events]),
            (q["upsert_cursors"], [c.cursor_row(s, k, v) for (s, k), v in ch.cursors.items()]),
            (q["upsert_matches"], [c.match_row(m) for m in ch.matches.values()]),
            (q["insert_runs"], [c.new_run_row(r) for r in ch.runs]),
            (q["update_runs"], [c.run_update_row(u) for u in ch.run_updates]),
            (q["note_runs"], [row for n in ch.run_notes for row in c.run_note_key_rows(n)]),
            (q["upsert_timers"], [c.timer_row(t) for t in ch.timers_add]),
            (q["delete_timer"], ch.timers_delete),
            (q["insert_outbox"], [c.outbox_row(o) for o in ch.outbox]),
            (q["insert_inbox"], [c.inbox_row(i) for i in ch.inbox_add]),
            (q["delete_inbox"], [(i,) for i in ch.inbox_delete]),
            (q["insert_deadletters"], [c.deadletter_row(d) for d in ch.deadletters]),
            (q["upsert_gates"], [g.gate_row(gate) for gate in ch.gates]),
            (q["insert_start"], [start_row(start) for start in ch.starts]),
        ]
        for sql, rows in writes:
            if rows:
                self.conn.executemany(sql, rows)
        for outcome in ch.deadletter_outcomes:
            p = dl.outcome_params(outcome)
            if not self.conn.execute(q["redrive_outcome"], p).rowcount:
                raise dl.not_requested(outcome.event_id)

    # the Store protocol

    def load_cursors(self, sensor: str) -> dict[str, JSON]:
        rows = self.conn.execute(self.q["load_cursors"], {"sensor": sensor})
        return {key: c.json_loads(value) for key, value in rows}

    def delete_cursors(self, sensor: str, keys: Collection[str]) -> None:
        self.conn.executemany(self.q["delete_cursor"], [(sensor, k) for k in keys])

    def recover_running(self, now: datetime) -> list[str]:
        now_t = c.dt_text(now)
        ids = [row[0] for row in self.conn.execute(self.q["running_ids"])]
        if ids:
            self.conn.execute(self.q["recover_running"], {"now": now_t})
        return ids

    def next_run_due(self) -> datetime | None:
        row = self.conn.execute(self.q["next_run_due"], {"min": c.MIN_TEXT}).fetchone()
        return c.opt_text_dt(row[0])

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self.conn.execute(self.q["get_run"], {"run_id": run_id}).fetchone()
        return None if row is None else c.decode_run(row)

    def partition_runs(self, rule: str, key: str) -> list[RunRecord]:
        rows = self.conn.execute(self.q["partition_runs"], {"rule": rule, "key": key})
        return [c.decode_run(row) for row in rows]

    def list_runs(self, where: dict[str, Any], limit: int) -> list[RunRecord]:
        params = {**where, "limit": max(limit, 0)}
        return [c.decode_run(row) for row in self.conn.execute(self.q["list_runs"], params)]

    def count_runs(self, where: dict[str, Any]) -> int:
        return int(self.conn.execute(self.q["count_runs"], where).fetchone()[0])

    def unfinished_runs(self, rule: str) -> int:
        return int(self.conn.execute(self.q["unfinished_runs"], {"rule": rule}).fetchone()[0])

    def retry_run(self, run_id: str, now: datetime) -> RunRecord:
        params = {"run_id": run_id, "now": c.dt_text(now)}
        return self._changed("retry_run", params, c.not_retriable)

    def request_cancel(self, run_id: str, by: str, now: datetime) -> RunRecord:
        params = {"run_id": run_id, "request": c.cancel_request_text(by, now)}
        return self._changed("request_cancel", params, c.not_cancellable)

    def _changed(self, query: str, params: dict[str, Any], refused: c.Refusal) -> RunRecord:
        """The run after ``query`` changed it; ``refused``'s error when it changed nothing."""
        changed = self.conn.execute(self.q[query], params).rowcount
        run = self.get_run(params["run_id"])
        if not changed or run is None:
            raise refused(params["run_id"], None if run is None else run.status)
        return run

    def set_pause(
        self,
        kind: PauseKind,
        name: str,
        action: PauseActionName,
        by: str,
        reason: str | None,
        now: datetime,
    ) -> PauseAction:
        return _pauses.sqlite_set_pause(self.conn, self.q, kind, name, action, by, reason, now)

    def pauses(self) -> list[Pause]:
        return [_pauses.decode_pause(row) for row in self.conn.execute(self.q["list_pauses"])]

    def pause_actions(self, limit: int) -> list[PauseAction]:
        rows = self.conn.execute(self.q["list_pause_actions"], {"limit": max(limit, 0)})
        return [_pauses.decode_action(row) for row in rows]

    def cancel_requests(self) -> list[RunRecord]:
        return [c.decode_run(row) for row in self.conn.execute(self.q["cancel_requests"])]

    def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        params = {"now": c.dt_text(now), "limit": max(limit, 0)}
        return [c.decode_timer(row) for row in self.conn.execute(self.q["due_timers"], params)]

    def next_timer_due(self) -> datetime | None:
        return c.opt_text_dt(self.conn.execute(self.q["next_timer_due"]).fetchone()[0])

    def fetch_outbox(self, publisher: str, limit: int) -> list[OutboxItem]:
        params = {"publisher": publisher, "limit": max(limit, 0)}
        rows = self.conn.execute(self.q["fetch_outbox"], params)
        return [c.decode_outbox(i, p, e) for i, p, e in rows]

    def delete_outbox(self, ids: Collection[int]) -> None:
        self.conn.executemany(self.q["delete_outbox"], [(i,) for i in ids])

    def fetch_inbox(self, limit: int) -> list[InboxItem]:
        rows = self.conn.execute(self.q["fetch_inbox"], {"limit": max(limit, 0)})
        return [c.decode_inbox(row[0], row[1:]) for row in rows]

    def add_inbox(self, item: InboxItem) -> int:
        new_id = self.conn.execute(self.q["insert_inbox"], c.inbox_row(item)).lastrowid
        assert new_id is not None
        return new_id

    def list_matches(self, where: dict[str, Any], limit: int | None) -> list[MatchState]:
        params = {**where, "partial": int(where["partial"])}
        params["limit"] = -1 if limit is None else max(limit, 0)
        rows = self.conn.execute(self.q["list_matches"], params)
        return [c.decode_match(state) for (state,) in rows]

    def count_matches(self, where: dict[str, Any]) -> int:
        params = {**where, "partial": int(where["partial"])}
        return int(self.conn.execute(self.q["count_matches"], params).fetchone()[0])

    def get_match(self, rule: str, key: str) -> MatchState | None:
        row = self.conn.execute(self.q["get_match"], {"rule": rule, "key": key}).fetchone()
        return None if row is None else c.decode_match(row[0])

    def match_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for rule, status, n in self.conn.execute(self.q["match_counts"]):
            counts.setdefault(rule, {})[status] = n
        return counts

    def get_events(self, ids: Collection[str]) -> list[StoredEvent]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, StoredEvent] = {}
        for chunk in _chunks(wanted):
            rows = self.conn.execute(self.q["get_events"], {"ids": c.json_text(chunk)})
            found.update((row[0], c.decode_event(row)) for row in rows)
        return [found[i] for i in wanted if i in found]

    def read_events(
        self, since: datetime | None, sensors: list[str] | None, after: int, limit: int
    ) -> list[tuple[int, StoredEvent]]:
        since_t = None if since is None else c.dt_text(since)
        if since_t is not None and after <= 0:  # start at the index, not at the first event
            first = self.conn.execute(self.q["first_event_since"], {"since": since_t}).fetchone()
            if first[0] is None:
                return []
            after = first[0] - 1
        params = {
            "after": after,
            "since": since_t,
            "sensors": None if sensors is None else c.json_text(sensors),
            "limit": max(limit, 0),
        }
        rows = self.conn.execute(self.q["read_events"], params)
        return [(row[0], c.decode_event(row[1:])) for row in rows]

    def prune_events(self, before: datetime, limit: int) -> int:
        params = {"before": c.dt_text(before), "limit": max(limit, 0)}
        return self.conn.execute(self.q["prune_events"], params).rowcount

    def list_events(self, where: dict[str, Any], limit: int) -> list[StoredEvent]:
        rows = self.conn.execute(self.q["list_events"], {**where, "limit": max(limit, 0)})
        return [c.decode_event(row) for row in rows]

    def count_events(self, where: dict[str, Any]) -> int:
        return int(self.conn.execute(self.q["count_events"], where).fetchone()[0])

    def list_deadletters(self, where: dict[str, Any], limit: int) -> list[DeadLetter]:
        rows = self.conn.execute(self.q["list_deadletters"], {**where, "limit": max(limit, 0)})
        return [c.decode_deadletter(row) for row in rows]

    def get_deadletter(self, event_id: str) -> DeadLetter | None:
        row = self.conn.execute(self.q["get_deadletter"], {"event_id": event_id}).fetchone()
        return None if row is None else c.decode_deadletter(row)

    def act_on_deadletter(
        self, event_id: str, action: dl.DeadLetterAction, by: str, now: datetime
    ) -> DeadLetter:
        query = "request_redrive" if action == "redrive" else "discard_deadletter"
        changed = self.conn.execute(self.q[query], dl.act_params(event_id, action, by, now))
        letter = self.get_deadletter(event_id)
        if not changed.rowcount or letter is None:
            raise dl.refused(event_id, letter, action)
        return letter

    def fetch_redrives(self, limit: int) -> list[DeadLetter]:
        rows = self.conn.execute(self.q["fetch_redrives"], {"limit": max(limit, 0)})
        return [c.decode_deadletter(row) for row in rows]

    def list_gates(self, where: dict[str, Any], limit: int) -> list[CheckGate]:
        params = {**where, "limit": max(limit, 0)}
        return [g.decode_gate(row) for row in self.conn.execute(self.q["list_gates"], params)]

    def get_gate(self, run_id: str) -> CheckGate | None:
        found = self.list_gates(g.gate_filter(run_id=run_id), 1)
        return found[0] if found else None

    def claim_gates(self, params: dict[str, Any]) -> list[tuple[CheckGate, str]]:
        """Claim (one write transaction: the store's only writer) the gates to check; each
        claimed gate with its status before."""
        found = list(self.conn.execute(self.q["gates_to_claim"], params))
        claimed = []
        for run_id, was in found:
            row = self.conn.execute(self.q["claim_gate"], {**params, "run_id": run_id}).fetchone()
            claimed.append((g.decode_gate(row), str(was)))
        return claimed

    def renew_gates(self, params: dict[str, Any]) -> set[str]:
        return {row[0] for row in self.conn.execute(self.q["renew_gates"], params)}

    def count_deadletters(self, where: dict[str, Any]) -> int:
        return int(self.conn.execute(self.q["count_deadletters"], where).fetchone()[0])

    def counts(self) -> dict[str, int]:
        row = self.conn.execute(self.q["counts"]).fetchone()
        return dict(zip(COUNT_KEYS, row, strict=True))

    def diagnostics(self) -> dict[str, JSON]:
        def pragma(name: str) -> Any:
            return self.conn.execute(f"PRAGMA {name}").fetchone()[0]

        versions = [row[0] for row in self.conn.execute(self.q["applied_migrations"])]
        return {
            "journal_mode": pragma("journal_mode"),
            "synchronous": _SYNCHRONOUS.get(pragma("synchronous"), "?"),
            "busy_timeout_ms": pragma("busy_timeout"),
            "schema_version": max(versions, default=0),
        }
