"""eventflow: an event-driven data-availability orchestrator.

Run a job when its inputs have actually arrived: sensors watch where data lands, rules join
what arrives on partition keys, tasks run exactly once per fire, and every state change is
checkpointed so a crash loses and duplicates nothing.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventflow.api import Pipeline, dataset, publisher, rule, sensor
    from eventflow.types import RunContext

__all__ = ["Pipeline", "RunContext", "__version__", "dataset", "publisher", "rule", "sensor"]


def __getattr__(name: str) -> Any:
    """The Python API (:mod:`eventflow.api`), imported on first use: ``import eventflow``
    stays light for the CLI and plugins."""
    if name in __all__ and name != "__version__":
        from eventflow import api

        return getattr(api, name)
    raise AttributeError(f"module 'eventflow' has no attribute {name!r}")
