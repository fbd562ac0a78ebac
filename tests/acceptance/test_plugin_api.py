"""A third-party plugin installed out of tree (tests/data/plugin-example) runs in eventflow."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.harness import Project, wait_until

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "plugin-example"

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reference" / "plugins.md"


def docs_pipeline() -> str:
    """The example pipeline of docs/reference/plugins.md (this test runs it)."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    return next(b for b in blocks if "is run by tests/acceptance/test_plugin_api.py" in b)


PIPELINE = "state: sqlite:///.eventflow/state.db\n" + docs_pipeline()


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed with pip into a folder of its own (not this venv)."""
    source = tmp_path_factory.mktemp("plugin-source") / "plugin-example"
    shutil.copytree(EXAMPLE, source)  # pip builds in the source tree: not in the checkout
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return target


def test_example_plugin_imports_only_the_plugin_api() -> None:
    """The example plugin imports from eventflow nothing but ``eventflow.plugin``."""
    tree = ast.parse((EXAMPLE / "eventflow_example" / "__init__.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m for m in modules if m and m.startswith("eventflow")} == {"eventflow.plugin"}


def test_an_installed_plugin_is_validated_and_runs(
    tmp_path: Path, plugin_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its sensor, task and publisher are found by entry point, validated and run end to end."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")])
    )
    project = Project(tmp_path, PIPELINE)
    assert "ok" in project.cli("validate", str(project.file)).stdout.lower()
    project.start()
    wait_until(lambda: len(list((tmp_path / "out").glob("*.done"))) == 5)
    published = wait_until(lambda: len(project.published()) == 5 and project.published())
    assert project.stop() == 0
    runs = {r["partition"]["n"]: r for r in project.runs()}
    assert sorted(runs) == ["0", "1", "2", "3", "4"]
    for n, run in runs.items():
        assert run["status"] == "succeeded"
        assert (tmp_path / "out" / f"{n}.done").read_text() == run["run_id"]
    assert {e["data"]["run_id"] for e in published} == {r["run_id"] for r in runs.values()}
    # A restart resumes from the sensor's cursor: nothing is emitted or fired again.
    project.start()
    wait_until(project.started)
    assert project.stop() == 0
    assert len(project.runs()) == 5


def test_a_plugin_config_error_names_the_file_and_line(
    tmp_path: Path, plugin_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin's own config model rejects a bad value with file, line and the field."""
    monkeypatch.setenv("PYTHONPATH", str(plugin_path))
    project = Project(tmp_path, PIPELINE.replace("count: 5", "count: -1"))
    result = project.cli("validate", str(project.file), check=False)
    assert result.returncode != 0
    assert "pipeline.yaml:4:" in result.stderr + result.stdout
    assert "count" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_plugin_that_fails_to_start_stops_the_start_in_one_line(
    tmp_path: Path, plugin_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publisher whose ``open`` raises is named in one log line; eventflow exits 1."""
    monkeypatch.setenv("PYTHONPATH", str(plugin_path))
    project = Project(tmp_path, PIPELINE.replace("path: out/events.jsonl", "path: blocked"))
    (tmp_path / "blocked").mkdir()  # a directory cannot be opened for appending
    project.start()
    assert project.wait_exit() == 1
    log = project.logs[-1].read_text()
    assert "Traceback" not in log
    failed = [e for e in project.log_events() if e.get("event") == "pipeline_failed"]
    assert len(failed) == 1
    assert "publisher 'jsonl' could not start: IsADirectoryError" in failed[0]["error"]
