"""``eventflow plan``: what a changed pipeline file does to the live state of its store.

:func:`make_plan` is pure: it compares the definition the store last ran (kept with each
start, :mod:`eventflow.versions`) with the file's, and the live state of each rule (open
matches, timers, pending and running runs, fired generations; :func:`live_state` reads
it), and lists one :class:`PlanLine` per change, each with a stable id (the dotted path of
what changed: ``rules.hourly.when.by``, ``datasets.orders.key``, ``rules.daily``).

A line is *destructive* when applying it would silently drop or re-key live state: a
removed rule that still has open matches, timers or runs; a changed ``by`` or dataset
pattern under open matches (their keys no longer line up with new inputs). ``eventflow
run`` refuses to start while a destructive line is not accepted; one is accepted by
``--accept ID`` (or ``migrations.accept`` in the file), by ``renamed_from:`` (a rename keeps
the state), or by ``migrations.orphans`` (keep, expire or drop the orphaned matches; see
:mod:`eventflow.migrate`). Everything else (inputs, windows, deadlines, retries, tasks) is
listed with its effect and needs no acceptance. Rolling back is a plan like any other: the
earlier file compared with what ran last.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from eventflow.events import JSON
from eventflow.types import Store
from eventflow.version_records import VersionStart
from eventflow.versions import rule_versions

FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
_ORPHAN_KINDS = ("rule_removed", "by_changed", "pattern_changed")


@dataclass(frozen=True)
class LiveState:
    """What a rule holds in the store."""

    open: int = 0
    fired: int = 0
    expired: int = 0
    timers: int = 0
    pending: int = 0
    running: int = 0

    @property
    def live(self) -> bool:
        return bool(self.open or self.timers or self.pending or self.running)

    def __add__(self, other: LiveState) -> LiveState:
        return LiveState(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, ...]:
        return (self.open, self.fired, self.expired, self.timers, self.pending, self.running)

    def to_dict(self) -> dict[str, JSON]:
        return {
            "open_matches": self.open,
            "fired_matches": self.fired,
            "expired_matches": self.expired,
            "timers": self.timers,
            "pending_runs": self.pending,
            "running_runs": self.running,
        }

    def describe(self) -> str:
        parts = [
            (self.open, "open match", "open matches"),
            (self.timers, "timer", "timers"),
            (self.pending, "pending run", "pending runs"),
            (self.running, "running run", "running runs"),
            (self.fired, "fired generation", "fired generations"),
        ]
        said = [f"{n} {one if n == 1 else many}" for n, one, many in parts if n]
        return ", ".join(said) or "no live state"


@dataclass(frozen=True)
class PlanLine:
    """One change and what it does to live state."""

    id: str
    """Stable id, the dotted path of what changed (what ``--accept`` takes)."""
    kind: str
    subject: str
    detail: str
    effect: str
    destructive: bool = False
    accepted_by: str | None = None
    state: LiveState = field(default_factory=LiveState)

    @property
    def refused(self) -> bool:
        return self.destructive and self.accepted_by is None

    def to_dict(self) -> dict[str, JSON]:
        return {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "detail": self.detail,
            "effect": self.effect,
            "destructive": self.destructive,
            "accepted_by": self.accepted_by,
            "state": self.state.to_dict(),
        }


@dataclass(frozen=True)
class Plan:
    pipeline: str
    environment: str
    version: str
    previous: VersionStart | None
    lines: tuple[PlanLine, ...]
    renames: Mapping[str, str] = field(default_factory=dict)
    """Rules renamed (old name -> new) whose state moves."""
    dataset_renames: Mapping[str, str] = field(default_factory=dict)
    orphans: str | None = None
    """``migrations.orphans`` of the file: keep, expire or drop."""

    @property
    def changed(self) -> bool:
        return bool(self.lines)

    @property
    def refused(self) -> list[PlanLine]:
        return [line for line in self.lines if line.refused]

    @property
    def accepted(self) -> list[PlanLine]:
        return [line for line in self.lines if line.destructive and line.accepted_by]

    def to_dict(self) -> dict[str, JSON]:
        prev = self.previous
        return {
            "pipeline": self.pipeline,
            "environment": self.environment,
            "version": self.version,
            "previous": None
            if prev is None
            else {"version": prev.version, "started_at": prev.started_at.isoformat()},
            "changed": self.changed,
            "refused": [line.id for line in self.refused],
            "lines": [line.to_dict() for line in self.lines],
        }


def make_plan(
    previous: VersionStart | None,
    definition: Mapping[str, Any],
    version: str,
    *,
    environment: str,
    state: Mapping[str, LiveState],
    accept: Collection[str] = (),
) -> Plan:
    """The plan of running ``definition`` on a store that last ran ``previous``."""
    migrations = definition.get("migrations") or {}
    orphans: str | None = migrations.get("orphans")
    accepted = set(accept) | set(migrations.get("accept") or ())
    builder = _Builder(definition, state, accepted, orphans)
    if previous is None:
        builder.first_start()
    elif previous.version != version:
        builder.compare(previous.definition)
    return Plan(
        pipeline=str(definition.get("name", "")),
        environment=environment,
        version=version,
        previous=previous,
        lines=tuple(builder.lines),
        renames=builder.renames,
        dataset_renames=builder.dataset_renames,
        orphans=orphans,
    )


class _Builder:
    def __init__(
        self,
        new: Mapping[str, Any],
        state: Mapping[str, LiveState],
        accepted: set[str],
        orphans: str | None,
    ) -> None:
        self.new = new
        self.state = state
        self.accepted = accepted
        self.orphans = orphans
        self.lines: list[PlanLine] = []
        self.renames: dict[str, str] = {}
        self.dataset_renames: dict[str, str] = {}

    def add(self, line: PlanLine) -> None:
        if line.destructive and line.accepted_by is None:
            if line.id in self.accepted:
                line = replace(line, accepted_by=f"--accept {line.id}")
            elif self.orphans is not None and line.kind in _ORPHAN_KINDS:
                line = replace(line, accepted_by=f"migrations.orphans: {self.orphans}")
        self.lines.append(line)

    def live(self, rule: str) -> LiveState:
        return self.state.get(rule, LiveState())

    def first_start(self) -> None:
        for name in self.new.get("rules", {}):
            self.add(
                PlanLine(f"rules.{name}", "rule_added", f"rule {name}", "added", "starts empty")
            )

    def compare(self, old: Mapping[str, Any]) -> None:
        old_rules: dict[str, Any] = dict(old.get("rules", {}))
        new_rules: dict[str, Any] = dict(self.new.get("rules", {}))
        raw_new = self.new.get("_renamed", {})
        self._datasets(dict(old.get("datasets", {})), raw_new.get("datasets", {}))
        for name, was in raw_new.get("rules", {}).items():
            if was in old_rules and was not in new_rules and name in new_rules:
                self.renames[was] = name
                live = self.live(was)
                self.add(
                    PlanLine(
                        f"rules.{name}",
                        "rule_renamed",
                        f"rule {name}",
                        f"renamed from {was}",
                        f"{live.describe()} move to {name}" if live.live else "no live state",
                        destructive=live.live,
                        accepted_by="renamed_from",
                        state=live,
                    )
                )
        renamed_old = set(self.renames)
        for name in new_rules.keys() - old_rules.keys() - set(self.renames.values()):
            self.add(
                PlanLine(f"rules.{name}", "rule_added", f"rule {name}", "added", "starts empty")
            )
        for name in old_rules.keys() - new_rules.keys() - renamed_old:
            live = self.live(name)
            self.add(
                PlanLine(
                    f"rules.{name}",
                    "rule_removed",
                    f"rule {name}",
                    "removed",
                    _removed_effect(live, self.orphans),
                    destructive=live.live,
                    state=live,
                )
            )
        for name, rule in new_rules.items():
            was = next((o for o, n in self.renames.items() if n == name), name)
            if was in old_rules:
                self._rule(name, old_rules[was], rule, old, self.live(was))
        self._sensors(dict(old.get("sensors", {})), dict(self.new.get("sensors", {})))
        if old.get("publish") != self.new.get("publish"):
            self.add(
                PlanLine(
                    "publish",
                    "publish_changed",
                    "publish",
                    "publishers changed",
                    "events already in the outbox go to publishers of the same name",
                )
            )
        if old_rules and new_rules and not self.lines:
            self.add(
                PlanLine(
                    "pipeline", "other", "pipeline", "definition changed", "none on live state"
                )
            )

    def _datasets(self, old: dict[str, Any], renamed: Mapping[str, str]) -> None:
        new: dict[str, Any] = dict(self.new.get("datasets", {}))
        for name, was in renamed.items():
            if was in old and was not in new and name in new:
                self.dataset_renames[was] = name
                self.add(
                    PlanLine(
                        f"datasets.{name}",
                        "dataset_renamed",
                        f"dataset {name}",
                        f"renamed from {was}",
                        f"inputs of {was} in open matches count as {name}",
                        accepted_by="renamed_from",
                    )
                )
        olds = {self.dataset_renames.get(n, n): d for n, d in old.items()}
        for name in new.keys() - olds.keys():
            self.add(
                PlanLine(f"datasets.{name}", "dataset_added", f"dataset {name}", "added", "none")
            )
        for name in olds.keys() - new.keys():
            self.add(
                PlanLine(
                    f"datasets.{name}",
                    "dataset_removed",
                    f"dataset {name}",
                    "removed",
                    "its events no longer count for any rule",
                )
            )
        for name in olds.keys() & new.keys():
            before, after = olds[name], new[name]
            for key in ("key", "partition", "sensor"):
                if before.get(key) != after.get(key):
                    readers = self._readers(name)
                    live = sum((self.live(r) for r in readers), LiveState())
                    effect = (
                        f"{live.open} open matches of {', '.join(readers)} were keyed by the"
                        f" old {key}: new inputs may not line up with them"
                        if live.open
                        else "no open matches read it"
                    )
                    self.add(
                        PlanLine(
                            f"datasets.{name}.{key}",
                            "pattern_changed",
                            f"dataset {name}",
                            f"{key}: {_show(before.get(key))} -> {_show(after.get(key))}",
                            effect,
                            destructive=live.open > 0,
                            state=live,
                        )
                    )
            if before.get("where") != after.get("where"):
                self.add(
                    PlanLine(
                        f"datasets.{name}.where",
                        "filter_changed",
                        f"dataset {name}",
                        f"where: {_show(before.get('where'))} -> {_show(after.get('where'))}",
                        "applies to events from now on",
                    )
                )

    def _readers(self, dataset: str) -> list[str]:
        from eventflow.versions import _leaf_datasets

        return sorted(
            n
            for n, r in self.new.get("rules", {}).items()
            if dataset in _leaf_datasets(r.get("when", {}))
        )

    def _rule(
        self,
        name: str,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        old_defn: Mapping[str, Any],
        live: LiveState,
    ) -> None:
        from eventflow.versions import _leaf_datasets

        subject, prefix = f"rule {name}", f"rules.{name}"
        before_when, after_when = old.get("when", {}), new.get("when", {})
        before = {self.dataset_renames.get(d, d) for d in _leaf_datasets(before_when)}
        after = set(_leaf_datasets(after_when))
        if after - before:
            added = ", ".join(sorted(after - before))
            self.add(
                PlanLine(
                    f"{prefix}.when",
                    "inputs_added",
                    subject,
                    f"inputs added: {added}",
                    f"{live.open} open matches now also wait for {added}" if live.open else "none",
                    state=live,
                )
            )
        if before - after:
            removed = ", ".join(sorted(before - after))
            self.add(
                PlanLine(
                    f"{prefix}.when",
                    "inputs_removed",
                    subject,
                    f"inputs removed: {removed}",
                    f"{live.open} open matches no longer wait for {removed}: those complete"
                    " without it fire at their next input or timer"
                    if live.open
                    else "none",
                    state=live,
                )
            )
        if before_when.get("by") != after_when.get("by"):
            self.add(
                PlanLine(
                    f"{prefix}.when.by",
                    "by_changed",
                    subject,
                    f"by: {_show(before_when.get('by'))} -> {_show(after_when.get('by'))}",
                    f"{live.open} open matches are keyed by the old variables: no new input"
                    " lines up with them"
                    if live.open
                    else "no open matches",
                    destructive=live.open > 0,
                    state=live,
                )
            )
        if before_when.get("within") != after_when.get("within"):
            self.add(
                PlanLine(
                    f"{prefix}.when.within",
                    "within_changed",
                    subject,
                    f"within: {_show(before_when.get('within'))} ->"
                    f" {_show(after_when.get('within'))}",
                    _within_effect(live, after_when.get("within"))
                    if live.open
                    else "no open matches",
                    state=live,
                )
            )
        for key in ("expect_by", "timezone", "expect"):
            if old.get(key) != new.get(key):
                self.add(
                    PlanLine(
                        f"{prefix}.{key}",
                        "deadline_changed",
                        subject,
                        f"{key}: {_show(old.get(key))} -> {_show(new.get(key))}",
                        _deadline_effect(key, live, new.get("expect_by"))
                        if live.open or live.expired
                        else "none",
                        state=live,
                    )
                )
        old_run, new_run = dict(old.get("run", {})), dict(new.get("run", {}))
        inflight = live.pending + live.running
        for key in ("concurrency", "retries", "timeout", "backoff"):
            if old_run.get(key) != new_run.get(key):
                effect = (
                    f"{inflight} runs in flight keep the attempts they were given;"
                    " the new value applies to their next attempt"
                    if key != "retries"
                    else f"{inflight} runs in flight keep their attempt limit; new runs get"
                    f" {int(new_run.get('retries') or 0) + 1} attempts"
                )
                if key == "concurrency":
                    effect = f"claims from now on: {live.running} running, {live.pending} pending"
                self.add(
                    PlanLine(
                        f"{prefix}.run.{key}",
                        f"{key}_changed",
                        subject,
                        f"{key}: {_show(old_run.get(key))} -> {_show(new_run.get(key))}",
                        effect,
                        state=live,
                    )
                )
        task = {"concurrency", "retries", "timeout", "backoff"}
        if {k: v for k, v in old_run.items() if k not in task} != {
            k: v for k, v in new_run.items() if k not in task
        }:
            self.add(
                PlanLine(
                    f"{prefix}.run",
                    "task_changed",
                    subject,
                    "task changed",
                    f"{inflight} runs in flight run the new task at their next attempt",
                    state=live,
                )
            )
        handled = {"when", "run", "expect_by", "timezone", "expect"}
        for key in sorted((old.keys() | new.keys()) - handled):
            if old.get(key) != new.get(key):
                self.add(
                    PlanLine(
                        f"{prefix}.{key}",
                        "rule_changed",
                        subject,
                        f"{key}: {_show(old.get(key))} -> {_show(new.get(key))}",
                        "applies to inputs from now on",
                        state=live,
                    )
                )
        if old.get("when") != new.get("when") and not any(
            line.id.startswith(f"{prefix}.when") for line in self.lines
        ):
            self.add(
                PlanLine(
                    f"{prefix}.when",
                    "condition_changed",
                    subject,
                    "condition changed",
                    "open matches are evaluated by the new condition at their next input",
                    state=live,
                )
            )

    def _sensors(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        for name in sorted(old.keys() | new.keys()):
            if old.get(name) == new.get(name):
                continue
            change = "added" if name not in old else "removed" if name not in new else "changed"
            effect = {
                "added": "starts from its beginning",
                "removed": "its cursors stay in the store, unused",
                "changed": "restarts with the new settings from its cursors",
            }[change]
            self.add(
                PlanLine(f"sensors.{name}", f"sensor_{change}", f"sensor {name}", change, effect)
            )


def _within_effect(live: LiveState, within: Any) -> str:
    """What a changed ``within`` does to the open matches' expiry timers (moved by
    :func:`eventflow.migrate.start_version` in the start's transaction)."""
    matches = f"{live.open} open {'match' if live.open == 1 else 'matches'}"
    if within is None:
        return (
            f"the expiry timers of {matches} are deleted at the first start: they no longer expire"
        )
    return (
        f"the expiry timers of {matches} move to their opening time +"
        f" {_show(within)} at the first start (one already past expires them at once);"
        " matches opened from now on use the new window"
    )


def _deadline_effect(key: str, live: LiveState, expect_by: Any) -> str:
    if key == "expect":
        return "partitions are expected on the new schedule from now on"
    if expect_by is None:
        return "pending deadlines are deleted at the first start: those partitions have none"
    return (
        "pending deadlines move to the new time at the first start (one already past is"
        " missed at once); new partitions get the new one"
    )


def _removed_effect(live: LiveState, orphans: str | None) -> str:
    if not live.live:
        return "no live state"
    fate = {
        None: "would be left behind (timers dropped when due, pending runs failed)",
        "keep": "kept for inspection (timers dropped when due, pending runs failed)",
        "expire": "expired with eventflow.match.expired (reason pipeline_changed)",
        "drop": "closed without an event",
    }[orphans]
    return f"{live.describe()} {fate}"


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def plan_definition(pipeline: Any) -> dict[str, Any]:
    """The definition :func:`make_plan` compares, with the file's declarations
    (``renamed_from``, ``migrations``) that the version itself leaves out."""
    raw = pipeline.raw
    defn = dict(pipeline.version.definition)
    defn["migrations"] = raw.migrations.model_dump(mode="json")
    defn["_renamed"] = {
        "rules": {n: r.renamed_from for n, r in raw.rules.items() if r.renamed_from},
        "datasets": {n: d.renamed_from for n, d in raw.datasets.items() if d.renamed_from},
    }
    return defn


async def live_state(store: Store, rules: Iterable[str]) -> dict[str, LiveState]:
    """The live state of each rule in the store."""
    counts = await store.match_counts()
    timers: dict[str, int] = {}
    for timer in await store.timers(10_000_000):
        timers[timer.rule] = timers.get(timer.rule, 0) + 1
    out: dict[str, LiveState] = {}
    for rule in set(rules) | set(counts) | set(timers):
        c = counts.get(rule, {})
        out[rule] = LiveState(
            open=c.get("open", 0),
            fired=c.get("fired", 0),
            expired=c.get("expired", 0),
            timers=timers.get(rule, 0),
            pending=await store.count_runs(rule=rule, status="pending"),
            running=await store.count_runs(rule=rule, status="running"),
        )
    return out


def rule_names(previous: VersionStart | None, definition: Mapping[str, Any]) -> set[str]:
    names = set(definition.get("rules", {}))
    if previous is not None:
        names |= set(previous.definition.get("rules", {}))
    return names


__all__ = ["LiveState", "Plan", "PlanLine", "live_state", "make_plan", "rule_versions"]
