"""Hand-off tests drive ``eventflow run`` like the acceptance tests, and like them leave no
eventflow process behind (the same autouse fixture)."""

from __future__ import annotations

from tests.acceptance.conftest import _kill_leftover_processes

__all__ = ["_kill_leftover_processes"]
