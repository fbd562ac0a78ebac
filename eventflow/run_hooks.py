"""Rule hooks: ``on_failure:`` (after a run's last attempt failed) and ``on_missed:`` (a
partition's ``expect_by`` deadline passed), each a task of any type.

A hook is a run of the pseudo-rule ``RULE:on_failure`` / ``RULE:on_missed``, created in the
same transaction as the final failure (the dispatcher's result) or the deadline's fire (the
engine's batch): durable like every run, exactly once by its deterministic run id, retried by
its own ``retries``, and never touching the run it reports on. What it reports travels in the
hook run's ``notes`` (``hook``) and reaches the task as template variables and, for a
command, as ``EVENTFLOW_VAR_<NAME>`` (:data:`FAILURE_VARIABLES`, :data:`MISSED_VARIABLES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Literal

from eventflow.events import JSON
from eventflow.pipeline import CompiledPipeline, RuleRuntime
from eventflow.records import NewRun, RunNote, RunRecord
from eventflow.rules.core import DeadlineMissed, run_id_for

HookKind = Literal["on_failure", "on_missed"]
HOOKS: tuple[HookKind, ...] = ("on_failure", "on_missed")

FAILURE_VARIABLES = ("failed_rule", "failed_run_id", "failed_attempt", "error", "log_tail")
"""What an ``on_failure`` task gets besides the partition and the run variables."""
MISSED_VARIABLES = ("missed_rule", "deadline", "missing", "arrived", "fired_late")
"""What an ``on_missed`` task gets: ``missing`` and ``arrived`` name datasets, comma-separated;
``fired_late`` is ``true`` when the partition fired after its deadline."""
VARIABLES: Mapping[HookKind, tuple[str, ...]] = {
    "on_failure": FAILURE_VARIABLES,
    "on_missed": MISSED_VARIABLES,
}
LOG_TAIL_BYTES = 4096
"""How much of the end of the failed attempt's output ``log_tail`` holds."""
ERROR_CHARS = 4096


def hook_name(rule: str, kind: HookKind) -> str:
    """The pseudo-rule whose runs are ``rule``'s hook of ``kind`` (``:`` is not allowed in
    rule names, so it cannot clash)."""
    return f"{rule}:{kind}"


def failure_hook(
    pipeline: CompiledPipeline, run: RunRecord, error: str, now: datetime
) -> tuple[NewRun, RunNote] | None:
    """The ``on_failure`` run for ``run``'s failed last attempt, or None without a hook.

    One per failed attempt number: ``eventflow retry`` of a failed run that fails again
    reports again."""
    # A run made before its rule was renamed has the hook of the rule's name now.
    hook = pipeline.rules.get(hook_name(pipeline.current_name(run.rule), "on_failure"))
    if hook is None:
        return None
    new = NewRun(
        run_id=run_id_for(hook.name, run.run_id, run.attempt),
        rule=hook.name,
        key=run.key,
        partition=dict(run.partition),
        generation=run.generation,
        inputs=run.inputs,
        max_attempts=hook.max_attempts,
        created_at=now,
        pipeline_version=pipeline.version.rule(hook.name),
    )
    facts: dict[str, JSON] = {
        "failed_rule": run.rule,
        "failed_run_id": run.run_id,
        "failed_attempt": str(run.attempt),
        "error": error[:ERROR_CHARS],
        "log_tail": log_tail(pipeline.runs_dir / run.run_id, run.attempt),
    }
    return new, RunNote(new.run_id, {"hook": facts})


def missed_hook(
    pipeline: CompiledPipeline, effect: DeadlineMissed, now: datetime
) -> tuple[NewRun, RunNote] | None:
    """The ``on_missed`` run for a partition whose deadline passed, or None without a hook."""
    hook = pipeline.rules.get(hook_name(effect.rule, "on_missed"))
    if hook is None:
        return None
    new = deadline_run(hook, effect, now, pipeline.version.rule(hook.name))
    facts: dict[str, JSON] = {
        "missed_rule": effect.rule,
        "deadline": effect.deadline.isoformat(),
        "missing": ",".join(effect.missing),
        "arrived": ",".join(dict.fromkeys(r.dataset for r in effect.arrived)),
        "fired_late": "true" if effect.fired_late else "false",
    }
    return new, RunNote(new.run_id, {"hook": facts})


def deadline_run(
    hook: RuleRuntime, effect: DeadlineMissed, now: datetime, pipeline_version: str = ""
) -> NewRun:
    """The one run of ``hook`` (``on_missed``, ``on_deadline: {run: ...}``) for a partition
    whose deadline passed, with what arrived as its inputs and the version of its rule."""
    return NewRun(
        run_id=run_id_for(hook.name, effect.key, 1),
        rule=hook.name,
        key=effect.key,
        partition=dict(effect.partition),
        generation=1,
        inputs=effect.arrived,
        max_attempts=hook.max_attempts,
        created_at=now,
        pipeline_version=pipeline_version,
    )


def hook_params(notes: Mapping[str, JSON]) -> dict[str, str]:
    """The variables a hook run's task gets (empty for other runs)."""
    facts = notes.get("hook")
    if not isinstance(facts, Mapping):
        return {}
    return {str(k): str(v) for k, v in facts.items()}


def log_tail(folder: Path, attempt: int, limit: int = LOG_TAIL_BYTES) -> str:
    """The end of an attempt's captured stderr, else its stdout ("" when neither has any)."""
    for stream in ("stderr", "stdout"):
        path = folder / f"attempt-{attempt}.{stream}"
        try:
            with path.open("rb") as f:
                size = f.seek(0, 2)
                f.seek(max(0, size - limit))
                data = f.read()
        except OSError:
            continue
        if data.strip():
            return data.decode("utf-8", "replace")
    return ""
