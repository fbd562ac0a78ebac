"""Durations as written in pipeline files, parsed and rendered back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from eventflow.durations import Duration, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("2s", timedelta(seconds=2)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(minutes=90)),
        (" 1h 30m ", timedelta(hours=1, minutes=30)),
    ],
)
def test_parses_number_and_unit_text(text: str, expected: timedelta) -> None:
    """Text of numbers with units (ms, s, m, h, d, w), summed, spaces allowed, is parsed."""
    assert parse_duration(text) == expected


def test_numbers_are_seconds_and_timedeltas_pass_through() -> None:
    """A bare number is seconds; a timedelta is returned as it is."""
    assert parse_duration(90) == timedelta(seconds=90)
    assert parse_duration(0.25) == timedelta(milliseconds=250)
    assert parse_duration(timedelta(hours=3)) == timedelta(hours=3)


@pytest.mark.parametrize("value", ["2 hours", "h", "5", "", "1x", "-1s", True, -3, None, [1]])
def test_rejects_what_is_not_a_duration(value: object) -> None:
    """Anything else is a ValueError that names the value."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_the_error_for_text_shows_the_accepted_forms() -> None:
    """A text that is not a duration gets a message listing the forms that are."""
    with pytest.raises(ValueError, match=r"e\.g\. 500ms, 2s, 5m, 2h, 1d or 1h30m"):
        parse_duration("2 hours")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(milliseconds=1500), "1s500ms"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(days=2, seconds=5), "2d5s"),
    ],
)
def test_formats_in_the_shortest_form(value: timedelta, text: str) -> None:
    """A timedelta is rendered as days, hours, minutes, seconds and milliseconds that apply."""
    assert format_duration(value) == text


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=10**10))
def test_format_then_parse_round_trips(ms: int) -> None:
    """Whatever is formatted parses back to the same whole number of milliseconds."""
    value = timedelta(milliseconds=ms)
    assert parse_duration(format_duration(value)) == value


def test_duration_is_a_pydantic_field_type() -> None:
    """As a field type, Duration validates text and serialises back to text."""

    class M(BaseModel):
        d: Duration

    assert M.model_validate({"d": "2m"}).d == timedelta(minutes=2)
    assert M(d=timedelta(seconds=90)).model_dump() == {"d": "1m30s"}
    with pytest.raises(ValidationError, match="not a duration"):
        M.model_validate({"d": "soon"})
