"""Backfill key ranges: how --from/--to name a rule's partitions and which ones they take."""

from __future__ import annotations

import pytest

from eventflow.backfill import BackfillError, in_range, parse_bound

BY = ("dt", "hr")


@pytest.mark.parametrize(
    ("text", "bound"),
    [
        ("2024-05-01", ("2024-05-01",)),
        ("2024-05-01/07", ("2024-05-01", "07")),
        ("dt=2024-05-01/hr=07", ("2024-05-01", "07")),
        ("dt=2024-05-01", ("2024-05-01",)),
    ],
)
def test_bounds_are_values_in_by_order_with_or_without_names(text: str, bound: tuple[str]) -> None:
    """A key gives values of the ``by`` variables in order; names are optional."""
    assert parse_bound(text, BY, "--from") == bound


@pytest.mark.parametrize(
    ("text", "message"),
    [("a/b/c", "does not name"), ("hr=07", "expected dt="), ("", "does not name")],
)
def test_bad_bounds_say_what_the_rule_joins_on(text: str, message: str) -> None:
    """Too many values, a name out of order, or nothing: an error naming the variables."""
    with pytest.raises(BackfillError, match=message):
        parse_bound(text, BY, "--from")


def test_a_short_bound_takes_every_partition_it_prefixes() -> None:
    """``--to 2024-05-31`` takes every hour of that day; both ends are inclusive."""
    lo, hi = ("2024-05-01",), ("2024-05-31",)
    assert in_range({"dt": "2024-05-31", "hr": "23"}, BY, lo, hi)
    assert in_range({"dt": "2024-05-01", "hr": "00"}, BY, lo, hi)
    assert not in_range({"dt": "2024-06-01", "hr": "00"}, BY, lo, hi)
    assert not in_range({"dt": "2024-04-30", "hr": "23"}, BY, lo, hi)
    assert in_range(
        {"dt": "2024-05-01", "hr": "07"}, BY, ("2024-05-01", "07"), ("2024-05-01", "07")
    )
    assert not in_range({"dt": "2024-05-01", "hr": "08"}, BY, lo, ("2024-05-01", "07"))
