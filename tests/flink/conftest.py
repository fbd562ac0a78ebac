"""The Flink tier kills the eventflow processes it started, as the acceptance tier does, and
shares one session cluster (``flink_session``, see ``session_cluster.py``) across the
session's tests."""

from tests.acceptance.conftest import _kill_leftover_processes
from tests.flink.session_cluster import flink_session

__all__ = ["_kill_leftover_processes", "flink_session"]
