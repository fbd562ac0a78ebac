"""pyproject.toml's explicit ``packages`` list matches the source tree, so the wheel holds
every module and installs no top-level ``sensors`` package."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _setuptools() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(config["tool"]["setuptools"])


def _folders() -> dict[str, Path]:
    """Each import name ``package-dir`` maps to a folder of the repository, by folder."""
    mapped = {"eventflow": "eventflow", **_setuptools().get("package-dir", {})}
    return {name: ROOT / folder for name, folder in mapped.items()}


def _import_name(path: Path) -> str:
    """The dotted name a folder of the repository installs as (``sensors/kafka`` is
    ``eventflow_sensors.kafka``)."""
    for name, folder in _folders().items():
        if path == folder or path.is_relative_to(folder):
            return ".".join([name, *path.relative_to(folder).parts])
    raise AssertionError(f"{path} is not under a folder that package-dir maps")


def test_every_package_folder_is_listed() -> None:
    """Every folder with an ``__init__.py`` under ``eventflow/`` and ``sensors/`` is in the
    ``packages`` list, under its import name."""
    listed = set(_setuptools()["packages"])
    found = {
        _import_name(init.parent): init.parent.relative_to(ROOT)
        for folder in _folders().values()
        for init in folder.rglob("__init__.py")
    }
    missing = {name: where for name, where in found.items() if name not in listed}
    assert not missing, "add to [tool.setuptools] packages in pyproject.toml: " + ", ".join(
        f'"{name}" (the folder {where}/)' for name, where in sorted(missing.items())
    )


def test_every_listed_package_is_a_folder() -> None:
    """Every name in the ``packages`` list is a folder of the repository (a renamed or
    deleted package is taken off the list)."""
    folders = _folders()
    absent = []
    for name in _setuptools()["packages"]:
        top, _, rest = name.partition(".")
        folder = folders[top].joinpath(*rest.split(".")) if rest else folders[top]
        if not folder.is_dir():
            absent.append(f"{name} ({folder.relative_to(ROOT)}/ does not exist)")
    assert not absent, "remove from [tool.setuptools] packages: " + ", ".join(absent)


def test_no_top_level_sensors_package_is_installed() -> None:
    """The plugins install as ``eventflow_sensors``: no listed package is named ``sensors``,
    which would shadow, or be shadowed by, a user's own ``sensors.py``."""
    tops = {name.partition(".")[0] for name in _setuptools()["packages"]}
    assert tops == {"eventflow", "eventflow_sensors"}


def test_every_entry_point_names_a_module_of_a_listed_package() -> None:
    """Each entry point's module is a file of the source tree inside a listed package."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(_setuptools()["packages"])
    folders = _folders()
    wrong = []
    for group, points in config["project"]["entry-points"].items():
        for name, value in points.items():
            module = value.split(":")[0].strip()
            package, _, leaf = module.rpartition(".")
            top, _, rest = package.partition(".")
            folder = folders[top].joinpath(*rest.split(".")) if rest else folders[top]
            if package not in listed or not (folder / f"{leaf}.py").is_file():
                wrong.append(f"{group}: {name} = {value}")
    assert not wrong, "entry points naming no module of the wheel: " + "; ".join(wrong)
