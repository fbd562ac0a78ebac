"""The in-memory store's tables and operations: dicts of encoded rows, and overlays.

A transaction's writes go to one :class:`Overlay` per table; its own reads see them, and
``commit`` publishes them to the tables. The rows are those of
:mod:`eventflow.store._codec`, exactly what the SQLite store writes, so both stores order,
compare and round-trip values alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from eventflow.events import JSON
from eventflow.records import (
    RUN_STATUSES,
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
from eventflow.store import COUNT_KEYS
from eventflow.store import _codec as c
from eventflow.store import _deadletters as dl
from eventflow.store._gates import GateRow, claimable, decode_gate, gate_matches, gate_row
from eventflow.store._pauses import MemoryPauses
from eventflow.store._versions import start_row
from eventflow.version_records import VersionStart

_UNFINISHED = ("pending", "running")

K = TypeVar("K")
V = TypeVar("V")

TimerKey = tuple[str, str, str, int]


class Overlay(Generic[K, V]):
    """Uncommitted writes to one table (``None`` = deleted): reads see them, commit publishes."""

    __slots__ = ("base", "writes")

    def __init__(self, base: dict[K, V]) -> None:
        self.base = base
        self.writes: dict[K, V | None] = {}

    def get(self, key: K) -> V | None:
        if key in self.writes:
            return self.writes[key]
        return self.base.get(key)

    def __contains__(self, key: K) -> bool:
        return self.get(key) is not None

    def put(self, key: K, value: V) -> None:
        self.writes[key] = value

    def delete(self, key: K) -> None:
        self.writes[key] = None

    def items(self) -> Iterator[tuple[K, V]]:
        """Rows in insertion order (committed rows first)."""
        writes = self.writes
        for key, value in self.base.items():
            new = writes.get(key, value) if key in writes else value
            if new is not None:
                yield key, new
        for key, new in writes.items():
            if new is not None and key not in self.base:
                yield key, new

    def values(self) -> Iterator[V]:
        return (value for _, value in self.items())

    def count(self) -> int:
        return sum(1 for _ in self.items())

    def commit(self) -> None:
        for key, value in self.writes.items():
            if value is None:
                self.base.pop(key, None)
            else:
                self.base[key] = value
        self.writes.clear()


@dataclass
class Tables:
    events: dict[str, c.EventRow] = field(default_factory=dict)
    listed: dict[str, bool] = field(default_factory=dict)
    """Ids of the events a backfill logged from a listing and no sensor observed yet."""
    cursors: dict[tuple[str, str], c.CursorRow] = field(default_factory=dict)
    matches: dict[MatchKey, c.MatchRow] = field(default_factory=dict)
    runs: dict[str, c.RunRow] = field(default_factory=dict)
    timers: dict[TimerKey, c.TimerRow] = field(default_factory=dict)
    outbox: dict[int, tuple[str, str]] = field(default_factory=dict)
    inbox: dict[int, c.InboxRow] = field(default_factory=dict)
    deadletters: dict[str, c.DeadLetterRow] = field(default_factory=dict)
    gates: dict[str, GateRow] = field(default_factory=dict)
    gate_claims: dict[str, tuple[str, str]] = field(default_factory=dict)
    """``run_id -> (worker, claim_until)``: written by the claims alone, at once."""
    last_id: dict[str, int] = field(default_factory=lambda: {"outbox": 0, "inbox": 0})
    pauses: MemoryPauses = field(default_factory=MemoryPauses)


class MemoryOps:
    """Every store operation, synchronous, on overlays of the tables."""

    def __init__(self, t: Tables) -> None:
        self.tables = t
        self.events = Overlay(t.events)
        self.listed = Overlay(t.listed)
        self.cursors = Overlay(t.cursors)
        self.matches = Overlay(t.matches)
        self.runs = Overlay(t.runs)
        self.timers = Overlay(t.timers)
        self.outbox = Overlay(t.outbox)
        self.inbox = Overlay(t.inbox)
        self.deadletters = Overlay(t.deadletters)
        self.gates = Overlay(t.gates)
        self.last_id = dict(t.last_id)
        self.starts: list[VersionStart] = []
        """Starts applied in this transaction: the store records them when it commits."""

    def commit(self) -> None:
        self.events.commit()
        self.listed.commit()
        self.cursors.commit()
        self.matches.commit()
        self.runs.commit()
        self.timers.commit()
        self.outbox.commit()
        self.inbox.commit()
        self.deadletters.commit()
        self.gates.commit()
        self.tables.last_id.update(self.last_id)

    def _next_id(self, table: str) -> int:
        self.last_id[table] += 1
        return self.last_id[table]

    # transaction methods

    def seen_events(self, ids: Collection[str]) -> set[str]:
        return {
            i for i in ids if (i in self.events and i not in self.listed) or i in self.deadletters
        }

    def get_matches(self, keys: Collection[MatchKey]) -> dict[MatchKey, MatchState]:
        found = ((k, self.matches.get(k)) for k in keys)
        return {k: c.decode_match(row.state) for k, row in found if row is not None}

    def claim_runs(
        self, now: datetime, limit: int, rule_limits: Mapping[str, int]
    ) -> list[RunRecord]:
        now_t = c.dt_text(now)
        if limit <= 0:
            return []
        running = Counter(r.rule for r in self.runs.values() if r.status == "running")
        paused = self.tables.pauses.paused_rules()
        due = sorted(
            (
                r
                for r in self.runs.values()
                if r.status == "pending"
                and r.cancel_requested is None
                and r.rule.partition(":")[0] not in paused
                and (r.not_before is None or r.not_before <= now_t)
            ),
            key=lambda r: (r.created_at, r.run_id),
        )
        claimed: list[RunRecord] = []
        for row in due:
            if len(claimed) >= limit:
                break
            cap = rule_limits.get(row.rule)
            if cap is not None and running[row.rule] >= cap:
                continue
            running[row.rule] += 1
            new = row._replace(
                status="running", attempt=row.attempt + 1, started_at=now_t, updated_at=now_t
            )
            self.runs.put(row.run_id, new)
            claimed.append(c.decode_run(new))
        return claimed

    def apply(self, ch: Changes) -> None:
        # Encode everything first (a value that cannot be stored changes nothing), then
        # write in the SQLite store's order: timers and inbox rows are added before deletes.
        events = [c.event_row(e) for e in ch.events]
        listed = [c.event_row(e) for e in ch.listed_events]
        cursors = [c.cursor_row(s, k, v) for (s, k), v in ch.cursors.items()]
        matches = [c.match_row(m) for m in ch.matches.values()]
        runs = [c.new_run_row(r) for r in ch.runs]
        updates = [c.run_update_row(u) for u in ch.run_updates]
        notes = [c.run_note_row(n) for n in ch.run_notes]
        timers = [c.timer_row(t) for t in ch.timers_add]
        outbox = [c.outbox_row(o) for o in ch.outbox]
        inbox = [c.inbox_row(i) for i in ch.inbox_add]
        letters = [c.deadletter_row(d) for d in ch.deadletters]
        gates = [gate_row(gate) for gate in ch.gates]
        for start in ch.starts:
            start_row(start)  # the same encoding checks as the SQL stores

        for e in events:
            if e.id not in self.events:
                self.events.put(e.id, e)
            elif e.id in self.listed:  # observed live at last
                self.listed.delete(e.id)
        for e in listed:
            if e.id not in self.events:
                self.events.put(e.id, e)
                self.listed.put(e.id, True)
        for cur in cursors:
            self.cursors.put((cur.sensor, cur.key), cur)
        for m in matches:
            self.matches.put((m.rule, m.key), m)
        for r in runs:
            if r.run_id not in self.runs:
                self.runs.put(r.run_id, r)
        for u in updates:
            old = self.runs.get(u.run_id)
            if old is not None:
                self.runs.put(u.run_id, old._replace(**u._asdict()))
        for facts, run_id in notes:
            old = self.runs.get(run_id)
            if old is not None:
                merged = {**c.json_loads(old.notes), **c.json_loads(facts)}
                self.runs.put(run_id, old._replace(notes=c.json_text(merged)))
        for t in timers:
            self.timers.put((t.kind, t.rule, t.key, t.generation), t)
        for tkey in ch.timers_delete:
            self.timers.delete(tkey)
        for o in outbox:
            self.outbox.put(self._next_id("outbox"), o)
        for i in inbox:
            self.inbox.put(self._next_id("inbox"), i)
        for inbox_id in ch.inbox_delete:
            self.inbox.delete(inbox_id)
        for d in letters:
            if d.event_id not in self.deadletters:
                self.deadletters.put(d.event_id, d)
        for done in ch.deadletter_outcomes:
            row = dl.memory_outcome(self.deadletters.get(done.event_id), dl.outcome_params(done))
            self.deadletters.put(done.event_id, row)
        for gate in gates:
            old_gate = self.gates.get(gate.run_id)
            created = old_gate.created_at if old_gate is not None else gate.created_at
            self.gates.put(gate.run_id, gate._replace(created_at=created))
        self.starts.extend(ch.starts)

    # store methods

    def load_cursors(self, sensor: str) -> dict[str, JSON]:
        rows = sorted((r for r in self.cursors.values() if r.sensor == sensor), key=_key)
        return {r.key: c.json_loads(r.value) for r in rows}

    def delete_cursors(self, sensor: str, keys: Collection[str]) -> None:
        for key in keys:
            self.cursors.delete((sensor, key))

    def recover_running(self, now: datetime) -> list[str]:
        now_t = c.dt_text(now)
        rows = sorted(
            (r for r in self.runs.values() if r.status == "running"),
            key=lambda r: (r.created_at, r.run_id),
        )
        for r in rows:
            self.runs.put(r.run_id, r._replace(status="pending", updated_at=now_t))
        return [r.run_id for r in rows]

    def next_run_due(self) -> datetime | None:
        paused = self.tables.pauses.paused_rules()
        times = [
            r.not_before or c.MIN_TEXT
            for r in self.runs.values()
            if r.status == "pending" and r.rule.partition(":")[0] not in paused
        ]
        return c.text_dt(min(times)) if times else None

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self.runs.get(run_id)
        return None if row is None else c.decode_run(row)

    def partition_runs(self, rule: str, key: str) -> list[RunRecord]:
        rows = [r for r in self.runs.values() if r.rule == rule and r.key == key]
        return [c.decode_run(r) for r in sorted(rows, key=lambda r: (r.generation, r.run_id))]

    def list_runs(self, where: dict[str, Any], limit: int) -> list[RunRecord]:
        before = (where["before_at"], where["before_id"])
        rows = [
            r
            for r in self._runs_where(where)
            if before[0] is None or (r.created_at, r.run_id) < before
        ]
        rows.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return [c.decode_run(r) for r in rows[: max(limit, 0)]]

    def count_runs(self, where: dict[str, Any]) -> int:
        return sum(1 for _ in self._runs_where(where))

    def unfinished_runs(self, rule: str) -> int:
        return sum(1 for r in self.runs.values() if r.rule == rule and r.status in _UNFINISHED)

    def _runs_where(self, where: dict[str, Any]) -> Iterator[Any]:
        """The run rows the filters of :func:`~eventflow.store._codec.run_filter` select."""
        for r in self.runs.values():
            if (
                where["rule"] in (None, r.rule)
                and where["status"] in (None, r.status)
                and where["key"] in (None, r.key)
                and (where["since"] is None or r.created_at >= where["since"])
                and (where["until"] is None or r.created_at < where["until"])
            ):
                yield r

    def retry_run(self, run_id: str, now: datetime) -> RunRecord:
        now_t = c.dt_text(now)
        row = self.runs.get(run_id)
        if row is None or row.status not in ("failed", "cancelled"):
            raise c.not_retriable(run_id, None if row is None else row.status)
        new = row._replace(
            status="pending",
            max_attempts=max(row.max_attempts, row.attempt + 1),
            not_before=None,
            finished_at=None,
            error=None,
            output="{}",
            updated_at=now_t,
            cancel_requested=None,
        )
        self.runs.put(run_id, new)
        return c.decode_run(new)

    def request_cancel(self, run_id: str, by: str, now: datetime) -> RunRecord:
        row = self.runs.get(run_id)
        if row is None or row.status not in ("pending", "running"):
            raise c.not_cancellable(run_id, None if row is None else row.status)
        if row.cancel_requested is None:
            row = row._replace(cancel_requested=c.cancel_request_text(by, now))
            self.runs.put(run_id, row)
        return c.decode_run(row)

    def cancel_requests(self) -> list[RunRecord]:
        return [
            c.decode_run(r)
            for r in self.runs.values()
            if r.cancel_requested is not None and r.status in ("pending", "running")
        ]

    def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        now_t = c.dt_text(now)
        rows = sorted((t for t in self.timers.values() if t.due <= now_t), key=_timer_order)
        return [c.decode_timer(t) for t in rows[: max(limit, 0)]]

    def next_timer_due(self) -> datetime | None:
        dues = [t.due for t in self.timers.values()]
        return c.text_dt(min(dues)) if dues else None

    def fetch_outbox(self, publisher: str, limit: int) -> list[OutboxItem]:
        rows = [(i, row) for i, row in self.outbox.items() if row[0] == publisher]
        return [c.decode_outbox(i, p, e) for i, (p, e) in sorted(rows)[: max(limit, 0)]]

    def delete_outbox(self, ids: Collection[int]) -> None:
        for i in ids:
            self.outbox.delete(i)

    def fetch_inbox(self, limit: int) -> list[InboxItem]:
        rows = sorted(self.inbox.items())[: max(limit, 0)]
        return [c.decode_inbox(i, row) for i, row in rows]

    def add_inbox(self, item: InboxItem) -> int:
        new_id = self._next_id("inbox")
        self.inbox.put(new_id, c.inbox_row(item))
        return new_id

    def list_matches(self, where: dict[str, Any], limit: int | None) -> list[MatchState]:
        rows = sorted(self._matches_where(where), key=lambda m: (m.rule, m.key))
        if where["after_rule"] is not None:
            after = (where["after_rule"], where["after_key"])
            rows = [m for m in rows if (m.rule, m.key) > after]
        if limit is not None:
            rows = rows[: max(limit, 0)]
        return [c.decode_match(m.state) for m in rows]

    def count_matches(self, where: dict[str, Any]) -> int:
        return sum(1 for _ in self._matches_where(where))

    def _matches_where(self, where: dict[str, Any]) -> Iterator[Any]:
        """The match rows ``where`` (of :func:`~eventflow.store._codec.match_filter`)
        selects, in no order; the cursor is the caller's."""
        for m in self.matches.values():
            changed = m.updated_at
            if (
                (where["rule"] is None or m.rule == where["rule"])
                and (where["status"] is None or m.status == where["status"])
                and not (where["partial"] and m.status == "fired")
                and (where["key"] is None or m.key == where["key"])
                and (where["since"] is None or (changed is not None and changed >= where["since"]))
                and (where["until"] is None or (changed is not None and changed < where["until"]))
            ):
                yield m

    def get_match(self, rule: str, key: str) -> MatchState | None:
        row = self.matches.get((rule, key))
        return None if row is None else c.decode_match(row.state)

    def match_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for m in self.matches.values():
            per_rule = counts.setdefault(m.rule, {})
            per_rule[m.status] = per_rule.get(m.status, 0) + 1
        return counts

    def get_events(self, ids: Collection[str]) -> list[StoredEvent]:
        rows = (self.events.get(i) for i in dict.fromkeys(ids))
        return [c.decode_event(r) for r in rows if r is not None]

    def read_events(
        self, since: datetime | None, sensors: Collection[str] | None, after: int, limit: int
    ) -> list[tuple[int, StoredEvent]]:
        """Sequence numbers are positions in the log (1 = the oldest event kept)."""
        since_t = None if since is None else c.dt_text(since)
        page: list[tuple[int, StoredEvent]] = []
        for seq, row in enumerate(self.events.values(), 1):
            if len(page) >= limit:
                break
            if seq <= after or (since_t is not None and row.received_at < since_t):
                continue
            if sensors is None or row.sensor in sensors:
                page.append((seq, c.decode_event(row)))
        return page

    def prune_events(self, before: datetime, limit: int) -> int:
        before_t = c.dt_text(before)
        old = sorted(
            (r.received_at, r.id) for r in self.events.values() if r.received_at < before_t
        )
        for _, event_id in old[: max(limit, 0)]:
            self.events.delete(event_id)
            self.listed.delete(event_id)
        return min(len(old), max(limit, 0))

    def get_gate(self, run_id: str) -> CheckGate | None:
        row = self.gates.get(run_id)
        return decode_gate(row) if row is not None else None

    def list_gates(self, where: dict[str, Any], limit: int) -> list[CheckGate]:
        rows = [r for r in self.gates.values() if gate_matches(r, where)]
        rows.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return [decode_gate(r) for r in rows[: max(limit, 0)]]

    def list_events(self, where: dict[str, Any], limit: int) -> list[StoredEvent]:
        rows = [r for r in self.events.values() if c.event_matches(r, where)][::-1]
        if where["after"] is not None:
            ids = [r.id for r in rows]
            rows = rows[ids.index(where["after"]) + 1 :] if where["after"] in ids else []
        return [c.decode_event(r) for r in rows[: max(limit, 0)]]

    def count_events(self, where: dict[str, Any]) -> int:
        return sum(1 for r in self.events.values() if c.event_matches(r, where))

    def claim_gates(self, params: dict[str, Any]) -> list[tuple[CheckGate, str]]:
        """The SQLite store's claim: pending gates, and running ones whose claim expired or
        is another (dead) worker's, oldest first."""
        claims = self.tables.gate_claims
        worker, now = params["worker"], params["now"]
        rows = sorted(
            (
                r
                for r in self.gates.values()
                if claimable(r.status, claims.get(r.run_id), worker, now)
            ),
            key=lambda r: (r.created_at, r.run_id),
        )[: max(params["limit"], 0)]
        claimed = []
        for r in rows:
            new = r._replace(status="running", attempt=r.attempt + 1, updated_at=now)
            self.gates.put(r.run_id, new)
            claims[r.run_id] = (worker, params["until"])
            claimed.append((decode_gate(new), r.status))
        return claimed

    def renew_gates(self, params: dict[str, Any]) -> set[str]:
        claims = self.tables.gate_claims
        held = set()
        for run_id in c.json_loads(params["run_ids"]):
            row = self.gates.get(run_id)
            claim = claims.get(run_id)
            if (
                row is not None
                and row.status == "running"
                and claim
                and claim[0] == params["worker"]
            ):
                claims[run_id] = (claim[0], params["until"])
                held.add(run_id)
        return held

    def list_deadletters(self, where: dict[str, Any], limit: int) -> list[DeadLetter]:
        rows = self._deadletters_where(where)[::-1]
        if where["after"] is not None:
            ids = [r.event_id for r in rows]
            rows = rows[ids.index(where["after"]) + 1 :] if where["after"] in ids else []
        return [c.decode_deadletter(r) for r in rows[: max(limit, 0)]]

    def count_deadletters(self, where: dict[str, Any]) -> int:
        return len(self._deadletters_where(where))

    def get_deadletter(self, event_id: str) -> DeadLetter | None:
        row = self.deadletters.get(event_id)
        return None if row is None else c.decode_deadletter(row)

    def act_on_deadletter(
        self, event_id: str, action: dl.DeadLetterAction, by: str, now: datetime
    ) -> DeadLetter:
        row = self.deadletters.get(event_id)
        new = dl.memory_act(row, dl.act_params(event_id, action, by, now), action)
        if new is None:
            raise dl.refused(event_id, self.get_deadletter(event_id), action)
        self.deadletters.put(event_id, new)
        return c.decode_deadletter(new)

    def fetch_redrives(self, limit: int) -> list[DeadLetter]:
        rows = [
            r
            for r in self.deadletters.values()
            if r.requested_at is not None and r.status == "open"
        ]
        return [c.decode_deadletter(r) for r in rows[: max(limit, 0)]]

    def _deadletters_where(self, where: dict[str, Any]) -> list[c.DeadLetterRow]:
        """The dead letters (oldest first) the filters of ``deadletter_filter`` select."""
        return [
            r
            for r in self.deadletters.values()
            if where["sensor"] in (None, r.sensor)
            and where["status"] in (None, r.status)
            and (where["since"] is None or r.time >= where["since"])
            and (where["until"] is None or r.time < where["until"])
        ]

    def counts(self) -> dict[str, int]:
        runs = Counter(r.status for r in self.runs.values())
        matches = Counter(m.status for m in self.matches.values())
        figures = [runs[s] for s in RUN_STATUSES]
        figures += [matches[s] for s in ("open", "fired", "expired")]
        figures += [self.events.count(), self.outbox.count(), self.timers.count()]
        open_letters = sum(1 for r in self.deadletters.values() if r.status == "open")
        figures += [self.inbox.count(), open_letters]
        return dict(zip(COUNT_KEYS, figures, strict=True))


def _key(row: c.CursorRow) -> str:
    return row.key


def _timer_order(t: c.TimerRow) -> tuple[str, str, str, str, int]:
    return (t.due, t.kind, t.rule, t.key, t.generation)
