"""The pure rules core: ``(state, input, now) -> (state', effects)``, no I/O, no clock."""

from eventflow.rules.core import (
    CancelTimer,
    Effect,
    Expired,
    Fire,
    Ignored,
    MatchState,
    RuleSpec,
    ScheduleTimer,
    Step,
    on_expiry,
    on_input,
    run_id_for,
)

__all__ = [
    "CancelTimer",
    "Effect",
    "Expired",
    "Fire",
    "Ignored",
    "MatchState",
    "RuleSpec",
    "ScheduleTimer",
    "Step",
    "on_expiry",
    "on_input",
    "run_id_for",
]
