"""Plugins by name: sensors, publishers and task runners by ``type``, stores by DSN scheme.

Plugins are found through the entry-point groups ``eventflow.sensors``,
``eventflow.publishers``, ``eventflow.tasks``, ``eventflow.stores`` and ``eventflow.senders``
(the transports of the ``publish`` task); a third-party
package adds one by declaring an entry point, without touching eventflow. Tests may
``register`` a plugin directly.

A plugin that cannot be loaded is explained (:func:`import_failure`), never shown as a bare
``ImportError``: a library that is not installed names the extra that brings it (the
entry point's ``[extra]``, installed from the distribution that declares it), and a module
of the user's own that stands where a package is expected (a ``sensors.py`` beside the
pipeline) is named by its file. eventflow's own plugins import their libraries lazily, so
before loading one whose entry point names an extra, :meth:`Registry.get` checks that the
extra's libraries are there.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from eventflow import extras
from eventflow.errors import EventflowError

T = TypeVar("T")

GROUPS = {
    "sensor": "eventflow.sensors",
    "publisher": "eventflow.publishers",
    "task": "eventflow.tasks",
    "store": "eventflow.stores",
    "sender": "eventflow.senders",
}


class PluginError(EventflowError):
    """A plugin could not be loaded: its library is missing, a module shadows it, or its
    module failed to import."""


class UnknownPluginError(PluginError):
    """No installed plugin has the name asked for."""


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
                raise UnknownPluginError(
                    f"no {self.kind} plugin named {name!r}",
                    hint=f"known: {', '.join(self.names()) or 'none'}; is its package installed?",
                )
            ep = eps[0]
            require_extras(ep, self.kind)
            try:
                self._loaded[name] = ep.load()
            except Exception as exc:
                raise import_failure(ep, self.kind, exc) from exc
        return self._loaded[name]

    def register(self, name: str, plugin: Any) -> None:
        self._extra[name] = plugin


def require_extras(ep: EntryPoint, kind: str) -> None:
    """Raise :class:`~eventflow.extras.MissingExtraError` when ``ep`` is one of eventflow's
    own plugins and a library of the extra its entry point names is not installed (or a
    file of the user's stands in its place).

    (eventflow's plugins import their libraries when first used, so loading the entry point
    alone would succeed and the run would fail later.) A third-party plugin's missing
    library is explained when its import fails, by :func:`import_failure`."""
    if ep.dist is None or _canonical(ep.dist.name) != extras.DISTRIBUTION:
        return
    for extra in ep.extras:
        if extra in extras.EXTRAS:
            extras.require(extra, _plugin(ep, kind))


def import_failure(ep: EntryPoint, kind: str, exc: Exception) -> EventflowError:
    """What went wrong when loading ``ep`` raised ``exc``, in words a user can act on.

    - a library that is not installed: the extra to install (from the entry point, or
      eventflow's table of extras), from the distribution that declares the plugin;
    - a module that was found but is not the one expected (``'sensors' is not a package``,
      ``cannot import name``) and lives outside the installed packages: its file, to rename;
    - anything else: the error itself.
    """
    what = _plugin(ep, kind)
    dist = ep.dist.name if ep.dist is not None else None
    own = ep.module.partition(".")[0]  # the plugin's own package: never "a user's file"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.partition(".")[0]
        parent = _loaded_parent(exc.name)
        file = _module_file(parent) if parent is not None else None
        if parent is not None and file is not None:
            not_a_package = not hasattr(sys.modules[parent], "__path__")
            foreign = parent == top and top != own and not extras.installed(file)
            if not_a_package or foreign:
                return _shadowed(what, parent, file, exc)
        if exc.name == ep.module or ep.module.startswith(exc.name + "."):
            return PluginError(
                f"{what} names the module {ep.module!r}, which cannot be imported ({exc}"
                + (f"; `{parent}` is {file}" if file else "")
                + ")",
                hint=f"reinstall it: pip install --force-reinstall '{dist}'"
                if dist
                else "check the entry point's module path",
            )
        if parent is None and importlib.util.find_spec(top) is None:
            return extras.MissingExtraError(
                f"{what} needs {top}, which is not installed",
                hint=_install_hint(ep, top),
            )
    elif isinstance(exc, ImportError) and exc.name:
        file = exc.path or _module_file(exc.name)
        if file is not None and exc.name.partition(".")[0] != own and not extras.installed(file):
            return _shadowed(what, exc.name, file, exc)
    return PluginError(f"{what} could not be imported: {type(exc).__name__}: {exc}")


def _shadowed(what: str, module: str, file: str, exc: Exception) -> PluginError:
    return PluginError(
        f"{what} cannot be imported: `{module}` is {file}, not the installed package ({exc})",
        hint=extras.rename_hint(file),
    )


def _install_hint(ep: EntryPoint, module: str) -> str:
    """``pip install 'DIST[EXTRA]'`` for the extra that brings ``module``."""
    dist = ep.dist.name if ep.dist is not None else None
    named = list(ep.extras)
    if dist is None:
        return f"install the package that provides {module}"
    if not named and _canonical(dist) == extras.DISTRIBUTION:
        named = [extra for extra, mods in extras.EXTRAS.items() if module in mods]
    if named:
        return f"pip install '{dist}[{','.join(named)}]'"
    return f"pip install '{dist}' (which installs its dependencies)"


def _plugin(ep: EntryPoint, kind: str) -> str:
    return f"the {ep.name} {kind} plugin"


def _canonical(name: str) -> str:
    """A distribution name normalized as PEP 503 does (``Eventflow_Orchestrator`` →
    ``eventflow-orchestrator``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _loaded_parent(name: str) -> str | None:
    """The longest proper prefix of the dotted ``name`` that is already imported."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in sys.modules:
            return prefix
    return None


def _module_file(name: str) -> str | None:
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None)
    return file if isinstance(file, str) else None


sensors: Registry[Any] = Registry("sensor")
publishers: Registry[Any] = Registry("publisher")
tasks: Registry[Any] = Registry("task")
stores: Registry[Any] = Registry("store")
senders: Registry[Any] = Registry("sender")
