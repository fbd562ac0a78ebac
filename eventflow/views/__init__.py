"""What eventflow shows of a pipeline's state, built in one place.

The CLI (``status``, ``why``, ``runs``, ``deadletters``), the JSON API (``/api/...``) and the
status page (``/``) all read the store through these modules and render what they return:
frozen dataclasses whose ``to_dict()`` is *the* JSON shape (``--json`` prints it, the API
answers it) and whose fields the CLI tables and the page's HTML are drawn from.

- :mod:`~eventflow.views.rules`: each rule, its condition, options and matches by status;
- :mod:`~eventflow.views.matches`: open, missed and expired partial matches;
- :mod:`~eventflow.views.runs`: runs, one run with its captured logs;
- :mod:`~eventflow.views.deadletters`: observations that could not be processed;
- :mod:`~eventflow.views.sensors`: sensor health, from a running runtime;
- :mod:`~eventflow.views.status`: all of the above that ``eventflow status`` shows;
- :mod:`~eventflow.views.why`: one partition of one rule, input by input.

The lineage graph is :mod:`eventflow.graph`. Nothing here imports a web framework or a store
driver.
"""

from __future__ import annotations

from datetime import datetime

from eventflow.errors import EventflowError


class NotFound(EventflowError):
    """A view names a rule or a run the pipeline or the store does not have."""


def iso(when: datetime | None) -> str | None:
    """ISO-8601 text of a time, None for None: how every view writes times."""
    return when.isoformat() if when is not None else None
