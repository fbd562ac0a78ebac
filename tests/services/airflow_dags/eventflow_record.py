"""The DAG the hand-off tests trigger; tests/services/airflow.py copies it into the dags folder.

``record`` appends what each try received to ``$EVENTFLOW_TEST_AIRFLOW_OUT/<run_id>.jsonl``
(a ``start`` line with the conf, the logical date and its pid; an ``end`` line when it
finishes), sleeps ``conf["sleep"]`` seconds in between, and fails its first try when
``conf["fail_first"]`` is set: what a test needs to see a run, a slow run and a failure.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from airflow.sdk import dag, get_current_context, task


def _append(path: Path, line: dict[str, Any]) -> None:
    with path.open("a") as out:
        out.write(json.dumps(line, default=str) + "\n")


@dag(schedule=None, catchup=False, is_paused_upon_creation=False)
def record() -> None:
    @task(retries=0)
    def receive() -> None:
        context = get_current_context()
        conf = context["dag_run"].conf or {}
        out = Path(os.environ["EVENTFLOW_TEST_AIRFLOW_OUT"]) / f"{context['run_id']}.jsonl"
        tries = out.read_text().count('"start"') if out.exists() else 0
        start = {"phase": "start", "conf": conf, "pid": os.getpid(), "try": tries + 1}
        _append(out, {**start, "logical_date": context.get("logical_date")})
        time.sleep(float(conf.get("sleep", 0)))
        if conf.get("fail_first") and tries == 0:
            raise RuntimeError("the first try fails, as conf.fail_first asks")
        _append(out, {"phase": "end", "try": tries + 1})

    receive()


record()
