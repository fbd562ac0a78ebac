"""The fuzzing tier's budget: a hypothesis profile every test here runs under.

``max_examples`` keeps the whole tier under a minute on two shared cores; no deadline (a
loaded machine is slow, not wrong); with ``CI`` set the examples are derandomized, so a
failure found in CI reproduces on a laptop. ``EVENTFLOW_FUZZ_EXAMPLES`` raises the budget for
a long local hunt: ``EVENTFLOW_FUZZ_EXAMPLES=20000 pytest tests/fuzz``. The profile is
applied per test (``@FUZZ``), not loaded globally, so the property tests of the other tiers
keep their own settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("EVENTFLOW_FUZZ_EXAMPLES", "80")),
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
    # Not the explain phase: its line tracer makes each example several times slower on
    # Python 3.11, and the failing example it reports is what matters here.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
