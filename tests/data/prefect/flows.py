"""The Prefect flow the hand-off tests run, served as deployment ``report-flow/report``.

Runs in Prefect's own virtual environment (``scripts/install-prefect.sh``), never in
eventflow's. Each run appends what it received to ``$FLOW_OUT/received.jsonl``, which the
tests read. The tests steer a run of partition ``dt`` by files in ``$FLOW_OUT``:
``sleep-DT`` (seconds to sleep, to keep the run in flight) and ``fail-DT`` (fail once: the
file is removed and the run raises).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

OUT = Path(os.environ["FLOW_OUT"])


@flow(name="report-flow")
def report(dt: str, batch: str = "", run_id: str = "", attempt: str = "") -> str:
    """Record the parameters, then sleep or fail as the test asked."""
    record = {
        "flow_run_id": flow_run.id,
        "run_count": flow_run.run_count,
        "dt": dt,
        "batch": batch,
        "run_id": run_id,
        "attempt": attempt,
        "time": time.time(),
    }
    with (OUT / "received.jsonl").open("a") as out:
        out.write(json.dumps(record) + "\n")
    sleep = OUT / f"sleep-{dt}"
    if sleep.exists():
        time.sleep(float(sleep.read_text()))
    fail = OUT / f"fail-{dt}"
    if fail.exists():
        fail.unlink()
        raise RuntimeError(f"asked to fail for dt={dt}")
    return f"report {dt} done"


if __name__ == "__main__":
    report.serve(name="report")
