"""What the store keeps about pipeline versions: who the store belongs to, and each start.

A store is created for one environment (:class:`StoreIdentity`, a random id made once) and
records every start of ``eventflow run`` (:class:`VersionStart`) with the compiled
definition it ran, so that ``eventflow plan`` can compare a file with what last ran and
``eventflow versions`` can say when each version ran, on which worker, and what changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from eventflow.events import JSON


@dataclass(frozen=True, slots=True)
class StoreIdentity:
    """The store's owner: made when the store is first started, never changed."""

    store_id: str
    environment: str
    pipeline: str
    created_at: datetime

    @property
    def short_id(self) -> str:
        return self.store_id[:8]

    def to_dict(self) -> dict[str, JSON]:
        return {
            "store_id": self.store_id,
            "environment": self.environment,
            "pipeline": self.pipeline,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class VersionStart:
    """One start of a pipeline version on a store."""

    version: str
    """The pipeline version (:func:`eventflow.versions.pipeline_version`)."""
    pipeline: str
    environment: str
    worker: str
    """``host:pid`` of the process that started."""
    started_at: datetime
    rules: Mapping[str, str]
    """The version of each rule (what runs and events carry)."""
    definition: Mapping[str, JSON]
    """The canonical compiled definition (secrets as their ``${NAME}`` reference)."""
    git_commit: str | None = None
    git_dirty: bool | None = None
    accepted: tuple[Mapping[str, JSON], ...] = ()
    """The plan lines this start was allowed to apply (``--accept``, declarations)."""
    seq: int | None = None
    """Set by the store: the order of starts."""

    def to_dict(self, *, definition: bool = False) -> dict[str, JSON]:
        out: dict[str, JSON] = {
            "seq": self.seq,
            "version": self.version,
            "pipeline": self.pipeline,
            "environment": self.environment,
            "worker": self.worker,
            "started_at": self.started_at.isoformat(),
            "git_commit": self.git_commit,
            "git_dirty": self.git_dirty,
            "rules": dict(self.rules),
            "accepted": [dict(a) for a in self.accepted],
        }
        if definition:
            out["definition"] = dict(self.definition)
        return out
