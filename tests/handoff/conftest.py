"""Hand-off tests drive the real CLI like the acceptance tests: none leaves a process behind."""

from tests.acceptance.conftest import _kill_leftover_processes

__all__ = ["_kill_leftover_processes"]
