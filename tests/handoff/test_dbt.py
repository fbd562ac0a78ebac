"""The dbt example (examples/dbt) end to end with real dbt-core and dbt-duckdb: a day's orders
file runs ``dbt run`` for that partition (``--vars`` from the partition), one dataset per
model is announced from ``run_results.json``, and a rule waiting for one model fires; the
DuckDB tables hold each partition once, also after a second partition and a restart."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.acceptance.harness import Project, wait_until

# dbt starts slowly (several seconds per `dbt run` on a busy machine).
pytestmark = [pytest.mark.handoff, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "dbt"
INSTALL = ROOT / "scripts" / "install-dbt.sh"

ORDERS = {
    "2024-01-01": "customer,amount\nann,10\nbob,5\nann,2.5\n",
    "2024-01-02": "customer,amount\nbob,7\ncid,1\n",
}


@pytest.fixture(scope="module")
def dbt_bin() -> Path:
    """The ``bin`` folder of dbt's own virtual environment (installed if missing)."""
    subprocess.run([str(INSTALL)], check=True, timeout=900)
    cache = Path(os.environ.get("EVENTFLOW_TEST_CACHE", Path.home() / ".cache/eventflow-test"))
    return cache / "dbt-1.9.x-duckdb-1.9.x" / "venv" / "bin"


@pytest.fixture
def example(tmp_path: Path, dbt_bin: Path) -> Project:
    """A copy of examples/dbt run with dbt's venv first on PATH."""
    root = tmp_path / "dbt"
    shutil.copytree(EXAMPLE, root)
    return Project(root, (root / "pipeline.yaml").read_text())


def land(p: Project, dt: str) -> None:
    p.land(f"orders/dt={dt}/orders.csv", ORDERS[dt])


def start(p: Project, dbt_bin: Path) -> None:
    path = f"{dbt_bin}{os.pathsep}{os.environ['PATH']}"
    p.start(PATH=path, DBT=str(dbt_bin / "dbt"), PYTHON=sys.executable)


def tables(root: Path, dbt_bin: Path) -> dict[str, list[Any]]:
    """The example's DuckDB tables, read with the duckdb of dbt's venv."""
    script = """
import duckdb, json
c = duckdb.connect("warehouse.duckdb", read_only=True)
orders = "select dt::varchar, customer, orders, amount from orders_daily order by dt, customer"
revenue = "select dt::varchar, orders, revenue from revenue_daily order by dt"
print(json.dumps({"orders_daily": c.sql(orders).fetchall(),
                  "revenue_daily": c.sql(revenue).fetchall()}))
"""
    out = subprocess.run(
        [str(dbt_bin / "python"), "-c", script],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return {k: [list(row) for row in v] for k, v in json.loads(out.stdout).items()}


def test_the_dbt_example_builds_each_partition_and_announces_each_model(
    example: Project, dbt_bin: Path
) -> None:
    """A day's orders run dbt for that day; orders_daily and revenue_daily are announced as
    datasets from run_results.json, the revenue export fires on its model, and the DuckDB
    tables hold the partition; a second day adds its partition, and a restart fires nothing
    again."""
    p = example
    land(p, "2024-01-01")
    start(p, dbt_bin)
    exports = p.root / "exports"
    wait_until(lambda: (exports / "revenue-2024-01-01.ready").exists(), timeout=240)
    land(p, "2024-01-02")
    wait_until(lambda: (exports / "revenue-2024-01-02.ready").exists(), timeout=240)
    assert p.stop() == 0

    assert tables(p.root, dbt_bin) == {
        "orders_daily": [
            ["2024-01-01", "ann", 2, 12.5],
            ["2024-01-01", "bob", 1, 5.0],
            ["2024-01-02", "bob", 1, 7.0],
            ["2024-01-02", "cid", 1, 1.0],
        ],
        "revenue_daily": [["2024-01-01", 3, 17.5], ["2024-01-02", 2, 8.0]],
    }
    runs = p.runs()
    by_rule: dict[str, list[str]] = {}
    for run in runs:
        assert run["status"] == "succeeded", run
        by_rule.setdefault(run["rule"], []).append(run["partition"]["dt"])
    days = ["2024-01-01", "2024-01-02"]
    assert {rule: sorted(dts) for rule, dts in by_rule.items()} == {
        "dbt_run": days,
        "announce_models": days,
        "export_revenue": days,
    }
    # One dataset per model and partition, announced from dbt's run results.
    available = [
        (e["data"]["dataset"], e["data"]["partition"]["dt"])
        for e in p.published()
        if e["type"] == "eventflow.dataset.available"
    ]
    for dt in days:
        assert available.count(("orders_daily", dt)) == 1
        assert available.count(("revenue_daily", dt)) == 1
    dbt_run = next(r for r in runs if r["rule"] == "dbt_run")
    results = json.loads((p.root / "target" / dbt_run["run_id"] / "run_results.json").read_text())
    assert {r["unique_id"] for r in results["results"]} == {
        "model.shop.orders_daily",
        "model.shop.revenue_daily",
    }

    # A restart resumes from the sensors' cursors: nothing fires again.
    start(p, dbt_bin)
    wait_until(p.started)
    assert p.stop() == 0
    assert len(p.runs()) == len(runs)


def test_a_partition_value_that_is_not_a_date_never_reaches_sql(
    example: Project, dbt_bin: Path
) -> None:
    """A file under ``dt=x' or 1=1 --`` runs dbt, which refuses the var before compiling
    SQL: the run fails with dbt's message and no model is announced."""
    p = example
    p.land("orders/dt=x' or '1'='1/orders.csv", ORDERS["2024-01-01"])
    start(p, dbt_bin)
    run = wait_until(
        lambda: next((r for r in p.runs() if r["status"] == "failed"), None), timeout=240
    )
    assert p.stop() == 0
    assert run["rule"] == "dbt_run"
    assert run["attempt"] == 2
    stdout = p.cli("runs", str(p.file), run["run_id"]).stdout
    assert "var dt must be YYYY-MM-DD" in stdout
    assert not list((p.root / "announced").glob("*/*/_SUCCESS"))


def test_the_dbt_howto_shows_the_example_pipeline() -> None:
    """docs/howto/dbt.md shows examples/dbt/pipeline.yaml as it is (less its publisher)."""
    docs = (ROOT / "docs" / "howto" / "dbt.md").read_text()
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", docs, re.S) if "test_dbt.py" in b]
    example = yaml.safe_load((EXAMPLE / "pipeline.yaml").read_text())
    example.pop("publish")
    assert yaml.safe_load(block) == example
