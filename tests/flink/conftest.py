"""The Flink tier kills the eventflow processes it started, as the acceptance tier does."""

from tests.acceptance.conftest import _kill_leftover_processes

__all__ = ["_kill_leftover_processes"]
