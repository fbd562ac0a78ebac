"""The transactional state store, chosen by DSN scheme.

``sqlite:///state.db`` (relative to the pipeline's directory), ``sqlite:////abs/state.db``
and ``memory://`` are built in; a plugin adds a scheme through the ``eventflow.stores``
entry-point group. Every store implements :class:`eventflow.types.Store`.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast
from urllib.parse import urlsplit, urlunsplit

from eventflow import registry
from eventflow.errors import StoreError
from eventflow.types import Store

__all__ = ["COUNT_KEYS", "open_store", "scheme_of", "store_class"]

COUNT_KEYS = (
    "runs_pending",
    "runs_running",
    "runs_succeeded",
    "runs_failed",
    "runs_cancelled",
    "matches_open",
    "matches_fired",
    "matches_expired",
    "events",
    "outbox",
    "timers",
    "inbox",
    "deadletters",
)
"""The keys of :meth:`Store.counts`, in this order."""


def scheme_of(dsn: str) -> str:
    """The scheme of a store DSN (``sqlite`` for ``sqlite:///state.db``)."""
    scheme, sep, _ = dsn.partition("://")
    if not sep or not scheme:
        raise StoreError(
            f"state store DSN {redact_dsn(dsn)!r} has no scheme",
            hint="write e.g. sqlite:///.eventflow/state.db or memory://",
        )
    return scheme.lower()


def open_store(dsn: str, base_dir: Path) -> Store:
    """The store for ``dsn``, not yet opened: use it as ``async with open_store(...) as s``.

    Relative paths in the DSN are resolved against ``base_dir`` (the pipeline's directory).
    """
    return store_class(dsn).from_dsn(dsn, base_dir)


def store_class(dsn: str) -> type[Store]:
    """The store plugin for the scheme of ``dsn``, loaded (for ``validate`` and
    :func:`open_store`). A scheme no plugin serves raises :class:`StoreError`; a plugin whose
    extra is not installed (``postgresql://`` without psycopg) raises the registry's error,
    which names the extra."""
    scheme = scheme_of(dsn)
    try:
        return cast(type[Store], registry.stores.get(scheme))
    except registry.UnknownPluginError as exc:
        known = ", ".join(f"{name}://" for name in registry.stores.names()) or "none"
        raise StoreError(
            f"no state store for the DSN scheme {scheme!r} in {redact_dsn(dsn)!r}",
            hint=f"known schemes: {known}; a plugin adds one through the "
            "'eventflow.stores' entry-point group",
        ) from exc


def redact_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***``, for printing and logging."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
