"""The ``fuzz`` profile (registered in ``conftest.py``) as a decorator for each test."""

from __future__ import annotations

from hypothesis import settings

FUZZ = settings(settings.get_profile("fuzz"))
"""Apply to every ``@given`` test of the tier."""
