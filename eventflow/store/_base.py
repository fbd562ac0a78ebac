"""The lifecycle both built-in stores share: open once, close idempotently, one writer at a time.

A store is ``new`` until :meth:`open`, then ``open``, then ``closed`` for good (it cannot be
reopened; make a new one). Every operation, and every transaction from entry to commit,
holds one :class:`asyncio.Lock`, so operations of one store never interleave. A task that
calls a store method inside its own open transaction gets a StoreError instead of a
deadlock.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from eventflow.errors import ClosedError, NotOpenError, StoreError
from eventflow.lifecycle import Resource


class StoreLifecycle(Resource):
    """Open/closed state and the operation lock; subclasses implement ``_open``/``_close``."""

    def __init__(self) -> None:
        self._state: Literal["new", "open", "closed"] = "new"
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[object] | None = None
        self._claimant = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """Who this store's ``claim_gates`` claims for (PostgreSQL: the worker id, once
        registered)."""

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def open(self) -> None:
        """Open the store (a second call does nothing); a closed store cannot be reopened."""
        if self._state == "open":
            return
        self._raise_if_closed()
        await self._open()
        self._state = "open"

    async def close(self) -> None:
        """Wait for the running operation or transaction, then release everything.

        Idempotent: closing a closed (or never opened) store does nothing.
        """
        if self._state != "open":
            self._state = "closed"
            return
        if self._owner is not None and self._owner is asyncio.current_task():
            raise StoreError(
                f"{self!r} cannot be closed inside its own transaction",
                hint="close it after `async with store.transaction()` has exited",
            )
        async with self._lock:
            if self._state != "open":
                return
            self._state = "closed"
            await self._close()

    @asynccontextmanager
    async def lease(self, name: str) -> AsyncIterator[asyncio.Event]:
        """Every lease at once, never lost: this store serves one worker (``lock_worker``)."""
        self._check_open()
        yield asyncio.Event()

    def _raise_if_closed(self) -> None:
        if self._state == "closed":
            raise ClosedError(f"{self!r} is closed", hint="open a new store")

    def _check_open(self) -> None:
        self._raise_if_closed()
        if self._state != "open":
            raise NotOpenError(
                f"{self!r} is not open", hint="use `async with store:` or `await store.open()`"
            )

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """Hold the store for one operation or transaction."""
        self._check_open()
        task = asyncio.current_task()
        if task is not None and task is self._owner:
            raise StoreError(
                f"{self!r} was used by the task that holds its open transaction",
                hint="use the Transaction object inside `async with store.transaction()`",
            )
        async with self._lock:
            self._check_open()
            self._owner = task
            try:
                yield
            finally:
                self._owner = None
