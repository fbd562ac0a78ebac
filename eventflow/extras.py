"""The optional extras of the distribution, and the one-line refusal when one is missing.

Features behind an extra (the HTTP server, the Kafka, S3 and MQTT plugins, the PostgreSQL
store, OpenLineage) import their libraries only when used. Where the CLI knows in advance
that it will need one (``eventflow run --http``), it calls :func:`require` first, so a core
install answers with the extra to install instead of a ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib.util

from eventflow.errors import EventflowError

DISTRIBUTION = "eventflow-orchestrator"
"""The name on the package index (``eventflow`` there is an unrelated project)."""

EXTRAS: dict[str, tuple[str, ...]] = {
    "http": ("starlette", "uvicorn"),
    "kafka": ("aiokafka",),
    "s3": ("boto3",),
    "mqtt": ("aiomqtt",),
    "postgres": ("psycopg",),
    "openlineage": ("openlineage",),
}
"""Each extra and the top-level modules it brings."""


class MissingExtraError(EventflowError):
    """A feature was asked for whose optional libraries are not installed."""


def install_line(extra: str) -> str:
    """The command that installs ``extra``: ``pip install 'eventflow-orchestrator[http]'``."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def require(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` naming the extra when ``feature`` cannot work here."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(
            f"{feature} needs the {extra!r} extra ({', '.join(absent)} not installed)",
            hint=install_line(extra),
        )
