"""eventflow: an event-driven data-availability orchestrator.

Run a job when its inputs have actually arrived: sensors watch where data lands, rules join
what arrives on partition keys, tasks run exactly once per fire, and every state change is
checkpointed so a crash loses and duplicates nothing.
"""

from __future__ import annotations

__version__ = "0.1.0"
