"""Plugins by name: sensors, publishers and task runners by ``type``, stores by DSN scheme.

Plugins are found through the entry-point groups ``eventflow.sensors``,
``eventflow.publishers``, ``eventflow.tasks``, ``eventflow.stores`` and ``eventflow.senders``
(the transports of the ``publish`` task); a third-party
package adds one by declaring an entry point, without touching eventflow. Tests may
``register`` a plugin directly.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from eventflow.errors import EventflowError

T = TypeVar("T")

GROUPS = {
    "sensor": "eventflow.sensors",
    "publisher": "eventflow.publishers",
    "task": "eventflow.tasks",
    "store": "eventflow.stores",
    "sender": "eventflow.senders",
}


class Registry(Generic[T]):
    """Plugins of one kind, loaded lazily from entry points and cached."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.group = GROUPS[kind]
        self._loaded: dict[str, Any] = {}
        self._extra: dict[str, Any] = {}

    def names(self) -> list[str]:
        found = {ep.name for ep in entry_points(group=self.group)}
        return sorted(found | set(self._extra))

    def get(self, name: str) -> Any:
        if name in self._extra:
            return self._extra[name]
        if name not in self._loaded:
            eps = [ep for ep in entry_points(group=self.group) if ep.name == name]
            if not eps:
                raise EventflowError(
                    f"no {self.kind} plugin named {name!r}",
                    hint=f"known: {', '.join(self.names()) or 'none'}; is its package installed?",
                )
            try:
                self._loaded[name] = eps[0].load()
            except ImportError as exc:
                raise EventflowError(
                    f"the {self.kind} plugin {name!r} could not be imported: {exc}",
                    hint="install the extra it needs, e.g. pip install 'eventflow[kafka]'",
                ) from exc
        return self._loaded[name]

    def register(self, name: str, plugin: Any) -> None:
        self._extra[name] = plugin


sensors: Registry[Any] = Registry("sensor")
publishers: Registry[Any] = Registry("publisher")
tasks: Registry[Any] = Registry("task")
stores: Registry[Any] = Registry("store")
senders: Registry[Any] = Registry("sender")
