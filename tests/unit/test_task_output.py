"""Captured task output (``eventflow.tasks._logs``): capped, and lost, not fatal, on a full disk."""

from __future__ import annotations

from pathlib import Path

from eventflow.tasks._logs import CappedFile, truncation_note
from tests.services._process import unavailable

FULL = Path("/dev/full")


def test_output_past_the_cap_is_counted_and_noted(tmp_path: Path) -> None:
    out = CappedFile(tmp_path / "out", 4)
    out.write(b"abcdef")
    out.close()
    out.close()
    assert out.truncated
    assert (tmp_path / "out").read_bytes() == b"abcd" + truncation_note(4)


def test_a_full_disk_loses_the_output_and_raises_nothing() -> None:
    """ENOSPC while the loop copies a child's output must not raise in the loop's callback
    nor fail the attempt at close: the rest of the output is dropped and counted (on
    /dev/full, a device that is always full)."""
    if not FULL.exists():
        unavailable("no /dev/full on this machine")
    out = CappedFile(FULL, 1024)
    out.write(b"first")
    out.write(b"second")
    out.close()
    assert out.failed is not None
    assert (out.written, out.dropped) == (0, 11)
