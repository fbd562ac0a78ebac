"""Stand-in for what consumes a model: note that revenue_daily's partition DT is ready.

Usage: ``python export_revenue.py DT``; writes ``exports/revenue-DT.ready``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    out = Path("exports")
    out.mkdir(exist_ok=True)
    (out / f"revenue-{sys.argv[1]}.ready").write_text("ready\n")
