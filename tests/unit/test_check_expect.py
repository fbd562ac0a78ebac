"""A check's value against its ``expect``: values no bound can compare (``inf``, ``nan``, an
epoch beyond the calendar) fail the check with a reason instead of stopping the checker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventflow.quality.config import Expect
from eventflow.quality.expect import judge, number, timestamp
from eventflow.quality.sources import _last_value

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e999", 10**400])
def test_a_value_that_is_not_finite_is_no_number(text: object) -> None:
    assert number(text) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["1e20", 1e20, "-1e300"])
def test_an_epoch_beyond_the_calendar_is_no_timestamp(value: object) -> None:
    assert timestamp(value) is None  # type: ignore[arg-type]


def test_judge_refuses_what_it_cannot_compare_with_a_reason() -> None:
    bounds = Expect(min=1, max=10)
    assert judge("inf", bounds, None, NOW) == (False, "the value 'inf' is not a number")
    fresh = Expect(max_age=timedelta(hours=1))
    assert judge(1e20, fresh, None, NOW) == (False, "the value 1e+20 is not a timestamp")
    assert judge(5, Expect(change=10), "nan", NOW) == (True, "")  # no previous to compare


def test_a_command_printing_inf_gives_no_value(tmp_path: Path) -> None:
    out = tmp_path / "stdout"
    out.write_text("rows\ninf\n")
    assert _last_value(out) is None
    out.write_text("rows\n42\n")
    assert _last_value(out) == 42
