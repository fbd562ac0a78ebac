"""The Python API: the same pipeline as its YAML file, checked by the same models."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventflow import api
from eventflow.config.loader import load_pipeline
from eventflow.errors import ConfigError
from eventflow.pipeline import CompiledPipeline
from eventflow.records import RunRecord
from eventflow.runtime import Runtime
from eventflow.store import open_store

YAML = """
name: lake
state: sqlite:///state/lake.db
retention: {events: 30d}
sensors:
  landing: {type: directory, path: ./landing, include: ["**/*.csv", "**/_SUCCESS"]}
datasets:
  orders: {sensor: landing, key: "orders/dt={dt}/_SUCCESS"}
  fx: {sensor: landing, key: "fx/dt={dt}/rates.csv", where: "key != 'x'"}
rules:
  daily_report:
    when: {all: [orders, fx], by: [dt], within: 2h}
    run: {python: "MODULE:daily_report", retries: 3, timeout: 10m}
    produces: report
  announce:
    when: {any: [report]}
    run: {command: [echo, "{dt}"]}
    on_update: ignore
publish:
  - {type: file, path: out/events.jsonl}
"""

MODULE = """
from datetime import timedelta
from pathlib import Path

from eventflow import Pipeline, RunContext

pipeline = Pipeline("lake", state="sqlite:///state/lake.db", retention={"events": "30d"})
landing = pipeline.sensor(
    "landing", type="directory", path="./landing", include=["**/*.csv", "**/_SUCCESS"]
)
orders = pipeline.dataset("orders", sensor=landing, key="orders/dt={dt}/_SUCCESS")
fx = pipeline.dataset("fx", sensor="landing", key="fx/dt={dt}/rates.csv", where="key != 'x'")


@pipeline.rule(
    all=[orders, fx], by=["dt"], within=timedelta(hours=2), retries=3, timeout="10m",
    produces="report",
)
def daily_report(ctx: RunContext) -> dict[str, str]:
    Path("report-" + ctx.partition["dt"]).touch()  # in the current directory
    return {"dt": ctx.partition["dt"]}


pipeline.rule("announce", any=["report"], run={"command": ["echo", "{dt}"]}, on_update="ignore")
pipeline.publish("file", path="out/events.jsonl")
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module declaring the pipeline, importable from the current directory."""
    name = f"lake_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    (tmp_path / "pipeline.yaml").write_text(YAML.replace("MODULE", name))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_the_python_pipeline_equals_the_yaml_it_mirrors(module: str, tmp_path: Path) -> None:
    """Same validated config, rules, datasets, sensors and publishers as the YAML file."""
    from_yaml = load_pipeline(tmp_path / "pipeline.yaml")
    from_code = load_pipeline(f"{module}:pipeline")
    assert from_code.raw == from_yaml.raw
    assert from_code.rules.keys() == from_yaml.rules.keys()
    for name, rule in from_yaml.rules.items():
        assert from_code.rules[name].spec == rule.spec
        assert from_code.rules[name].run == rule.run
        assert from_code.rules[name].task_config == rule.task_config
        assert from_code.rules[name].produces == rule.produces
    assert {n: d.variables for n, d in from_code.datasets.items()} == {
        n: d.variables for n, d in from_yaml.datasets.items()
    }
    assert from_code.sensors.keys() == from_yaml.sensors.keys()
    assert from_code.sensors["landing"].config == from_yaml.sensors["landing"].config
    assert [p.config for p in from_code.publishers] == [p.config for p in from_yaml.publishers]
    assert (from_code.base_dir, from_code.state_dsn) == (from_yaml.base_dir, from_yaml.state_dsn)


def test_a_decorated_task_stays_a_function(module: str) -> None:
    """``@pipeline.rule`` names the rule after the function, and calling it calls it."""
    declared = __import__(module).daily_report
    assert isinstance(declared, api.Rule)
    assert declared.name == "daily_report"
    assert declared.run["python"] == f"{module}:daily_report"
    with pytest.raises(TypeError, match="runs command"):
        __import__(module).pipeline.rules["announce"]()


def test_mistakes_are_reported_by_the_same_checks(tmp_path: Path) -> None:
    """An unknown dataset, a bad duration and an unknown key: every problem at once."""
    pipeline = api.Pipeline("bad")
    pipeline.sensor("landing", type="directory", path=".")
    pipeline.rule("r", all=["nope"], within="soon", run={"command": ["true"]}, colour="red")
    with pytest.raises(ConfigError) as caught:
        pipeline.compile(tmp_path / "bad.py")
    text = str(caught.value)
    assert "unknown dataset `nope`" in text
    assert "not a duration" in text
    assert "colour" in text
    assert str(tmp_path / "bad.py") in text


def test_duplicates_and_unimportable_tasks_are_refused(tmp_path: Path) -> None:
    """Two definitions with one name, and a task the python runner could not import."""
    pipeline = api.Pipeline("dup", datasets=[api.dataset("d", sensor="s")] * 2)
    with pytest.raises(ConfigError, match="dataset 'd' is declared twice"):
        pipeline.compile(tmp_path / "dup.py")

    def local(ctx: object) -> None: ...

    with pytest.raises(TypeError, match="top level of a module"):
        api.rule(any=["d"])(local)


def test_targets_that_are_not_pipelines_are_config_errors(module: str) -> None:
    """A missing module or attribute, or an object that is not a Pipeline."""
    for target, message in [
        ("no_such_module_xyz:pipeline", "cannot import no_such_module_xyz"),
        (f"{module}:nothing", "has no attribute 'nothing'"),
        (f"{module}:orders", "is a Dataset, not an eventflow Pipeline"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_pipeline(target)


def test_the_cli_takes_module_pipeline(module: str, tmp_path: Path) -> None:
    """``validate`` and ``graph`` accept ``module:pipeline`` where they take a file (run as
    the real command: in-process invocations would leave click's help options cached)."""

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eventflow", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    result = cli("validate", f"{module}:pipeline")
    assert result.returncode == 0, result.stderr
    assert "2 rules" in result.stdout
    result = cli("graph", f"{module}:pipeline")
    assert result.returncode == 0, result.stderr
    assert "dataset_fx --> rule_daily_5f_report" in result.stdout


@pytest.mark.parametrize("block", [0, 1])
def test_the_python_examples_in_the_docs_compile(
    block: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each pipeline module in docs/howto/python-api.md loads as ``module:pipeline``."""
    page = Path(__file__).resolve().parents[2] / "docs/howto/python-api.md"
    code = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)[block]
    name = f"doc_example_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        pipeline = load_pipeline(f"{name}:pipeline")
    finally:
        sys.modules.pop(name, None)
    assert pipeline.rules
    assert all(r.task_type in ("python", "http") for r in pipeline.rules.values())


async def test_run_calls_the_decorated_function(module: str, tmp_path: Path) -> None:
    """Running the Python pipeline calls the decorated function for a complete partition."""
    pipeline = load_pipeline(f"{module}:pipeline")
    for rel in ("orders/dt=2024-05-01/_SUCCESS", "fx/dt=2024-05-01/rates.csv"):
        path = tmp_path / "landing" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    stop = asyncio.Event()
    task = asyncio.create_task(Runtime(pipeline).run(stop))
    try:
        for _ in range(600):
            if (tmp_path / "report-2024-05-01").exists():
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert (tmp_path / "report-2024-05-01").exists()
    runs = await _runs(pipeline)
    assert [(r.rule, r.status, r.output) for r in runs if r.rule == "daily_report"] == [
        ("daily_report", "succeeded", {"dt": "2024-05-01"})
    ]


async def _runs(pipeline: CompiledPipeline) -> list[RunRecord]:
    async with open_store(pipeline.state_dsn, pipeline.base_dir) as store:
        return await store.list_runs()
