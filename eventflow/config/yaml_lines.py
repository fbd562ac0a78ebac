"""YAML to plain Python values, remembering the line of every key and list item.

PyYAML's loader forgets where values came from and silently keeps the last of two equal
keys. Here the file is composed into nodes (``yaml.compose`` with the safe loader) and the
values are built by hand: each mapping key and list item records its line under its path,
duplicate keys are reported, and a key YAML 1.1 reads as a boolean (``on:``, ``yes:``) is
reported instead of becoming ``True``.
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from eventflow.config.report import ConfigPath, Problems

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_NODES = 200_000
"""Values built from one file at most: aliases can otherwise expand exponentially."""

MAX_DEPTH = 64
"""Levels of nesting a file may have: a pipeline needs fewer than ten, and parsing (here,
and every later stage that walks the values) recurses once per level."""
MAX_INTEGER = 2**63 - 1
"""The largest whole number a file may hold: what the state store (SQLite, PostgreSQL
``bigint``) and the C libraries below eventflow can take."""

_MISSING = object()


class _TooLarge(Exception):
    pass


class _TooDeep(yaml.MarkedYAMLError):
    """A value nested deeper than :data:`MAX_DEPTH`, raised where it starts."""


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing to compose nodes deeper than :data:`MAX_DEPTH` (PyYAML's
    composer recurses per level and would hit Python's recursion limit)."""

    depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise _TooDeep(problem_mark=event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def parse_yaml(text: str, problems: Problems) -> dict[str, Any] | None:
    """The top-level mapping of ``text``, or None after reporting why there is none.

    Problems inside a well-formed document (duplicate keys, boolean keys) are reported and
    the mapping is still returned, so that later checks can report theirs too.
    """
    try:
        root = yaml.compose(text, Loader=_Loader)
    except _TooDeep as exc:
        problems.add(
            f"values are nested more than {MAX_DEPTH} levels deep here",
            line=_line(exc.problem_mark),
            hint="a pipeline needs a few levels: close the brackets or indent less",
        )
        return None
    except yaml.MarkedYAMLError as exc:
        message, hint = _syntax_message(exc)
        problems.add(message, hint=hint, line=_line(exc.problem_mark or exc.context_mark))
        return None
    except yaml.YAMLError as exc:  # a ReaderError: a character YAML does not allow
        problems.add(f"the file is not valid YAML: {exc}")
        return None
    if root is None:
        problems.add(
            "the file is empty",
            hint="declare at least `sensors:`, `datasets:` and `rules:`",
        )
        return None
    problems.lines[()] = root.start_mark.line + 1
    if not isinstance(root, MappingNode):
        kind = "a list" if isinstance(root, SequenceNode) else "a single value"
        problems.add(
            f"the top level must be a mapping of sections, not {kind}",
            hint="start lines with `sensors:`, `datasets:`, `rules:`, `publish:`",
        )
        return None
    builder = _Builder(problems)
    try:
        data = builder.build(root, ())
    except _TooLarge:
        problems.add(
            f"the file expands to more than {_MAX_NODES} values",
            hint="aliases (`*name`) that refer to each other multiply the document's size",
        )
        return None
    return data if isinstance(data, dict) else None


def _syntax_message(exc: yaml.MarkedYAMLError) -> tuple[str, str]:
    problem = exc.problem or "syntax error"
    if exc.context == "expected a single document in the stream":
        return (
            "the file holds more than one YAML document",
            "keep one: remove this `---` and what follows",
        )
    message = f"YAML syntax error: {problem}"
    if exc.context:
        where = f" at line {_line(exc.context_mark)}" if exc.context_mark else ""
        message += f" ({exc.context}{where})"
    if "'\\t'" in problem:  # PyYAML shows the character as its repr
        hint = "indent with spaces, not tabs"
    elif "mapping values are not allowed" in problem:
        hint = "quote a value that contains ': ', or check the indentation of the line above"
    else:
        hint = "check the indentation and the quotes on this line and the one above"
    return message, hint


def _line(mark: Any) -> int | None:
    return int(mark.line) + 1 if mark is not None else None


class _Builder:
    """Builds values from nodes into plain dicts, lists and scalars."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.lines = problems.lines
        self.scalars = yaml.SafeLoader("")  # only its scalar constructors are used
        self.count = 0
        self.active: set[int] = set()

    def build(self, node: Node, path: ConfigPath) -> Any:
        self.count += 1
        if self.count > _MAX_NODES:
            raise _TooLarge
        if len(path) > MAX_DEPTH:  # aliases inside aliases nest deeper than the text does
            self.problems.add(
                f"values are nested more than {MAX_DEPTH} levels deep here",
                path,
                line=node.start_mark.line + 1,
                hint="an alias (`*name`) copies its anchor's levels: use fewer of them in it",
            )
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.active:
            self.problems.add(
                "an alias refers to a value that contains it",
                path,
                line=node.start_mark.line + 1,
                hint="a YAML alias (`*name`) cannot be used inside its own anchor",
            )
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return self.sequence(node, path)
            if isinstance(node, MappingNode):
                return self.mapping(node, path)
        finally:
            self.active.discard(id(node))
        return None

    def scalar(self, node: ScalarNode, path: ConfigPath) -> Any:
        """The scalar's value, or None after reporting it (unreadable, or out of range);
        a reported value is muted, so the model does not report the None again."""
        value = self.construct(node, path)
        if value is not _MISSING:
            value = self._in_range(value, path, node.start_mark.line + 1)
        if value is _MISSING:
            self.problems.mute(path)
            return None
        return value

    def construct(self, node: ScalarNode, path: ConfigPath) -> Any:
        """The scalar's value as YAML reads it, or ``_MISSING`` after reporting why not."""
        line = node.start_mark.line + 1
        try:
            return self.scalars.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:  # an unknown `!tag`, or `!!int` on text
            self.problems.add(
                f"YAML cannot read this value: {exc.problem}",
                path,
                hint="write a plain value: eventflow does not use YAML tags",
                line=_line(exc.problem_mark) or line,
            )
        except ValueError as exc:  # a date that is not one (2024-13-45), a 5,000-digit number
            self.problems.add(
                f"YAML cannot read this value: {str(exc).partition(':')[0]}",
                path,
                hint="quote it if it is text",
                line=line,
            )
        return _MISSING

    def _in_range(self, value: Any, path: ConfigPath, line: int) -> Any:
        """``value``, or ``_MISSING`` after reporting a number no field can use: beyond 64
        bits, infinite or not a number (``.inf``, ``.nan``)."""
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and abs(value) > MAX_INTEGER:
            self.problems.add(
                "the number is too large",
                path,
                line=line,
                hint=f"write at most {MAX_INTEGER}, or quote it if it is text",
            )
            return _MISSING
        if isinstance(value, float) and not math.isfinite(value):
            self.problems.add(
                f"`{_float_text(value)}` is not a number eventflow can use",
                path,
                line=line,
                hint="write a finite number, or quote it if it is text",
            )
            return _MISSING
        return value

    def sequence(self, node: SequenceNode, path: ConfigPath) -> list[Any]:
        out: list[Any] = []
        for i, item in enumerate(node.value):
            self._place((*path, i), item)
            out.append(self.build(item, (*path, i)))
        return out

    def mapping(self, node: MappingNode, path: ConfigPath) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        first: dict[Any, int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            key = self.key(key_node, path)
            if key is _MISSING:
                continue
            line = key_node.start_mark.line + 1
            if key in first:
                self.problems.add(
                    f"duplicate key `{key}` (first at line {first[key]})",
                    (*path, key),
                    line=line,
                    hint="remove one of them: YAML would silently keep only the last",
                )
            else:
                first[key] = line
            self._place((*path, key), key_node)
            out[key] = self.build(value_node, (*path, key))
        # `<<: *base` adds the keys this mapping does not set itself; the first merge wins.
        for merged in merges:
            sources = merged.value if isinstance(merged, SequenceNode) else [merged]
            for source in sources:
                value = self.build(source, path)
                if not isinstance(value, dict):
                    self.problems.add(
                        "`<<` merges a mapping (or a list of mappings) into this one",
                        path,
                        line=source.start_mark.line + 1,
                    )
                    continue
                for key, item in value.items():
                    out.setdefault(key, item)
        return out

    def _place(self, path: ConfigPath, node: Node) -> None:
        if path not in self.lines:  # a merged mapping does not move keys written here
            self.lines[path] = node.start_mark.line + 1
            self.problems.columns[path] = node.start_mark.column

    def key(self, node: Node, path: ConfigPath) -> Any:
        line = node.start_mark.line + 1
        if not isinstance(node, ScalarNode):
            self.problems.add("a key must be a name, not a list or a mapping", path, line=line)
            return _MISSING
        value = self.construct(node, path)
        if value is _MISSING:
            return _MISSING
        if isinstance(value, bool):
            text = str(node.value)
            if text.lower() == "on" and path[-1:] == ("when",):
                hint = "write `by:` to name the partition variables the inputs are joined on"
            else:
                hint = f'quote it (`"{text}":`) if you mean the word'
            self.problems.add(
                f"`{text}` is read by YAML as the boolean {str(value).lower()}, not as a key",
                (*path, text),
                line=line,
                hint=hint,
            )
            return _MISSING
        if value is None:
            self.problems.add("a key is empty", path, line=line, hint="write `name: value`")
            return _MISSING
        if not isinstance(value, str):
            return str(node.value)  # `2024:` is the name "2024", not a number
        return value


def _float_text(value: float) -> str:
    """How YAML writes an infinite or NaN float."""
    if value != value:
        return ".nan"
    return ".inf" if value > 0 else "-.inf"
