"""The steady clock: setting the system clock back does not postpone what is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from structlog.testing import capture_logs

from eventflow.clock import SteadyClock


class FakeClocks:
    """A wall clock and a monotonic clock that tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, tzinfo=UTC)
        self.mono = 1000.0

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


def test_follows_the_wall_clock_while_it_runs_normally() -> None:
    """Without jumps the steady clock reads the wall clock, forward jumps included."""
    fake = FakeClocks()
    clock = SteadyClock(fake.wall, fake.monotonic)
    fake.tick(5)
    assert clock() == fake.now
    fake.now += timedelta(hours=1)  # set forward: waits get shorter, never longer
    assert clock() == fake.now
    assert clock.ahead == timedelta(0)


def test_a_backward_jump_does_not_postpone_a_due_retry() -> None:
    """A retry due 10 s after the last reading is due 10 s later by the monotonic clock,
    though the wall clock was set back an hour meanwhile; the jump is logged once."""
    fake = FakeClocks()
    clock = SteadyClock(fake.wall, fake.monotonic)
    due = clock() + timedelta(seconds=10)
    fake.now -= timedelta(hours=1)
    with capture_logs() as logs:
        fake.tick(4)
        assert clock() < due
        fake.tick(6)
        assert clock() >= due
        fake.tick(1)
        clock()
    jumps = [e for e in logs if e["event"] == "clock_jumped_back"]
    assert [round(e["seconds"]) for e in jumps] == [3600]
    assert clock.ahead == timedelta(hours=1)


def test_the_wall_clock_catching_up_ends_the_lead() -> None:
    """Once the wall clock is set forward past the steady clock again, it is followed."""
    fake = FakeClocks()
    clock = SteadyClock(fake.wall, fake.monotonic)
    fake.now -= timedelta(minutes=10)
    fake.tick(1)
    clock()
    fake.now += timedelta(minutes=20)
    assert clock() == fake.now
    assert clock.ahead == timedelta(0)
