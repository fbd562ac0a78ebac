"""Log event names are stable snake_case and every one is documented."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


def _is_logger_method(func: ast.expr) -> bool:
    """``log.info`` or ``(log.debug if quiet else log.info)``."""
    if isinstance(func, ast.IfExp):
        return _is_logger_method(func.body) and _is_logger_method(func.orelse)
    return isinstance(func, ast.Attribute) and func.attr in LEVELS


def log_event_names() -> dict[str, str]:
    """Every event name passed as the first argument of a logger call, with where it is."""
    names: dict[str, str] = {}
    paths = [*sorted((ROOT / "eventflow").rglob("*.py")), *sorted((ROOT / "sensors").rglob("*.py"))]
    for path in paths:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and _is_logger_method(node.func)
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.setdefault(node.args[0].value, f"{path.relative_to(ROOT)}:{node.lineno}")
    return names


def test_log_event_names_are_snake_case() -> None:
    """Event names are snake_case identifiers, not sentences."""
    for name, where in log_event_names().items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), f"{where}: {name!r}"


def test_every_log_event_is_documented() -> None:
    """docs/reference/logs.md lists every event name the code logs."""
    page = (ROOT / "docs/reference/logs.md").read_text()
    missing = {n: w for n, w in log_event_names().items() if f"`{n}`" not in page}
    assert not missing, f"undocumented log events: {missing}"
