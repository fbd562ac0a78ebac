"""Key patterns, argument templates and globs."""

from __future__ import annotations

import pytest

from eventflow.patterns import (
    KeyPattern,
    glob_match,
    placeholders,
    render,
    render_deep,
)


def test_key_pattern_captures_variables_within_one_segment() -> None:
    """`{var}` matches one run of characters without `/` and names a variable."""
    pattern = KeyPattern("orders/dt={dt}/hr={hr}/_SUCCESS")
    assert pattern.variables == ("dt", "hr")
    assert pattern.match("orders/dt=2024-05-01/hr=07/_SUCCESS") == {"dt": "2024-05-01", "hr": "07"}
    assert pattern.match("orders/dt=2024/05/hr=07/_SUCCESS") is None
    assert pattern.match("orders/dt=2024-05-01/hr=07/_SUCCESS.tmp") is None


def test_key_pattern_keeps_globs_and_escapes_the_rest() -> None:
    """`*` and `?` are globs within a segment; other characters are literal."""
    pattern = KeyPattern("landing/{dt}/part-?.*")
    assert pattern.match("landing/d1/part-3.csv") == {"dt": "d1"}
    assert pattern.match("landing/d1/part-33.csv") is None
    assert KeyPattern("a+b/{x}").match("a+b/1") == {"x": "1"}
    assert KeyPattern("a+b/{x}").match("aab/1") is None


def test_a_repeated_variable_must_match_the_same_text() -> None:
    """A variable used twice in a pattern matches only when both places agree."""
    pattern = KeyPattern("{dt}/copy-of-{dt}")
    assert pattern.variables == ("dt",)
    assert pattern.match("d1/copy-of-d1") == {"dt": "d1"}
    assert pattern.match("d1/copy-of-d2") is None


@pytest.mark.parametrize(
    ("text", "prefix"),
    [("orders/dt={dt}/x", "orders/dt="), ("logs/*.csv", "logs/"), ("plain/key", "plain/key")],
)
def test_literal_prefix_stops_at_the_first_variable_or_glob(text: str, prefix: str) -> None:
    """The literal prefix is where a listing of candidate keys can start."""
    assert KeyPattern(text).literal_prefix == prefix


def test_placeholders_lists_template_names_without_escapes_or_json() -> None:
    """Only `{identifier}` counts: `{{escaped}}` and JSON braces are not placeholders."""
    assert placeholders('--vars={"dt": "{dt}"} {{literal}} {hr}') == ["dt", "hr"]


def test_render_replaces_known_names_and_leaves_the_rest() -> None:
    """Known names are replaced, unknown ones and JSON stay, `{{x}}` is the literal `{x}`."""
    assert render('{"dt": "{dt}"} {{x}} {nope}', {"dt": "2024"}) == '{"dt": "2024"} {x} {nope}'
    assert render("{n}", {"n": 3}) == "3"


def test_render_deep_walks_lists_and_mappings() -> None:
    """Strings inside nested lists and mapping values are rendered; other values stay."""
    value = {"url": "http://x/{dt}", "json": {"ids": ["{dt}", 1, True]}}
    assert render_deep(value, {"dt": "d"}) == {"url": "http://x/d", "json": {"ids": ["d", 1, True]}}


@pytest.mark.parametrize(
    ("name", "patterns", "expected"),
    [
        ("a/b/c.csv", ["*.csv"], True),
        ("c.csv", ["*.csv"], True),
        ("a/b/c.csv", ["a/*.csv"], False),
        ("a/b/c.csv", ["a/**/*.csv"], True),
        ("a/c.csv", ["a/**/*.csv"], True),
        ("a/c.json", ["*.csv", "*.json"], True),
        ("a/c.tmp", ["*.csv"], False),
        ("a/c1.csv", ["a/c?.csv"], True),
    ],
)
def test_glob_match(name: str, patterns: list[str], expected: bool) -> None:
    """A bare glob matches at any depth, `*` stays in a segment and `**` spans segments."""
    assert glob_match(name, patterns) is expected


def test_render_keeps_nested_json_braces() -> None:
    """Closing braces of nested JSON survive rendering (no `}}` escape outside `{{name}}`)."""
    assert render('{"a": {"b": "{dt}"}}', {"dt": "D"}) == '{"a": {"b": "D"}}'
