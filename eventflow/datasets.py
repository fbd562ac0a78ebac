"""Datasets: which observations announce which dataset partitions.

A dataset reads its partition key from the observation's key with a pattern
(``orders/dt={dt}/_SUCCESS``), from the payload with JMESPath (``partition: {dt: payload.dt}``),
or both, and may filter with ``where``. Expressions see ``payload``, ``key``, ``time``,
``sensor`` and whatever the sensor put in ``attributes`` (``headers``, ``topic``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.functions
from jmespath.parser import ParsedResult

from eventflow.errors import EventflowError
from eventflow.events import Observation
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
            return values
        context = expression_context(obs)
        try:
            if self.where is not None and not self.where.search(context, OPTIONS):
                return None
            for var, expr in self.partition.items():
                value = expr.search(context, OPTIONS)
                if value is None or isinstance(value, dict | list):
                    raise DatasetMatchError(
                        f"dataset {self.name}: partition variable {var!r} ({expr.expression})"
                        f" gave {value!r}, not a value"
                    )
                values[var] = _text(value)
        except jmespath.exceptions.JMESPathError as exc:
            raise DatasetMatchError(f"dataset {self.name}: {exc}") from exc
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


def expression_context(obs: Observation) -> dict[str, Any]:
    return {
        **obs.attributes,
        "payload": obs.payload,
        "key": obs.key,
        "sensor": obs.sensor,
        "time": obs.time.isoformat() if obs.time else None,
    }


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
