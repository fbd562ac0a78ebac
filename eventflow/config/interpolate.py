"""Environment variables in pipeline files: ``${NAME}``, ``${NAME:-default}``, ``$${`` escapes.

Every string value (not key) is interpolated once, after YAML parsing. Secrets reach the
config this way, so a variable's value is never written into a message: the collector
masks it with the reference as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from eventflow.config.report import ConfigPath, Problems

_TOKEN = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)(?P<close>\})?")
_BODY = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?$", re.S)


def interpolate_tree(data: Any, environ: Mapping[str, str], problems: Problems) -> Any:
    """``data`` with every string value interpolated; unset variables are reported."""
    return _walk(data, (), environ, problems)


def _walk(value: Any, path: ConfigPath, environ: Mapping[str, str], problems: Problems) -> Any:
    if isinstance(value, str):
        return _string(value, path, environ, problems) if "${" in value else value
    if isinstance(value, list):
        return [_walk(v, (*path, i), environ, problems) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _walk(v, (*path, k), environ, problems) for k, v in value.items()}
    return value


def _string(text: str, path: ConfigPath, environ: Mapping[str, str], problems: Problems) -> str:
    failed = False

    def sub(m: re.Match[str]) -> str:
        nonlocal failed
        token = m.group(0)
        if token == "$${":
            return "${"
        body = _BODY.match(m.group("body"))
        if m.group("close") is None or body is None:
            failed = True
            problems.add(
                f"`{token}` is not a variable reference",
                path,
                hint="write ${NAME} or ${NAME:-default}, or $${ for a literal ${",
            )
            return token
        name, default = body.group("name"), body.group("default")
        if name in environ:
            value = environ[name]
            problems.hide(value, f"${{{name}}}")
            return value
        if default is not None:
            return default
        failed = True
        problems.add(
            f"environment variable {name} is not set",
            path,
            hint=f"export {name}=… or write ${{{name}:-default}}",
        )
        return ""

    out = _TOKEN.sub(sub, text)
    if failed:
        problems.mute(path)  # what would follow from the missing value is noise
    return out
