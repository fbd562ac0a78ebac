"""A plugin that fails to import is explained: the missing library and its extra, the file
that shadows a package, or the real error; never a guess.

Each test installs a small real distribution (a ``.dist-info`` with entry points, and its
modules) into a temporary folder on ``sys.path``, as pip would lay it out.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventflow.config.loader import check_file
from eventflow.errors import EventflowError
from eventflow.extras import MissingExtraError, require
from eventflow.registry import PluginError, Registry, UnknownPluginError


@pytest.fixture(autouse=True)
def _forget_new_modules() -> Iterator[None]:
    """Modules the test imported from its temporary folders do not outlive it."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]
    importlib.invalidate_caches()


def install(site: Path, monkeypatch: pytest.MonkeyPatch, entry: str, files: dict[str, str]) -> None:
    """Lay out the distribution ``acme-plugins`` in ``site`` with the sensor entry point
    ``acme = ENTRY`` and ``files`` (path: source), and put ``site`` on ``sys.path``."""
    info = site / "acme_plugins-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[eventflow.sensors]\nacme = {entry}\n")
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    monkeypatch.syspath_prepend(str(site))


def failure(kind_registry: Registry[object]) -> EventflowError:
    """The error loading the ``acme`` plugin raises."""
    with pytest.raises(EventflowError) as caught:
        kind_registry.get("acme")
    return caught.value


def test_missing_library_names_the_extra_of_the_plugins_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin whose library is not installed says which, and installs the entry point's
    extra from the plugin's own distribution."""
    install(
        tmp_path,
        monkeypatch,
        "acme_sensor:Sensor [fast]",
        {"acme_sensor.py": "import acme_absent_library\nclass Sensor: ...\n"},
    )
    error = failure(Registry("sensor"))
    assert isinstance(error, MissingExtraError)
    assert (
        error.message == "the acme sensor plugin needs acme_absent_library, which is not installed"
    )
    assert error.hint == "pip install 'acme-plugins[fast]'"


def test_a_module_that_is_not_a_package_is_named_by_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's ``acme_lib.py`` standing where the plugin imports the package ``acme_lib``
    is named by its path, with the advice to rename it."""
    install(
        tmp_path / "site",
        monkeypatch,
        "acme_sensor:Sensor",
        {
            "acme_sensor.py": "from acme_lib.client import Client\nclass Sensor: ...\n",
            "acme_lib/__init__.py": "",
            "acme_lib/client.py": "class Client: ...\n",
        },
    )
    project = tmp_path / "project"
    project.mkdir()
    (project / "acme_lib.py").write_text("# the user's own module\n")
    monkeypatch.syspath_prepend(str(project))
    error = failure(Registry("sensor"))
    shadow = project / "acme_lib.py"
    assert f"`acme_lib` is {shadow}, not the installed package" in error.message
    assert "'acme_lib' is not a package" in error.message
    assert error.hint is not None
    assert error.hint.startswith(f"rename {shadow}")


def test_a_module_without_the_imported_name_is_named_by_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's module that shadows the library a plugin imports a name from ("cannot import
    name") is named by its path."""
    install(
        tmp_path / "site",
        monkeypatch,
        "acme_sensor:Sensor",
        {"acme_sensor.py": "from acme_lib import Client\nclass Sensor: ...\n"},
    )
    project = tmp_path / "project"
    (project / "acme_lib").mkdir(parents=True)
    (project / "acme_lib" / "__init__.py").write_text("# the user's own package\n")
    monkeypatch.syspath_prepend(str(project))
    error = failure(Registry("sensor"))
    shadow = project / "acme_lib" / "__init__.py"
    assert f"`acme_lib` is {shadow}, not the installed package" in error.message
    assert "cannot import name 'Client'" in error.message
    assert error.hint is not None
    assert error.hint.startswith(f"rename {shadow}")


def test_a_name_missing_from_an_installed_module_is_the_real_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name missing from a module of the standard library is reported as it is, without
    advice to rename a file that is not the user's."""
    install(
        tmp_path,
        monkeypatch,
        "acme_sensor:Sensor",
        {"acme_sensor.py": "from json import no_such_function\nclass Sensor: ...\n"},
    )
    error = failure(Registry("sensor"))
    assert error.message.startswith("the acme sensor plugin could not be imported: ImportError:")
    assert "cannot import name 'no_such_function' from 'json'" in error.message
    assert error.hint is None


def test_any_other_failure_is_the_real_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin module that raises while it is imported is reported with that error."""
    install(
        tmp_path,
        monkeypatch,
        "acme_sensor:Sensor",
        {"acme_sensor.py": "raise RuntimeError('the plugin is broken')\n"},
    )
    error = failure(Registry("sensor"))
    assert isinstance(error, PluginError)
    assert error.message == (
        "the acme sensor plugin could not be imported: RuntimeError: the plugin is broken"
    )


def test_an_entry_point_whose_module_is_gone_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry point naming a module its distribution does not have asks for a reinstall."""
    install(tmp_path, monkeypatch, "acme_gone.sensor:Sensor", {})
    error = failure(Registry("sensor"))
    assert "names the module 'acme_gone.sensor', which cannot be imported" in error.message
    assert error.hint == "reinstall it: pip install --force-reinstall 'acme-plugins'"


def test_an_extras_library_shadowed_by_a_users_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's ``psycopg.py`` where the ``postgres`` extra's library is expected is named by
    its path before anything imports it."""
    (tmp_path / "psycopg.py").write_text("# the user's own module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "psycopg", raising=False)
    with pytest.raises(MissingExtraError) as caught:
        require("postgres", "the postgresql store plugin")
    shadow = tmp_path / "psycopg.py"
    assert caught.value.message == (
        f"the postgresql store plugin needs psycopg, but `psycopg` is {shadow},"
        " not the installed package"
    )
    assert caught.value.hint is not None
    assert caught.value.hint.startswith(f"rename {shadow}")


def test_an_unknown_name_lists_the_known_ones() -> None:
    """Asking for a plugin nobody installed names those that are."""
    with pytest.raises(UnknownPluginError, match="no sensor plugin named 'nope'") as caught:
        Registry("sensor").get("nope")
    assert caught.value.hint is not None
    assert "directory" in caught.value.hint


def test_validate_reports_a_failing_plugin_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``validate`` reports a plugin that cannot be imported as a problem of the section that
    names it, with its line and the extra to install."""
    install(
        tmp_path / "site",
        monkeypatch,
        "acme_sensor:Sensor [fast]",
        {"acme_sensor.py": "import acme_absent_library\n"},
    )
    file = tmp_path / "pipeline.yaml"
    file.write_text(
        "sensors:\n"
        "  in: {type: acme}\n"
        "datasets:\n"
        "  d: {sensor: in, key: 'x/{k}'}\n"
        "rules:\n"
        "  r: {when: {any: [d], by: [k]}, run: {command: [echo, hi]}}\n"
    )
    problems = [str(p) for p in check_file(file, environ={})]
    assert problems == [
        f"{file}:2: sensors.in.type: the acme sensor plugin needs acme_absent_library, which is"
        " not installed (hint: pip install 'acme-plugins[fast]')"
    ]


def test_validate_reports_a_state_dsn_no_store_serves(tmp_path: Path) -> None:
    """``validate`` reports a ``state`` DSN whose scheme no store serves, at its line."""
    file = tmp_path / "pipeline.yaml"
    file.write_text(
        "state: mongodb://db/x\n"
        "sensors:\n"
        "  in: {type: directory, path: ./in}\n"
        "datasets:\n"
        "  d: {sensor: in, key: 'x/{k}'}\n"
        "rules:\n"
        "  r: {when: {any: [d], by: [k]}, run: {command: [echo, hi]}}\n"
    )
    (problem,) = check_file(file, environ={})
    assert problem.line == 1
    assert problem.path == ("state",)
    assert problem.message == "no state store for the DSN scheme 'mongodb' in 'mongodb://db/x'"
