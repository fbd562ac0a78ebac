"""Datasets: which observations announce which dataset partitions.

A dataset reads its partition key from the observation's key with a pattern
(``orders/dt={dt}/_SUCCESS``), from the payload with JMESPath (``partition: {dt: payload.dt}``),
or both, and may filter with ``where``. Expressions see ``payload``, ``key``, ``time``,
``sensor`` and whatever the sensor put in ``attributes`` (``headers``, ``topic``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.functions
from jmespath.parser import ParsedResult

from eventflow.errors import EventflowError
from eventflow.events import Observation, isoformat, partition_problem
from eventflow.patterns import KeyPattern


class DatasetMatchError(EventflowError):
    """An observation could not be evaluated against a dataset (the message is malformed)."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    sensor: str
    pattern: KeyPattern | None
    partition: Mapping[str, ParsedResult]
    where: ParsedResult | None
    declared: tuple[str, ...] = ()
    """Variables known without a pattern: those of a dataset a rule ``produces``."""
    _where: Search | None = field(default=None, init=False, repr=False, compare=False)
    _partition: tuple[tuple[str, ParsedResult, Search], ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        where = searcher(self.where) if self.where is not None else None
        partition = tuple((v, e, searcher(e)) for v, e in self.partition.items())
        object.__setattr__(self, "_where", where)
        object.__setattr__(self, "_partition", partition)

    @property
    def variables(self) -> tuple[str, ...]:
        names = list(self.pattern.variables if self.pattern else ())
        names += [v for v in (*self.partition, *self.declared) if v not in names]
        return tuple(names)

    @classmethod
    def compile(
        cls,
        name: str,
        sensor: str,
        key: str | None,
        partition: Mapping[str, str],
        where: str | None,
        declared: tuple[str, ...] = (),
    ) -> DatasetSpec:
        """Compile the expressions; raises ``jmespath.exceptions.ParseError`` on bad syntax."""
        return cls(
            name=name,
            sensor=sensor,
            pattern=KeyPattern(key) if key is not None else None,
            partition={var: jmespath.compile(expr) for var, expr in partition.items()},
            where=jmespath.compile(where) if where else None,
            declared=declared,
        )

    def match(self, obs: Observation) -> dict[str, str] | None:
        """The partition this observation announces, or None if it is not about this dataset.

        Raises DatasetMatchError when an expression cannot be evaluated or yields no value.
        """
        values: dict[str, str] = {}
        if self.pattern is not None:
            if obs.key is None:
                return None
            found = self.pattern.match(obs.key)
            if found is None:
                return None
            values.update(found)
        if self.where is None and not self.partition:
            return self._checked(values)
        context = expression_context(obs)
        try:
            if self._where is not None and not self._where(context):
                return None
            for var, expr, search in self._partition:
                value = search(context)
                if value is None or isinstance(value, dict | list):
                    raise DatasetMatchError(
                        f"dataset {self.name}: partition variable {var!r} ({expr.expression})"
                        f" gave {value!r}, not a value"
                    )
                values[var] = _text(value)
        except jmespath.exceptions.JMESPathError as exc:
            raise DatasetMatchError(f"dataset {self.name}: {exc}") from exc
        return self._checked(values)

    def _checked(self, values: dict[str, str]) -> dict[str, str]:
        """``values``, if they can be stored as a partition key (else DatasetMatchError)."""
        problem = partition_problem(values)
        if problem is not None:
            raise DatasetMatchError(f"dataset {self.name}: {problem}")
        return values


class Functions(jmespath.functions.Functions):
    """JMESPath functions eventflow adds for partition keys."""

    @jmespath.functions.signature({"types": ["string", "number"]}, {"types": ["string"]})
    def _func_strftime(self, value: str | float, fmt: str) -> str:
        """``strftime(payload.window_end, '%Y-%m-%d')``: a time as text, in UTC. ``value`` is
        ISO-8601 text (without a zone: UTC) or epoch milliseconds."""
        if isinstance(value, str):
            try:
                when = datetime.fromisoformat(value)
            except ValueError as exc:
                raise DatasetMatchError(f"strftime: {value!r} is not an ISO-8601 time") from exc
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        else:
            when = datetime.fromtimestamp(value / 1000, UTC)
        return when.strftime(fmt)


OPTIONS = jmespath.Options(custom_functions=Functions())
EXPRESSION_HINT = (
    "see https://jmespath.org/specification.html; quote field names with special characters"
    ' ("my-field")'
)
"""What to do about an expression :func:`compile_expression` refused."""


def compile_expression(text: str) -> ParsedResult:
    """``text`` compiled (JMESPath caches it); a ValueError naming the expression, what is
    wrong and the column when it is not JMESPath, for a config error."""
    try:
        return jmespath.compile(text)
    except jmespath.exceptions.JMESPathError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        for prefix in ("Invalid jmespath expression: ", "Bad jmespath expression: "):
            first = first.removeprefix(prefix)
        first = first.rstrip(": ")
        first = first[:1].lower() + first[1:]
        column = getattr(exc, "lex_position", None)
        at = f" at column {column + 1}" if isinstance(column, int) else ""
        raise ValueError(f"`{text}` is not a JMESPath expression: {first}{at}") from exc


Search = Callable[[Any], Any]


def searcher(expr: ParsedResult) -> Search:
    """``expr.search`` with eventflow's functions; the most common forms (``a.b.c``, and
    ``a.b == 'text'`` / ``!=``) as direct dict lookups with JMESPath's results, since this
    runs for every observation and dataset."""
    fast = _fast(expr.parsed)
    if fast is not None:
        return fast

    def search(context: Any) -> Any:
        return expr.search(context, OPTIONS)

    return search


def _fast(node: Any) -> Search | None:
    kind, children = node["type"], node["children"]
    if kind == "field":
        return _path((node["value"],))
    if kind == "subexpression" and all(c["type"] == "field" for c in children):
        return _path(tuple(c["value"] for c in children))
    if kind == "comparator" and node["value"] in ("eq", "ne") and len(children) == 2:
        left, right = children
        if left["type"] == "literal":
            left, right = right, left
        # A text literal: JMESPath's equality is then Python's (its special cases are
        # numbers and booleans).
        if right["type"] != "literal" or not isinstance(right["value"], str):
            return None
        get, literal = _fast(left), right["value"]
        if get is None:
            return None
        if node["value"] == "eq":
            return lambda context: get(context) == literal
        return lambda context: get(context) != literal
    return None


def _path(keys: tuple[str, ...]) -> Search:
    def get(context: Any) -> Any:
        for key in keys:
            if not isinstance(context, dict):
                return None
            context = context.get(key)
        return context

    return get


def expression_context(obs: Observation) -> dict[str, Any]:
    """What expressions see of ``obs``. The engine matches one observation against each of
    its sensor's datasets in turn: the last context is kept (with its observation, so the
    identity check cannot be fooled by a reused id) and served again. Expressions never
    change the context."""
    global _last_context
    last = _last_context  # one tuple, read once: a thread that matches too cannot tear it
    if last[0] is obs:
        return last[1]
    context = {
        **obs.attributes,
        "payload": obs.payload,
        "key": obs.key,
        "sensor": obs.sensor,
        "time": isoformat(obs.time) if obs.time else None,
    }
    _last_context = (obs, context)
    return context


_last_context: tuple[Observation | None, dict[str, Any]] = (None, {})


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
