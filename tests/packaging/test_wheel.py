"""The wheel, installed as a user installs it: non-editable, into a fresh virtual environment,
beside a project that has its own ``sensors.py`` and ``sensors/`` (Dagster's usual names).

The wheel is built once for the module (sdist, then the wheel from the sdist, as ``make
dist`` does) and installed with the core dependencies only: the project's commands work,
eventflow's plugins are unaffected by the user's modules and the user's modules by
eventflow's, and every feature behind an extra refuses with one line naming it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from eventflow.extras import DISTRIBUTION
from tests.acceptance.harness import wait_until

ROOT = Path(__file__).resolve().parents[2]

# Building and installing take most of a minute on a busy machine; the tests after it are
# quick.
pytestmark = pytest.mark.timeout(600)

PIPELINE = """\
name: project
sensors:
  landing: {type: directory, path: ./landing, ready: {stable_for: 0s}}
datasets:
  orders: {sensor: landing, key: "orders/dt={dt}/_SUCCESS"}
rules:
  load:
    when: {any: [orders], by: [dt]}
    run:
      command:  # which `sensors` does a user's task get?
        - ${PYTHON}
        - -c
        - import sensors; print('fired', sensors.OWNER, sensors.__file__)
publish:
  - {type: file, path: ./out/events.jsonl}
"""

PYTHON_PIPELINE = """\
import sensors  # the user's own package, imported beside eventflow's plugins

from eventflow import Pipeline, RunContext

pipeline = Pipeline("lake")
landing = pipeline.sensor("landing", type="directory", path="./landing")
orders = pipeline.dataset("orders", sensor=landing, key="orders/dt={dt}/_SUCCESS")


@pipeline.rule(any=[orders], by=["dt"])
def daily_report(ctx: RunContext) -> dict[str, str]:
    return {"owner": sensors.OWNER}
"""

EXTRAS_PIPELINE = """\
state: postgresql://eventflow@localhost/eventflow
sensors:
  landing: {type: directory, path: ./landing}
  topic: {type: kafka, bootstrap_servers: localhost:9092, topic: t}
  lake: {type: s3, bucket: lake}
  plant: {type: mqtt, topic: "plant/+/ready"}
  hooks: {type: http}
datasets:
  orders: {sensor: landing, key: "orders/dt={dt}/_SUCCESS"}
rules:
  load: {when: {any: [orders], by: [dt]}, run: {command: [echo, hi]}}
publish:
  - {type: openlineage, transport: {type: console}}
"""
"""A pipeline naming a feature of every extra, each on its own line."""

EXTRA_LINES = {
    "postgres": 1,
    "kafka": 4,
    "s3": 5,
    "mqtt": 6,
    "http": 7,
    "openlineage": 13,
}


@dataclass(frozen=True)
class Venv:
    """A virtual environment with eventflow installed from the wheel."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def eventflow(self) -> Path:
        return self.root / "bin" / "eventflow"

    def env(self) -> dict[str, str]:
        """The environment of a user's shell: nothing of the test's checkout or venv."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        environ.pop("VIRTUAL_ENV", None)
        return environ | {"PYTHONNOUSERSITE": "1", "PYTHON": str(self.python)}

    def run(self, *argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in argv],
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, as ``make dist`` builds it."""
    out = tmp_path_factory.mktemp("dist")
    _checked(sys.executable, "-m", "build", "--outdir", str(out), str(ROOT))
    (found,) = out.glob("*.whl")
    return found


@pytest.fixture(scope="module")
def core(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh virtual environment with the wheel and its core dependencies, no extras."""
    venv = Venv(tmp_path_factory.mktemp("venv") / "core")
    _checked(sys.executable, "-m", "venv", "--without-pip", str(venv.root))
    # This environment's pip installs into the new one: pip's cache and configuration serve.
    _checked(
        *(sys.executable, "-m", "pip", "--python", str(venv.python), "install", "--quiet"),
        *("--no-compile", "--find-links", str(wheel.parent), str(wheel)),
    )
    return venv


def _checked(*argv: str) -> None:
    """Run ``argv``; fail with its output if it fails."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=500)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout}{result.stderr}"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project: its own ``sensors.py`` and ``sensors/`` package, and a pipeline."""
    (tmp_path / "sensors.py").write_text("OWNER = 'the user (sensors.py)'\n")
    (tmp_path / "sensors").mkdir()
    (tmp_path / "sensors" / "__init__.py").write_text("OWNER = 'the user'\n")
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    (tmp_path / "lake.py").write_text(PYTHON_PIPELINE)
    (tmp_path / "landing").mkdir()
    return tmp_path


@pytest.fixture
def started(core: Venv, project: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``eventflow run pipeline.yaml`` in the project, stopped with SIGTERM at the end."""
    log = (project / "eventflow.log").open("wb")
    proc = subprocess.Popen(
        [str(core.eventflow), "run", "pipeline.yaml", "--log-format", "json"],
        cwd=project,
        env=core.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()


def test_wheel_holds_both_packages_and_their_data_only(wheel: Path) -> None:
    """The wheel holds ``eventflow/`` and ``eventflow_sensors/`` with the SQL files,
    migrations and ``py.typed``; no ``sensors/`` and no ``tests/``."""
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"eventflow", "eventflow_sensors", "eventflow_orchestrator-0.1.0.dist-info"}
    for name in [
        "eventflow/py.typed",
        "eventflow_sensors/py.typed",
        "eventflow_sensors/kafka/sensor.py",
        "eventflow/store/sql/queries.sql",
        "eventflow/store/sql/migrations/0001_init.sql",
        "eventflow/store/sql/postgres/queries.sql",
        "eventflow/store/sql/postgres/migrations/0001_init.sql",
    ]:
        assert name in names
    migrations = sorted((ROOT / "eventflow/store/sql").rglob("*.sql"))
    assert {
        f"eventflow/store/sql/{p.relative_to(ROOT / 'eventflow/store/sql')}" for p in migrations
    } <= set(names)


def test_no_top_level_sensors_module_is_installed(core: Venv, tmp_path: Path) -> None:
    """The installed distribution's files hold no top-level ``sensors``, and ``import
    sensors`` fails outside a project that has one."""
    listing = core.run(
        core.python,
        "-c",
        f"import importlib.metadata as m; print(*m.files({DISTRIBUTION!r}), sep='\\n')",
        cwd=tmp_path,
    )
    assert listing.returncode == 0, listing.stderr
    tops = {line.split("/")[0] for line in listing.stdout.splitlines()}
    assert "sensors" not in tops
    assert "sensors.py" not in tops
    assert {"eventflow", "eventflow_sensors"} <= tops
    imported = core.run(core.python, "-c", "import sensors", cwd=tmp_path)
    assert imported.returncode == 1
    assert "ModuleNotFoundError: No module named 'sensors'" in imported.stderr


def test_validate_works_beside_the_users_sensors(core: Venv, project: Path) -> None:
    """``eventflow validate`` and ``python -m eventflow validate`` (the current directory on
    ``sys.path``) accept the pipeline of a project with its own ``sensors``."""
    for argv in [(core.eventflow,), (core.python, "-m", "eventflow")]:
        result = core.run(*argv, "validate", "pipeline.yaml", cwd=project)
        assert result.returncode == 0, result.stderr
        assert "pipeline.yaml: ok (1 sensors, 1 datasets, 1 rules, 1 publishers;" in result.stdout


def test_python_pipeline_validates_beside_the_users_sensors(core: Venv, project: Path) -> None:
    """A pipeline declared in Python that imports the user's ``sensors`` validates."""
    result = core.run(core.eventflow, "validate", "lake:pipeline", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "lake:pipeline: ok (1 sensors, 1 datasets, 1 rules, 0 publishers;" in result.stdout


def test_directory_pipeline_fires_and_its_task_imports_the_users_sensors(
    core: Venv, project: Path, started: subprocess.Popen[bytes]
) -> None:
    """A landed file fires the rule, and the command task's ``import sensors`` gets the
    user's package, not eventflow's plugins."""
    marker = project / "landing" / "orders" / "dt=2024-01-01" / "_SUCCESS"
    marker.parent.mkdir(parents=True)
    marker.write_text("")

    def succeeded() -> list[dict[str, object]]:
        result = core.run(
            core.eventflow, "runs", "pipeline.yaml", "--json", "--status", "succeeded", cwd=project
        )
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout))

    (run,) = wait_until(succeeded, timeout=60)
    assert run["rule"] == "load"
    shown = core.run(
        core.eventflow, "runs", "pipeline.yaml", str(run["run_id"]), "--json", cwd=project
    )
    assert shown.returncode == 0, shown.stderr
    stdout = json.loads(shown.stdout)["logs"]["stdout"]
    assert stdout == f"fired the user {project / 'sensors' / '__init__.py'}\n"
    assert started.poll() is None


def test_core_install_refuses_http_naming_the_extra(core: Venv, project: Path) -> None:
    """``eventflow run --http`` without the ``http`` extra exits non-zero with a line naming
    ``eventflow-orchestrator[http]``, and no traceback."""
    result = core.run(core.eventflow, "run", "--http", "127.0.0.1:0", "pipeline.yaml", cwd=project)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 2
    [line] = result.stderr.splitlines()  # one line, no usage text around it
    assert f"{DISTRIBUTION}[http]" in line
    assert "eventflow run --http needs starlette and uvicorn, which are not installed" in line


@pytest.mark.parametrize("command", ["validate", "run"])
def test_core_install_refuses_each_extra_at_its_line(
    core: Venv, project: Path, command: str
) -> None:
    """``validate`` and ``run`` of a pipeline naming a feature of every extra report one line
    per feature, at its line, with the extra to install, and no traceback."""
    (project / "extras.yaml").write_text(EXTRAS_PIPELINE)
    result = core.run(core.eventflow, command, "extras.yaml", cwd=project)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    problems = result.stderr.splitlines()
    assert problems[-1] == f"{len(EXTRA_LINES)} problem(s) in extras.yaml"
    for extra, line in EXTRA_LINES.items():
        (found,) = [p for p in problems if f"'{DISTRIBUTION}[{extra}]'" in p]
        assert found.startswith(f"extras.yaml:{line}: "), found
        assert "which is not installed" in found or "which are not installed" in found
