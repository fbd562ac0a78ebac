"""One lifecycle for everything that opens something: ``async with`` opens, exit closes.

Publishers, senders, task runners and state stores are :class:`Resource` objects: ``open``
connects (or does nothing, for what connects lazily), ``close`` releases and is idempotent,
and ``async with`` does both, closing again when ``open`` fails half-way, so a failed start
leaves nothing open. The runtime opens its resources with :func:`open_all` on an
:class:`~contextlib.AsyncExitStack`: a resource that fails to open is reported by name in one
line, everything opened before it is closed, and an error while closing is logged
(``close_failed``) instead of hiding the error that caused the shutdown.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Self

from eventflow.errors import EventflowError
from eventflow.log import get_logger


class Resource:
    """Base of everything that holds a connection, a file or a process pool.

    Subclasses override ``open`` (default: nothing to open) and ``close`` (default: nothing to
    release); ``close`` must be idempotent, and using a closed resource should raise
    :class:`~eventflow.errors.ClosedError` saying so.
    """

    async def open(self) -> None:
        """Connect; a resource that connects at first use has nothing to do here."""

    async def close(self) -> None:
        """Release what ``open`` (or use) acquired; a second call does nothing."""

    async def __aenter__(self) -> Self:
        try:
            await self.open()
        except BaseException:
            await close_logged(self, type(self).__name__)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def close_logged(resource: Any, component: str) -> None:
    """``resource.close()``; an error is logged as ``close_failed``, not raised."""
    close = getattr(resource, "close", None)
    if close is None:
        return
    try:
        await close()
    except Exception as exc:
        get_logger().warning(
            "close_failed", component=component, error=str(exc), error_type=type(exc).__name__
        )


async def open_all(stack: contextlib.AsyncExitStack, kind: str, items: Mapping[str, Any]) -> None:
    """Open each of ``items`` (``name -> resource``) and push its close onto ``stack``.

    A resource that fails to open raises :class:`EventflowError` naming it (``publisher
    'lake' could not start: ...``); the stack then closes what was opened before it.
    """
    for name, resource in items.items():
        component = f"{kind}:{name}"
        stack.push_async_callback(close_logged, resource, component)
        open_ = getattr(resource, "open", None)
        if open_ is None:
            continue
        try:
            await open_()
        except EventflowError as exc:
            raise EventflowError(
                f"{kind} {name!r} could not start: {exc.message}", hint=exc.hint
            ) from exc
        except Exception as exc:
            raise EventflowError(
                f"{kind} {name!r} could not start: {type(exc).__name__}: {exc}"
            ) from exc
