"""Collecting the problems of one pipeline file, each placed at its line.

Every stage of loading (YAML, environment interpolation, pydantic, plugins, cross-section
checks) reports into one :class:`Problems`, so a user sees everything wrong with the file
at once, sorted by line. The collector also keeps the values that came from environment
variables and masks them in every message: secrets reach the config that way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from eventflow.errors import ConfigError, ConfigProblem

ConfigPath = tuple[str | int, ...]
"""Where a value sits in the file: mapping keys and list indexes, e.g. ``("rules", "r", "run")``."""

_MIN_BARE_SECRET = 4
"""Values shorter than this are masked only where quoted, so that short values such as
``3`` do not garble unrelated words of a message."""


class Problems:
    """The problems found in one file, and the line of every key and list item in it."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[ConfigPath, int] = {}
        self.columns: dict[ConfigPath, int] = {}
        """The column of each path in :attr:`lines`, to order problems on one line."""
        self._items: list[tuple[int, ConfigProblem]] = []
        self._muted: set[ConfigPath] = set()
        self._secrets: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def line_of(self, path: ConfigPath) -> int | None:
        """The line of ``path``, else of its closest parent that has one."""
        return self.lines.get(self._known(path))

    def _known(self, path: ConfigPath) -> ConfigPath:
        """``path`` or its closest parent that has a line."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return path[:end]
        return ()

    def add(
        self,
        message: str,
        path: ConfigPath = (),
        *,
        hint: str | None = None,
        line: int | None = None,
    ) -> None:
        """Record a problem at ``path`` (its line is looked up unless given)."""
        if any(path[: len(m)] == m for m in self._muted):
            return
        known = self._known(path)
        if line is None:
            line = self.lines.get(known)
            column = self.columns.get(known, 0)
        else:
            column = self.columns.get(known, 0) if self.lines.get(known) == line else 0
        problem = ConfigProblem(message, file=self.file, line=line, path=path, hint=hint)
        self._items.append((column, problem))

    def mute(self, path: ConfigPath) -> None:
        """Drop later problems at or under ``path``: it is already reported (an unset variable)."""
        self._muted.add(path)

    def hide(self, value: str, shown: str) -> None:
        """Never print ``value`` (an environment variable's); print ``shown`` instead."""
        if value:
            self._secrets[value] = shown

    def hidden(self) -> dict[str, str]:
        """Each value that came from an environment variable, with its reference."""
        return dict(self._secrets)

    def result(self) -> list[ConfigProblem]:
        """The problems in line order (then column, then as found), deduplicated, masked."""
        seen: set[str] = set()
        out: list[tuple[int, int, ConfigProblem]] = []
        for column, item in self._items:
            p = ConfigProblem(
                self._mask(item.message),
                file=item.file,
                line=item.line,
                path=item.path,
                hint=self._mask(item.hint) if item.hint is not None else None,
            )
            text = str(p)
            if text not in seen:
                seen.add(text)
                out.append((p.line or 0, column, p))
        # sorted() is stable: problems at one place keep the order they were found in.
        return [p for _, _, p in sorted(out, key=lambda t: t[:2])]

    def error(self) -> ConfigError:
        return ConfigError(self.result())

    def _mask(self, text: str) -> str:
        for value in sorted(self._secrets, key=len, reverse=True):
            shown = self._secrets[value]
            for quote in ("'", '"', "`"):
                text = text.replace(f"{quote}{value}{quote}", f"{quote}{shown}{quote}")
            if len(value) >= _MIN_BARE_SECRET:
                text = text.replace(value, shown)
        return text


def did_you_mean(word: str, choices: Iterable[str], what: str = "keys") -> str:
    """A hint naming the closest choice, or listing them all when none is close."""
    names = sorted({c for c in choices if isinstance(c, str)})
    close = difflib.get_close_matches(word, names, n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    if not names:
        return f"there are no {what}"
    return f"known {what}: {', '.join(names)}"


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The closest choice to ``word``, if any is close enough."""
    close = difflib.get_close_matches(word, sorted(set(choices)), n=1)
    return close[0] if close else None
