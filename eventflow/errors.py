"""The error hierarchy: one root, one subclass per area, a ``retriable`` flag for retry logic.

Library errors are translated at the module boundary and raised ``from`` the original, so a
user sees what went wrong in eventflow's words and a developer still gets the cause.
"""

from __future__ import annotations

from collections.abc import Mapping


class EventflowError(Exception):
    """Root of every error eventflow raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class ConfigError(EventflowError):
    """A pipeline file is malformed; carries every problem found, each with file and line."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConfigProblem:
    """One problem in a pipeline file: where it is, what is wrong and how to fix it."""

    __slots__ = ("file", "hint", "line", "message", "path")

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None,
        path: tuple[str | int, ...] = (),
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.path = path
        self.hint = hint

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        where = ".".join(str(p) for p in self.path)
        text = f"{self.location}: {where + ': ' if where else ''}{self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text

    def __repr__(self) -> str:
        return f"ConfigProblem({self!s})"


class SensorError(EventflowError):
    """A sensor cannot observe its source (unreachable broker, unreadable directory, ...)."""

    retriable = True


class StoreError(EventflowError):
    """The state store failed or holds something this version cannot read."""


class NotOpenError(StoreError):
    """A store was used before ``open()`` (for example by an HTTP request that arrives
    while the runtime starts)."""


class WorkerBusy(StoreError):
    """Another ``eventflow run`` holds the store's worker lock (one per SQLite file)."""


class StoreConflict(StoreError):
    """A commit was refused because another worker changed what it was computed from (a
    shared PostgreSQL store); nothing was written: read again and re-evaluate."""

    retriable = True


class StoreFull(StoreError):
    """The store's disk (or quota) is full: nothing of the transaction was written. The
    engine and the dispatcher wait for space and try again (:mod:`eventflow.diskspace`)."""

    retriable = True


class TaskError(EventflowError):
    """A task could not be started or failed in a way the runner can describe."""

    retriable = True


class PublishError(EventflowError):
    """A completion event could not be delivered; the outbox keeps it for the next attempt."""

    retriable = True


class PublishRejected(PublishError):
    """The receiver refused some events for good (a 4xx answer other than 408/429): raised
    after every other event of the batch was delivered; the outbox dead-letters the refused
    ones (``rejected``: event id -> why) instead of offering them again forever."""

    retriable = False

    def __init__(
        self, message: str, rejected: Mapping[str, str], *, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.rejected = dict(rejected)


class ClosedError(EventflowError):
    """An object was used after ``close()``."""
