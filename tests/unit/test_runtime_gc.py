"""`eventflow run` tunes the garbage collector of its own process once started."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json
from eventflow.runtime import GC_YOUNG_THRESHOLD, tune_gc
before = gc.get_threshold()
tune_gc()
print(json.dumps({"before": before, "after": gc.get_threshold(),
                  "frozen": gc.get_freeze_count(), "young": GC_YOUNG_THRESHOLD}))
"""


def test_tune_gc_freezes_start_up_objects_and_collects_young_objects_less_often() -> None:
    """After tune_gc the objects alive at start-up are frozen (never walked again) and the
    young generation is collected every GC_YOUNG_THRESHOLD allocations; the older
    generations keep Python's thresholds. Run in a child: it changes the whole process."""
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout)
    assert probe["frozen"] > 10_000
    assert probe["after"] == [probe["young"], *probe["before"][1:]]
    assert probe["young"] > probe["before"][0]
