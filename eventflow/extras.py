"""The optional extras of the distribution, and the one-line refusal when one is missing.

Features behind an extra (the HTTP server, the Kafka, S3 and MQTT plugins, the PostgreSQL
store, OpenLineage) import their libraries only when used. Where the CLI knows in advance
that it will need one (``eventflow run --http``, a plugin whose entry point names its extra),
it calls :func:`require` first, so a core install answers with the extra to install instead
of a ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib.util
import site
import sysconfig
from pathlib import Path

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
    "duckdb": ("duckdb",),
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


def shadowed(extra: str) -> dict[str, str]:
    """The modules of ``extra`` that would be imported from a file outside the installed
    packages (a user's ``boto3.py`` beside the pipeline), by module, with that file."""
    found = {}
    for module in EXTRAS[extra]:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin is not None and not installed(spec.origin):
            found[module] = spec.origin
    return found


def require(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` naming the extra when ``feature`` cannot work here:
    a library of ``extra`` is not installed, or a file of the user's shadows it."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(
            f"{feature} needs {_and(absent)}, which {'is' if len(absent) == 1 else 'are'}"
            " not installed",
            hint=install_line(extra),
        )
    shadows = shadowed(extra)
    if shadows:
        module, file = next(iter(shadows.items()))
        raise MissingExtraError(
            f"{feature} needs {module}, but `{module}` is {file}, not the installed package",
            hint=rename_hint(file),
        )


def rename_hint(file: str) -> str:
    """The fix for a user's ``file`` that shadows an installed package."""
    return f"rename {file}: a module of your own must not have the name of an installed package"


def installed(file: str) -> bool:
    """Whether ``file`` is inside the standard library or a site-packages directory (and so
    is not a module of the user's that happens to have a package's name)."""
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.update(site.getsitepackages())
    roots.add(site.getusersitepackages())
    resolved = Path(file).resolve()
    return any(resolved.is_relative_to(Path(root).resolve()) for root in roots if root)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
