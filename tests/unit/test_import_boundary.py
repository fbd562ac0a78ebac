"""The core imports no transport library and no plugin; plugins import only the plugin API."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import eventflow

ROOT = Path(__file__).resolve().parents[2]

TRANSPORTS = ("aiokafka", "boto3", "botocore", "aiomqtt", "paho", "psycopg", "uvicorn",
              "starlette", "openlineage", "watchdog.observers", "eventflow_sensors")  # fmt: skip
"""Top-level modules (and ``watchdog.observers``) the core must not load."""

EXTRA_MODULES = {
    "eventflow.store.postgres": {"psycopg"},
    "eventflow.store._postgres_ops": {"psycopg"},
    "eventflow.server.app": {"starlette", "uvicorn"},
    "eventflow.server.api": {"starlette"},
    "eventflow.server.api_checks": {"starlette"},
    "eventflow.server.api_deadletters": {"starlette"},
    "eventflow.server.api_pauses": {"starlette"},
    "eventflow.server.api_versions": {"starlette"},
    "eventflow.server.backfills_api": {"starlette"},
    "eventflow.server.auth": {"starlette"},
    "eventflow.server.guard": {"starlette"},
    "eventflow.server.protocol": {"uvicorn"},
}
"""Core modules behind an extra (the PostgreSQL store, the HTTP server): each may load its
extra's libraries and nothing else of :data:`TRANSPORTS`; nothing else imports them at module
level."""

PROBE = """
import importlib, json, sys
names = json.loads(sys.argv[1])
for name in names:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules
                if any(m == t or m.startswith(t + ".") for t in json.loads(sys.argv[2])))
print(json.dumps(loaded))
"""


def core_modules() -> list[str]:
    found = [
        m.name
        for m in pkgutil.walk_packages(eventflow.__path__, "eventflow.")
        if not m.ispkg and m.name != "eventflow.__main__"  # that one runs the CLI
    ]
    return sorted({"eventflow", *found})


def loaded_by(names: list[str]) -> list[str]:
    """The transport modules a fresh interpreter has loaded after importing ``names``."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(names), json.dumps(TRANSPORTS)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return list(json.loads(out.stdout))


def tops(modules: list[str]) -> set[str]:
    return {next(t for t in TRANSPORTS if m == t or m.startswith(t + ".")) for m in modules}


def test_core_modules_load_no_transport_library_and_no_plugin() -> None:
    """Importing every core module outside the extras' own loads none of the transports."""
    plain = [m for m in core_modules() if m not in EXTRA_MODULES]
    loaded = loaded_by(plain)
    if loaded:  # name the module that pulled them in
        culprits = {m: sorted(tops(found)) for m in plain if (found := loaded_by([m]))}
        raise AssertionError(f"core modules load transport libraries: {culprits}")


def test_modules_behind_an_extra_load_only_their_extra() -> None:
    """The PostgreSQL store and the HTTP server load their own extra's libraries only."""
    for name, allowed in EXTRA_MODULES.items():
        assert tops(loaded_by([name])) <= allowed, name


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import in a file, at any depth."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
    return out


def test_plugins_import_only_the_plugin_api_from_the_core() -> None:
    """Every module under sensors/ imports from eventflow only ``eventflow.plugin``."""
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted((ROOT / "sensors").rglob("*.py"))
        for line, module in imports_of(path)
        if module.split(".")[0] == "eventflow" and module != "eventflow.plugin"
    ]
    assert not wrong, "plugins must import eventflow.plugin only:\n" + "\n".join(wrong)


def test_the_core_never_imports_a_plugin() -> None:
    """No module under eventflow/ imports eventflow_sensors (integrations depend on the core)."""
    wrong = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / "eventflow").rglob("*.py"))
        for line, module in imports_of(path)
        if module.split(".")[0] in ("eventflow_sensors", "sensors")
    ]
    assert not wrong, wrong
