"""The Dagster code location the hand-off tests load with ``dagster dev -f`` (run by
Dagster's own interpreter, not eventflow's: only ``dagster`` is imported).

Every run of the op ``report`` writes what it received (its run id, run config, tags and
partition) to ``$EVENTFLOW_TEST_DAGSTER_OUT/<run id>.json``, which the tests read. Its
config can make it sleep (a run in flight, for timeouts and crashes) or fail: ``fail:
always``, or ``fail: first`` on eventflow's first attempt only (the ``eventflow/attempt``
tag), so a retry can succeed.
"""

import json
import os
import time
from pathlib import Path

import dagster as dg


class ReportConfig(dg.Config):
    batch: str = ""
    sleep: str = "0"  # seconds; a string, as eventflow's templates make strings
    fail: str = "never"


@dg.op
def report(context: dg.OpExecutionContext, config: ReportConfig) -> None:
    run = context.run
    received = {
        "run_id": run.run_id,
        "job": run.job_name,
        "run_config": run.run_config,
        "tags": dict(run.tags),
        "partition": context.partition_key if context.has_partition_key else None,
    }
    out = Path(os.environ["EVENTFLOW_TEST_DAGSTER_OUT"]) / f"{run.run_id}.json"
    out.write_text(json.dumps(received))
    time.sleep(float(config.sleep))
    attempt = run.tags.get("eventflow/attempt")
    if config.fail == "always" or (config.fail == "first" and attempt == "1"):
        raise dg.Failure(f"failing on demand (attempt {attempt})")


@dg.job(executor_def=dg.in_process_executor)
def report_job() -> None:
    report()


@dg.job(
    executor_def=dg.in_process_executor,
    partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"),
)
def daily_report() -> None:
    report()


defs = dg.Definitions(jobs=[report_job, daily_report])
