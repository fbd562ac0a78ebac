"""Task runners: what a rule's ``run`` does for each attempt.

Each runner is a plugin registered under the ``eventflow.tasks`` entry-point group and keyed
by the one task key of ``run`` (``command``, ``python``, ``http``); the shared options
(``retries``, ``timeout``, ``backoff``, ``concurrency``) belong to the dispatcher. A runner's
``config_model`` validates ``{type: value}``; ``await runner.run(ctx)`` performs one attempt
and returns a :class:`~eventflow.types.TaskResult`; ``await runner.close()`` releases what
it holds.

- :mod:`eventflow.tasks.command`: a program in its own process group;
- :mod:`eventflow.tasks.python`: a function called in eventflow's process;
- :mod:`eventflow.tasks.http`: an HTTP request (a webhook, a REST API), or a job submitted to
  an asynchronous API and polled (:mod:`eventflow.tasks.http_api`).

This module holds the small pieces they share; it imports none of them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator

from eventflow.durations import format_duration


def _number_to_text(value: object) -> object:
    """YAML reads ``[sleep, 60]`` or ``{THREADS: 4}`` as numbers; take them as written."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_number_to_text)]
"""A string config value that also accepts a number (an argument, an env or header value)."""


def timeout_detail(seconds: float) -> str:
    """``"timed out after 2s"``: the detail of an attempt stopped at its timeout."""
    return f"timed out after {format_duration(timedelta(seconds=seconds))}"


__all__ = ["Text", "timeout_detail"]
