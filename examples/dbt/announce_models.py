"""Announce one dataset per dbt model: read a ``dbt run``'s ``run_results.json`` and write a
marker ``OUT/<model>/dt=<dt>/_SUCCESS`` for each model that succeeded, which eventflow's
``models`` directory sensor turns into the datasets ``<model>``.

Usage: ``python announce_models.py RUN_RESULTS OUT DT``. A marker is written atomically
(a temporary name, then a rename); one that already holds this dbt invocation's id is left
as it is, so running this again (a retry, a restart) announces nothing twice.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def succeeded_models(run_results: Path) -> tuple[str, list[str]]:
    """The dbt invocation id and the names of the models that succeeded."""
    results = json.loads(run_results.read_text())
    models = [
        r["unique_id"].split(".")[-1]
        for r in results["results"]
        if r["unique_id"].startswith("model.") and r["status"] == "success"
    ]
    return results["metadata"]["invocation_id"], models


def announce(out: Path, model: str, dt: str, invocation: str) -> bool:
    """Write the model's marker; False when it already announces this invocation."""
    marker = out / model / f"dt={dt}" / "_SUCCESS"
    if marker.exists() and marker.read_text() == invocation:
        return False
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name("._SUCCESS.tmp")
    tmp.write_text(invocation)
    tmp.replace(marker)
    return True


def main(run_results: str, out: str, dt: str) -> None:
    invocation, models = succeeded_models(Path(run_results))
    for model in models:
        if announce(Path(out), model, dt, invocation):
            print(f"announced {model} dt={dt}")


if __name__ == "__main__":
    main(*sys.argv[1:])
