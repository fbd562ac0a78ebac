"""Acceptance tests leave no eventflow process behind, whatever happened in the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.acceptance.harness import Project


@pytest.fixture(autouse=True)
def _kill_leftover_processes() -> Iterator[None]:
    yield
    for project in Project.live:
        project.kill()
    Project.live.clear()
