"""Datasets evaluate the common expression forms without the JMESPath interpreter, with
exactly its results."""

from __future__ import annotations

from typing import Any

import jmespath
import pytest

from eventflow.datasets import OPTIONS, searcher

EXPRESSIONS = [
    "payload",
    "payload.a",
    "payload.a.b",
    "payload.a == 'x'",
    "'x' == payload.a",
    "payload.a != 'x'",
    "payload.n == `1`",
    "payload.a.b == 'true'",
    "headers.origin == 'flink'",
    "strftime(payload.a, '%Y')",
]
VALUES: list[Any] = [
    None,
    1,
    1.0,
    True,
    False,
    "x",
    "true",
    "",
    [],
    {},
    [1],
    {"b": "x"},
    {"b": None},
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_searcher_gives_what_jmespath_gives(expression: str) -> None:
    """For every shape of value, the searcher's result equals JMESPath's, type included."""
    compiled = jmespath.compile(expression)
    search = searcher(compiled)
    for value in VALUES:
        for payload in ({"a": value, "n": value}, value, None):
            context = {"payload": payload, "headers": {"origin": value}}
            try:
                expected = compiled.search(context, OPTIONS)
            except Exception as exc:  # strftime of a non-time: the same error both ways
                with pytest.raises(type(exc)):
                    search(context)
                continue
            got = search(context)
            assert (got, type(got)) == (expected, type(expected)), (expression, context)
