"""Key patterns (``orders/dt={dt}/part-{n}.csv``) and argument templates (``--date={dt}``).

A pattern's ``{var}`` matches one run of characters without ``/`` and names a partition
variable. A template's ``{var}`` is replaced by a value; braces that do not enclose a plain
identifier (JSON such as ``{"a": {"dt": "{dt}"}}``) are left alone, and ``{{var}}`` is the
literal text ``{var}``.

A template's ``{var!conv}`` applies a conversion to the value first. The one conversion is
``sh``: the value quoted for a POSIX shell (:func:`shlex.quote`), so that it stays one word
of a ``sh -c`` script whatever it holds. Every template (command, ``cwd``, ``env``, HTTP URL,
headers and body, published topics and keys, deadline expressions) understands it alike;
``eventflow validate`` refuses any other conversion, and :func:`render` leaves one it does
not know as written (like an unknown name).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from functools import cached_property

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TEMPLATE_TOKEN = re.compile(
    r"\{\{([A-Za-z_][A-Za-z0-9_]*(?:![A-Za-z_][A-Za-z0-9_]*)?)\}\}"
    r"|\{([A-Za-z_][A-Za-z0-9_]*)(?:!([A-Za-z_][A-Za-z0-9_]*))?\}"
)

CONVERSIONS: dict[str, Callable[[str], str]] = {"sh": shlex.quote}
"""What ``{var!NAME}`` applies to the value: ``sh`` quotes it as one POSIX shell word."""


class KeyPattern:
    """A dataset ``key`` pattern compiled to a regular expression with named groups."""

    __slots__ = ("__dict__", "regex", "text", "variables")

    def __init__(self, text: str) -> None:
        self.text = text
        variables: list[str] = []
        out: list[str] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(text):
            out.append(_literal(text[pos : m.start()]))
            name = m.group(1)
            if name in variables:
                out.append(f"(?P={name})")
            else:
                variables.append(name)
                out.append(f"(?P<{name}>[^/]+?)")
            pos = m.end()
        out.append(_literal(text[pos:]))
        self.variables: tuple[str, ...] = tuple(variables)
        self.regex = re.compile("^" + "".join(out) + "$")

    def match(self, key: str) -> dict[str, str] | None:
        """The partition variables if ``key`` matches the whole pattern, else None."""
        m = self.regex.match(key)
        return m.groupdict() if m else None

    @cached_property
    def literal_prefix(self) -> str:
        """The text before the first placeholder or glob: where a listing can start."""
        cut = len(self.text)
        for ch in "{*?[":
            i = self.text.find(ch)
            if i >= 0:
                cut = min(cut, i)
        return self.text[:cut]

    def __repr__(self) -> str:
        return f"KeyPattern({self.text!r})"


def _literal(text: str) -> str:
    """Escape a literal stretch of a pattern, keeping ``*`` and ``?`` as globs within a segment."""
    if not text:
        return ""
    parts = []
    for ch in text:
        if ch == "*":
            parts.append("[^/]*")
        elif ch == "?":
            parts.append("[^/]")
        else:
            parts.append(re.escape(ch))
    return "".join(parts)


def placeholders(template: str) -> list[str]:
    """The ``{var}`` names a template uses, in order, without ``{{var}}`` escapes."""
    return [m.group(2) for m in _TEMPLATE_TOKEN.finditer(template) if m.group(2)]


def template_fields(template: str) -> list[tuple[str, str | None]]:
    """``(name, conversion)`` of every placeholder, in order: ``{n!sh}`` is ``("n", "sh")``."""
    return [(m.group(2), m.group(3)) for m in _TEMPLATE_TOKEN.finditer(template) if m.group(2)]


def render(
    template: str,
    values: Mapping[str, object],
    encode: Callable[[str], str] | None = None,
) -> str:
    """Replace ``{var}`` by ``values[var]``; unknown names, unknown conversions and other
    braces stay as written. ``encode`` is applied to every substituted value, after its
    conversion (the HTTP task percent-encodes URL values with it)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "{" + m.group(1) + "}"
        name, conversion = m.group(2), m.group(3)
        if name not in values:
            return m.group(0)
        text = str(values[name])
        if conversion is not None:
            convert = CONVERSIONS.get(conversion)
            if convert is None:
                return m.group(0)
            text = convert(text)
        return encode(text) if encode is not None else text

    return _TEMPLATE_TOKEN.sub(sub, template)


def render_deep(
    value: object, values: Mapping[str, object], encode: Callable[[str], str] | None = None
) -> object:
    """``render`` applied to every string inside lists and mappings (HTTP bodies, argv)."""
    if isinstance(value, str):
        return render(value, values, encode)
    if isinstance(value, list):
        return [render_deep(v, values, encode) for v in value]
    if isinstance(value, dict):
        return {k: render_deep(v, values, encode) for k, v in value.items()}
    return value


def glob_match(name: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """True if ``name`` (a relative path with ``/``) matches any glob; ``**`` spans directories."""
    return any(_glob_regex(p).match(name) for p in patterns)


_GLOB_CACHE: dict[str, re.Pattern[str]] = {}


def _glob_regex(pattern: str) -> re.Pattern[str]:
    cached = _GLOB_CACHE.get(pattern)
    if cached is None:
        out = [] if "/" in pattern else ["(?:.*/)?"]  # a bare "*.csv" matches at any depth
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 3
            elif pattern.startswith("**", i):
                out.append(".*")
                i += 2
            elif pattern[i] == "*":
                out.append("[^/]*")
                i += 1
            elif pattern[i] == "?":
                out.append("[^/]")
                i += 1
            else:
                out.append(re.escape(pattern[i]))
                i += 1
        cached = re.compile("^" + "".join(out) + "$", re.S)
        _GLOB_CACHE[pattern] = cached
    return cached
