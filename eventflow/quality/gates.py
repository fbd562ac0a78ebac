"""Gates: a produced partition held back (made in the run's result transaction), decided
by its checks' results (in the transaction that announces it or records the block), and
re-run or overridden by an operator (audited in the gate and the log)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from eventflow import completion
from eventflow.errors import StoreError
from eventflow.events import JSON
from eventflow.log import get_logger
from eventflow.pipeline import PRODUCED_SENSOR_PREFIX, CompiledPipeline
from eventflow.records import Changes, CheckGate, GateStatus, InboxItem, RunRecord, RunUpdate
from eventflow.types import Store

ACTIONS = ("rerun", "override")
"""What an operator can do to a gate."""
_CAN: dict[str, tuple[GateStatus, ...]] = {
    "rerun": ("blocked", "passed", "overridden"),
    "override": ("blocked", "pending", "running"),
}


def announcement_payload(run: RunRecord) -> JSON:
    """What the announcement of a run's produced partition carries."""
    return {"run_id": run.run_id, "rule": run.rule, "attempt": run.attempt}


def held(run: RunRecord, dataset: str, now: datetime) -> CheckGate:
    """The gate a succeeded run of a rule with checks records instead of announcing."""
    return CheckGate(
        run_id=run.run_id,
        rule=run.rule,
        dataset=dataset,
        key=run.key,
        partition=dict(run.partition),
        status="pending",
        attempt=0,
        payload=announcement_payload(run),
        created_at=now,
        updated_at=now,
        pipeline_version=run.pipeline_version,
    )


def announcement(gate: CheckGate, now: datetime) -> InboxItem:
    """The produced partition announced, as a run without checks announces it: the same
    position, so announcing it twice (an override, then checks that pass) fires once."""
    return InboxItem(
        observation_sensor=PRODUCED_SENSOR_PREFIX + gate.rule,
        dataset=gate.dataset,
        partition=dict(gate.partition),
        position={"run_id": gate.run_id},
        payload=gate.payload,
        created_at=now,
    )


def decided(
    pipeline: CompiledPipeline,
    gate: CheckGate,
    results: Sequence[Mapping[str, JSON]],
    run: RunRecord | None,
    now: datetime,
) -> Changes:
    """What an evaluation's ``results`` write, at once: the gate ``passed`` with the
    announcement, or ``blocked`` (and the run ``failed`` under ``on_check_failure: fail``);
    ``eventflow.check.failed`` for each failed check, ``.passed`` for a passed gate."""
    blocked = any(r.get("severity") == "error" and r.get("passed") is False for r in results)
    status: GateStatus = "blocked" if blocked else "passed"
    new = replace(gate, status=status, results=tuple(dict(r) for r in results), updated_at=now)
    changes = Changes(gates=[new])
    events = [
        completion.check_event(pipeline.name, new, r, now) for r in results if not r.get("passed")
    ]
    if not blocked:
        changes.inbox_add.append(announcement(new, now))
        events.append(completion.check_event(pipeline.name, new, None, now))
    for event in events:
        changes.outbox.extend(completion.route(pipeline, event))
    rule = pipeline.rules.get(gate.rule)
    suite = rule.checks if rule is not None else None
    if blocked and suite is not None and suite.on_failure == "fail" and run is not None:
        names = ", ".join(new.blocking)
        changes.run_updates.append(
            RunUpdate(
                run.run_id,
                "failed",
                run.attempt,
                now,
                finished_at=run.finished_at or now,
                error=f"blocked by check {names}",
                output=dict(run.output),
            )
        )
    return changes


async def get_gate(store: Store, run_id: str) -> CheckGate | None:
    found = await store.list_gates(run_id=run_id, limit=1)
    return found[0] if found else None


async def act(
    store: Store, run_id: str, action: str, by: str, now: datetime, reason: str = ""
) -> CheckGate:
    """An operator's ``rerun`` (the checks run again: the gate is ``pending``) or
    ``override`` (the partition is announced without its checks), audited in the gate's
    ``actions`` and the log. Raises StoreError when there is no gate or the action does not
    apply to its status.

    The gate is read and written in one transaction that holds it: a checker recording its
    result meanwhile (another process, another worker) waits, then sees the action."""
    async with store.transaction() as tx:
        gate = await tx.get_gate(run_id)
        if gate is None:
            raise StoreError(
                f"run {run_id} produced no partition held by checks",
                hint="`eventflow checks list FILE` shows the gates",
            )
        if gate.status not in _CAN[action]:
            allowed = ", ".join(_CAN[action])
            raise StoreError(
                f"cannot {action} the checks of run {run_id}: its partition is {gate.status}",
                hint=f"{action} applies to a partition that is {allowed}",
            )
        entry: dict[str, JSON] = {"action": action, "by": by, "at": now.isoformat()}
        if reason:
            entry["reason"] = reason
        status: GateStatus = "pending" if action == "rerun" else "overridden"
        new = replace(gate, status=status, actions=(*gate.actions, entry), updated_at=now)
        changes = Changes(gates=[new])
        if action == "override":
            changes.inbox_add.append(announcement(new, now))
        await tx.apply(changes)
    log = get_logger(component="checks")
    log.warning(
        "checks_rerun_requested" if action == "rerun" else "checks_overridden",
        run_id=run_id,
        rule=gate.rule,
        dataset=gate.dataset,
        partition=dict(gate.partition),
        by=by,
        reason=reason or None,
        was=gate.status,
    )
    return new
