"""Start a pipeline version on its store: check the environment, plan, refuse or apply.

Called by the runtime once it holds the store, before anything else runs:

1. the store's identity is made at its first start, and a store of another environment
   is refused (:func:`eventflow.environments.check_identity`);
2. the file is planned against the version the store last ran (:mod:`eventflow.plan`); a
   destructive line nobody accepted stops the start with :class:`PlanRefused`, naming the
   line and what accepts it;
3. the accepted migrations are applied in one transaction: a renamed rule's matches
   (open, fired, expired: its fired generations keep it from firing twice) and timers move
   to the new name, a renamed dataset's inputs in open matches are re-keyed, orphaned open
   matches are kept, expired with ``eventflow.match.expired`` (``reason:
   pipeline_changed``) or closed without an event (``migrations.orphans``);
4. the timers of open matches whose rule's ``within`` or deadline changed move to the
   due time the new version gives them (:func:`_retime`);
5. the start is recorded with its version, definition, git commit and accepted lines.

Steps 3 to 5 are one transaction: a crash before its commit leaves the store as the earlier
version left it (old timers, nothing migrated, no start recorded: the next start plans the
same lines again), a crash after it leaves everything moved and the start recorded, never a
mix. (Each migration also finds its work done when planned again: moved matches are no
longer under the old name, expired ones are no longer open, moved timers are due already
at the new time.)
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from structlog.typing import FilteringBoundLogger

from eventflow import completion, environments
from eventflow.crashpoints import crash_point
from eventflow.errors import EventflowError
from eventflow.pipeline import CompiledPipeline
from eventflow.plan import (
    Plan,
    live_state,
    make_plan,
    plan_definition,
    rule_names,
)
from eventflow.records import Changes, Timer
from eventflow.rules.core import (
    DEADLINE,
    EXPIRY,
    OPEN,
    PARTITION_TIMER,
    Expired,
    MatchState,
    RuleSpec,
)
from eventflow.store import redact_dsn
from eventflow.types import Store
from eventflow.version_records import StoreIdentity, VersionStart
from eventflow.versions import git_info, worker_name


@dataclass(frozen=True)
class Started:
    """A recorded start: the store's identity and the plan it applied (against the start
    before it)."""

    identity: StoreIdentity
    plan: Plan
    start: VersionStart
    """The start as recorded (without its ``seq``)."""


class PlanRefused(EventflowError):
    """``eventflow run`` will not apply a change that drops or re-keys live state unasked."""


async def plan_for(pipeline: CompiledPipeline, store: Store, accept: Collection[str] = ()) -> Plan:
    """The plan of starting ``pipeline`` on ``store`` now."""
    starts = await store.list_starts(1)
    previous = starts[0] if starts else None
    definition = plan_definition(pipeline)
    state = await live_state(store, rule_names(previous, definition))
    return make_plan(
        previous,
        definition,
        pipeline.version.id,
        environment=pipeline.environment,
        state=state,
        accept=accept,
    )


async def start_version(
    pipeline: CompiledPipeline,
    store: Store,
    now: datetime,
    log: FilteringBoundLogger,
    accept: Collection[str] = (),
) -> Started:
    """Check, plan, migrate and record this start (see the module docstring)."""
    identity = await store.claim_identity(
        environments.new_identity(pipeline.environment, pipeline.name, now)
    )
    environments.check_identity(
        identity, pipeline.environment, f"state store {redact_dsn(pipeline.state_dsn)}"
    )
    plan = await plan_for(pipeline, store, accept)
    refused = plan.refused
    if refused:
        log.error("plan_refused", version=plan.version, lines=[line.id for line in refused])
        raise PlanRefused(refusal_message(plan))
    changes = Changes()
    migrated, moved = None, {}
    migrating = bool(plan.accepted or plan.renames or plan.dataset_renames)
    retimed = retimed_rules(plan)
    if migrating or retimed:
        timers = await store.timers(10_000_000)
        if migrating:
            migrated = await _migrate(pipeline, store, plan, now, changes, timers)
        moved = await _retime(pipeline, store, retimed, changes, timers)
    git = git_info(pipeline.file)
    start = VersionStart(
        version=plan.version,
        pipeline=pipeline.name,
        environment=pipeline.environment,
        worker=worker_name(),
        started_at=now,
        rules=dict(pipeline.version.rules),
        definition=dict(pipeline.version.definition),
        git_commit=git.commit,
        git_dirty=git.dirty,
        accepted=tuple(line.to_dict() for line in plan.accepted),
    )
    changes.starts.append(start)
    crash_point("versions.before_commit")
    async with store.transaction() as tx:  # the migrations, moved timers and the start at once
        await tx.apply(changes)
    crash_point("versions.after_migrate")
    if migrated is not None:
        log.info("plan_applied", version=plan.version, **migrated)
    if moved:
        log.info("timers_moved", version=plan.version, **moved)
    log.info(
        "version_started",
        version=plan.version,
        previous=plan.previous.version if plan.previous else None,
        environment=pipeline.environment,
        store_id=identity.short_id,
        changes=len(plan.lines),
        accepted=[line.id for line in plan.accepted],
        git_commit=git.commit,
        git_dirty=git.dirty,
    )
    return Started(identity, plan, start)


def refusal_message(plan: Plan) -> str:
    """What was refused, one plan line each, and what accepts it."""
    lines = [
        f"refusing to start version {plan.version}: "
        f"{len(plan.refused)} change(s) would drop or re-key live state"
    ]
    for line in plan.refused:
        lines.append(
            f"  plan line {line.id}: {line.subject} {line.detail}: {line.effect}"
            f" (accept with --accept {line.id}"
            + (
                ", or declare `migrations.orphans: keep|expire|drop`"
                if line.kind in ("rule_removed", "by_changed", "pattern_changed")
                else ""
            )
            + (
                ", or `renamed_from:` on the rule that replaces it"
                if line.kind == "rule_removed"
                else ""
            )
            + ")"
        )
    lines.append("  `eventflow plan FILE` lists every change")
    return "\n".join(lines)


async def _migrate(
    pipeline: CompiledPipeline,
    store: Store,
    plan: Plan,
    now: datetime,
    changes: Changes,
    timers: list[Timer],
) -> dict[str, Any]:
    """Add the accepted migrations to ``changes`` (committed with the start)."""
    moved = 0
    for old, new in plan.renames.items():
        # A start killed after its migration moved everything already: the old rows it
        # closed must not overwrite the moved ones when the next start plans it again.
        done = {m.key for m in await store.list_matches(rule=new)}
        for m in await store.list_matches(rule=old):
            if m.key in done:
                continue
            changes.matches[(new, m.key)] = replace(m, rule=new)
            if m.status == "open":
                changes.matches[(old, m.key)] = replace(m, status="expired", updated_at=now)
            moved += 1
        for t in timers:
            if t.rule == old:
                changes.timers_add.append(Timer(t.kind, new, t.key, t.generation, t.due))
                changes.timers_delete.append((t.kind, t.rule, t.key, t.generation))
    if plan.dataset_renames:
        for rule in pipeline.rules:
            for m in await store.list_matches(rule=rule, status="open"):
                base = changes.matches.get((rule, m.key), m)
                renamed = _rename_inputs(base, plan.dataset_renames)
                if renamed is not base:
                    changes.matches[(rule, m.key)] = renamed
    orphaned: list[MatchState] = []
    if plan.orphans in ("expire", "drop"):
        rules = {
            line.id.split(".")[1]
            for line in plan.accepted
            if line.kind in ("rule_removed", "by_changed")
        }
        for line in plan.accepted:
            if line.kind == "pattern_changed":
                rules.update(_readers(pipeline, line.id.split(".")[1]))
        for rule in sorted(rules):
            orphaned += await store.list_matches(rule=rule, status="open")
    for m in orphaned:
        changes.matches[(m.rule, m.key)] = replace(m, status="expired", updated_at=now)
        for t in timers:
            if (t.rule, t.key) == (m.rule, m.key):
                changes.timers_delete.append((t.kind, t.rule, t.key, t.generation))
        if plan.orphans == "expire":
            effect = Expired(m.rule, m.key, m.partition, m.generation, m.arrived(), (), m.opened_at)
            event = completion.match_expired(pipeline.name, effect, now, pipeline.version)
            event = event.model_copy(update={"data": {**event.data, "reason": "pipeline_changed"}})
            changes.outbox.extend(completion.route(pipeline, event))
    return {
        "renamed_rules": dict(plan.renames),
        "renamed_datasets": dict(plan.dataset_renames),
        "matches_moved": moved,
        "orphans": plan.orphans,
        "orphans_closed": len(orphaned),
    }


def retimed_rules(plan: Plan) -> dict[str, set[str]]:
    """The rules whose ``within`` or deadline changed: rule -> ``{"within", "deadline"}``."""
    found: dict[str, set[str]] = {}
    for line in plan.lines:
        if line.kind == "within_changed":
            found.setdefault(line.id.split(".")[1], set()).add("within")
        elif line.kind == "deadline_changed" and not line.id.endswith(".expect"):
            found.setdefault(line.id.split(".")[1], set()).add("deadline")
    return found


async def _retime(
    pipeline: CompiledPipeline,
    store: Store,
    retimed: dict[str, set[str]],
    changes: Changes,
    timers: list[Timer],
) -> dict[str, int]:
    """Move the timers of open matches whose rule's ``within`` or deadline changed to the
    due time the new version gives them, in ``changes`` (committed with the start).

    An expiry timer becomes ``opened_at + within`` (deleted when the rule no longer has a
    window); a pending deadline becomes the new ``expect_by`` of the partition (deleted when
    the rule no longer has one). A due time already past fires at once after the start. A
    match without a timer gets none: matches opened from now on get the new one. Matches and
    timers a rename moves in this start are moved from where the rename put them."""
    expiries = deadlines = 0
    pending = {(t.kind, t.rule, t.key, t.generation) for t in changes.timers_add}
    have = {(t.kind, t.rule, t.key, t.generation) for t in timers} | pending
    for name, what in sorted(retimed.items()):
        rule = pipeline.rules.get(name)
        if rule is None:
            continue
        spec = rule.spec
        found = {m.key: m for m in await store.list_matches(rule=name)}
        found.update({k: m for (r, k), m in changes.matches.items() if r == name})
        for key, m in sorted(found.items()):
            new = m
            if "within" in what and spec.batch is None:
                new, done = _move_expiry(spec, new, changes, have)
                expiries += done
            if "deadline" in what:
                new, done = _move_deadline(spec, new, changes, have)
                deadlines += done
            if new is not m:
                changes.matches[(name, key)] = new
    return (
        {"expiry_timers": expiries, "deadline_timers": deadlines} if expiries or deadlines else {}
    )


def _move_expiry(
    spec: RuleSpec, m: MatchState, changes: Changes, have: set[tuple[str, str, str, int]]
) -> tuple[MatchState, int]:
    tkey = (EXPIRY, m.rule, m.key, m.generation)
    if m.status not in OPEN or m.expires_at is None or m.opened_at is None or tkey not in have:
        return m, 0
    want = m.opened_at + spec.within if spec.within is not None and spec.mode != "any" else None
    if want == m.expires_at:
        return m, 0
    if want is None:
        changes.timers_delete.append(tkey)
    else:
        changes.timers_add.append(Timer(*tkey, want))
    return replace(m, expires_at=want), 1


def _move_deadline(
    spec: RuleSpec, m: MatchState, changes: Changes, have: set[tuple[str, str, str, int]]
) -> tuple[MatchState, int]:
    tkey = (DEADLINE, m.rule, m.key, PARTITION_TIMER)
    if m.deadline != "pending" or tkey not in have:
        return m, 0
    want: datetime | None = None
    if spec.deadline is not None:
        try:
            want = spec.deadline.at(m.partition)
        except ValueError:  # the new deadline does not apply to this partition: keep the old
            return m, 0
    if want == m.deadline_at:
        return m, 0
    if want is None:
        changes.timers_delete.append(tkey)
        return replace(m, deadline_at=None, deadline=None), 1
    changes.timers_add.append(Timer(*tkey, want))
    return replace(m, deadline_at=want), 1


def _rename_inputs(m: MatchState, renames: dict[str, str] | object) -> MatchState:
    assert isinstance(renames, dict)
    if not any(d in renames for d in m.inputs):
        return m
    inputs = {
        renames.get(d, d): tuple(
            replace(r, dataset=renames.get(r.dataset, r.dataset)) for r in refs
        )
        for d, refs in m.inputs.items()
    }
    return replace(m, inputs=inputs)


def _readers(pipeline: CompiledPipeline, dataset: str) -> list[str]:
    return [r.name for r in pipeline.rules_by_dataset.get(dataset, ())]
