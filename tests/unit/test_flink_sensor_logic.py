"""The pure parts of the Flink sensor: what is new of a job since its cursor, the job's
watermark, the periods it passed, and the config's checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from eventflow_sensors.flink.config import FlinkSensorConfig, WatermarkPeriods
from eventflow_sensors.flink.track import (
    END_OF_INPUT,
    NO_WATERMARK,
    JobCursor,
    new_checkpoints,
    new_states,
    passed,
    watermark_of,
)

HOUR = 3_600_000
T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)


def stamps(**entered: int) -> dict[str, int]:
    """A job's ``timestamps`` as Flink answers them: every state, 0 for never entered."""
    states = ("INITIALIZING", "CREATED", "RUNNING", "FAILING", "FAILED", "CANCELLING",
              "CANCELED", "FINISHED", "RESTARTING", "SUSPENDED", "RECONCILING")  # fmt: skip
    return {s: entered.get(s, 0) for s in states}


def test_states_entered_since_the_cursor_come_oldest_first() -> None:
    """A job first seen failed gives its whole life in order; then nothing more."""
    ts = stamps(INITIALIZING=100, CREATED=105, RUNNING=105, FAILING=200, FAILED=201)
    found = new_states(JobCursor("j"), ts)
    assert found == [("INITIALIZING", 100), ("CREATED", 105), ("RUNNING", 105),
                     ("FAILING", 200), ("FAILED", 201)]  # fmt: skip
    assert new_states(JobCursor("j", "FAILED", 201), ts) == []


def test_a_restart_between_two_polls_gives_restarting_then_running_again() -> None:
    """Flink keeps the last time of each state: RUNNING again after RESTARTING is new."""
    ts = stamps(INITIALIZING=100, CREATED=101, RUNNING=300, RESTARTING=250)
    assert new_states(JobCursor("j", "RUNNING", 102), ts) == [("RESTARTING", 250),
                                                              ("RUNNING", 300)]  # fmt: skip


def test_a_stale_job_page_announces_nothing_new() -> None:
    """The job's page may lag the job list: without a newer time there is nothing new."""
    ts = stamps(INITIALIZING=100, CREATED=101, RUNNING=102)
    assert new_states(JobCursor("j", "RUNNING", 102), ts) == []


def test_timestamps_of_another_shape_are_ignored() -> None:
    """Values that are not times (null, text, true) are skipped, not raised on."""
    ts: dict[str, Any] = {"RUNNING": None, "FAILED": "soon", "CREATED": True, "FINISHED": 5}
    assert new_states(JobCursor("j"), ts) == [("FINISHED", 5)]


def checkpoint(cid: int, status: str = "COMPLETED", savepoint: bool = False) -> dict[str, Any]:
    return {"id": cid, "status": status, "is_savepoint": savepoint}


def test_completed_checkpoints_after_the_cursor_in_id_order() -> None:
    """History and latest are merged; in-progress and failed ones are not announced."""
    body = {
        "latest": {"completed": checkpoint(7), "savepoint": checkpoint(5, savepoint=True)},
        "history": [checkpoint(8, "IN_PROGRESS"), checkpoint(7), checkpoint(6, "FAILED"),
                    checkpoint(5, savepoint=True), checkpoint(4), checkpoint(3)],
    }  # fmt: skip
    found = new_checkpoints(JobCursor("j", checkpoint=3), body)
    assert [c["id"] for c in found] == [4, 5, 7]
    assert found[1]["is_savepoint"] is True
    assert new_checkpoints(JobCursor("j", checkpoint=7), body) == []
    assert new_checkpoints(JobCursor("j"), {"latest": None, "history": None}) == []


def wm(*values: int) -> list[dict[str, Any]]:
    return [{"id": f"{i}.currentInputWatermark", "value": str(v)} for i, v in enumerate(values)]


def test_the_job_watermark_is_the_lowest_input_watermark_of_its_vertices() -> None:
    """Sources report none (an empty list); any subtask without a watermark yet holds it."""
    assert watermark_of([[], wm(T0 + 5, T0 + 3), wm(T0 + 4)]) == T0 + 3
    assert watermark_of([[], wm(T0, NO_WATERMARK)]) is None
    assert watermark_of([[], []]) is None
    assert watermark_of([[{"id": "0.x", "value": "n/a"}], wm(T0)]) == T0


def test_periods_are_announced_once_in_order_after_the_lateness() -> None:
    """Each hour whose end plus the lateness the watermark reached, once."""
    start = JobCursor("j")
    step = passed(start, T0 + 2 * HOUR + 10, HOUR, 0, T0)
    assert step.ends == [T0 + HOUR, T0 + 2 * HOUR]
    assert step.cursor is not None
    again = passed(step.cursor, T0 + 2 * HOUR + 20, HOUR, 0, T0)
    assert again.ends == []
    late = passed(step.cursor, T0 + 3 * HOUR + 10, HOUR, 5 * 60_000, T0)
    assert late.ends == []  # 10 ms past the hour, 5 minutes allowed
    assert late.cursor is not None
    on_time = passed(late.cursor, T0 + 3 * HOUR + 5 * 60_000, HOUR, 5 * 60_000, T0)
    assert on_time.ends == [T0 + 3 * HOUR]


def test_without_since_the_first_period_is_the_one_the_first_watermark_is_in() -> None:
    """Hours that ended before the sensor saw the job are not announced; the start is kept."""
    step = passed(JobCursor("j"), T0 + 5 * HOUR + 30, HOUR, 0, None)
    assert step.ends == []
    assert step.keep  # the starting period is written to the cursor at once
    assert step.cursor is not None
    assert step.cursor.period == T0 + 5 * HOUR
    assert passed(step.cursor, T0 + 6 * HOUR, HOUR, 0, None).ends == [T0 + 6 * HOUR]


def test_the_end_of_a_bounded_input_closes_the_last_period() -> None:
    """The watermark jumps to Long.MAX_VALUE: the period holding the highest watermark seen
    before closes (the last partition of a stream), and no period after it."""
    step = passed(JobCursor("j"), T0 + HOUR + 30, HOUR, 0, T0)
    assert step.cursor is not None
    end = passed(step.cursor, END_OF_INPUT, HOUR, 0, T0)
    assert end.ends == [T0 + 2 * HOUR]
    assert end.cursor is not None
    assert passed(end.cursor, END_OF_INPUT, HOUR, 0, T0).ends == []
    assert passed(JobCursor("j"), END_OF_INPUT, HOUR, 0, T0).ends == []


def test_a_far_start_announces_in_steps() -> None:
    """At most `limit` periods per reading; the next reading goes on from there."""
    step = passed(JobCursor("j"), T0 + 10 * HOUR, HOUR, 0, T0, limit=4)
    assert len(step.ends) == 4
    assert step.cursor is not None
    rest = passed(step.cursor, T0 + 10 * HOUR, HOUR, 0, T0, limit=100)
    assert rest.ends == [T0 + h * HOUR for h in range(5, 11)]


def test_the_cursor_round_trips_through_json() -> None:
    """What is written to the store reads back the same."""
    cursor = JobCursor("orders", "RUNNING", 123, 7, T0 + HOUR, T0 + HOUR + 5, True)
    assert JobCursor.from_json(cursor.to_json()) == cursor
    assert JobCursor.from_json(JobCursor("x").to_json()) == JobCursor("x")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"url": "localhost:8081"}, "http://localhost:8081"),
        ({"url": "ftp://flink:8081"}, "not an http(s) URL"),
        ({"url": "http://user:pw@flink:8081"}, "token_env"),
        ({"url": "http://flink:8081", "poll_interval": "0s"}, "above 0s"),
        ({"url": "http://flink:8081", "jobs": []}, "at least one pattern"),
        ({"url": "http://flink:8081", "poll_intervall": "5s"}, "poll_intervall"),
    ],
)
def test_bad_config_is_refused_with_a_fix(config: dict[str, Any], message: str) -> None:
    """Each mistake names what to write instead."""
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FlinkSensorConfig.model_validate({"type": "flink", **config})


@pytest.mark.parametrize(
    ("periods", "message"),
    [
        ({"every": "7m"}, "divide a day"),
        ({"every": "36h"}, "divide a day"),
        ({"key": "hour"}, "strftime"),
        ({"every": "500ms"}, "at least 1s"),
    ],
)
def test_bad_watermark_periods_are_refused(periods: dict[str, Any], message: str) -> None:
    """Periods must tile days; the key must name the period."""
    with pytest.raises(ValidationError, match=message):
        WatermarkPeriods.model_validate(periods)


def test_the_url_is_kept_without_a_trailing_slash() -> None:
    """`http://flink:8081/` and `http://flink:8081` are the same API."""
    config = FlinkSensorConfig.model_validate({"type": "flink", "url": "http://flink:8081/"})
    assert config.url == "http://flink:8081"


def test_a_watermark_past_year_9999_counts_as_the_end_of_input() -> None:
    """Long.MAX_VALUE, or anything no date can hold, closes the last period and no more."""
    step = passed(JobCursor("j"), T0 + 30, HOUR, 0, T0)
    assert step.cursor is not None
    assert passed(step.cursor, 2**62, HOUR, 0, T0).ends == [T0 + HOUR]
