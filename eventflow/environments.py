"""Environments: one pipeline file, several deployments (``eventflow run FILE --env NAME``).

An environment is an overlay declared in the file's ``environments:`` section, applied to
the parsed file before ``${NAME}`` references are resolved:

- ``values`` give ``${NAME}`` references their values (before the process environment);
- ``sensors`` lay keys over a sensor's section (another topic, bucket or host);
- ``publish`` replaces the publishers (staging never publishes to production's topics);
- ``state`` replaces the state store DSN.

Without ``--env`` (or ``EVENTFLOW_ENV``) the file runs as environment ``default``. The store
remembers the environment that first started it (:class:`~eventflow.version_records.
StoreIdentity`) and refuses to be started by another (:func:`check_identity`): a staging run
can never write into production's state by mistake.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from eventflow.config.report import Problems, did_you_mean
from eventflow.errors import StoreError
from eventflow.pipeline import DEFAULT_ENVIRONMENT
from eventflow.version_records import StoreIdentity

ENV_VARIABLE = "EVENTFLOW_ENV"
"""Names the environment when ``--env`` is not given (every command reads it)."""


def names(raw: Mapping[str, Any]) -> list[str]:
    """The environments a parsed file declares."""
    section = raw.get("environments")
    return [str(n) for n in section] if isinstance(section, Mapping) else []


def overlay(
    raw: dict[str, Any], env: str, environ: Mapping[str, str], problems: Problems
) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The parsed file with environment ``env`` laid over it, and the ``${NAME}`` values
    to resolve it with; None after reporting an unknown environment."""
    if env == DEFAULT_ENVIRONMENT and env not in names(raw):
        return raw, dict(environ)
    section = raw.get("environments")
    overlay_ = section.get(env) if isinstance(section, Mapping) else None
    if not isinstance(overlay_, Mapping):
        problems.add(
            f"no environment `{env}` in the file",
            ("environments",),
            hint=did_you_mean(env, names(raw), "environments"),
        )
        return None
    out = copy.deepcopy(raw)
    base = ("environments", env)
    values = overlay_.get("values")
    merged = dict(environ)
    if isinstance(values, Mapping):
        merged.update({str(k): str(v) for k, v in values.items()})
    if isinstance(overlay_.get("state"), str):
        out["state"] = overlay_["state"]
        _move_line(problems, (*base, "state"), ("state",))
    if isinstance(overlay_.get("publish"), list):
        out["publish"] = copy.deepcopy(overlay_["publish"])
        _move_lines(problems, (*base, "publish"), ("publish",))
    sensors = overlay_.get("sensors")
    if isinstance(sensors, Mapping):
        target = out.setdefault("sensors", {})
        for name, keys in sensors.items():
            if not isinstance(keys, Mapping):
                continue
            if not isinstance(target.get(name), dict):
                problems.add(
                    f"environment `{env}` overlays sensor `{name}`, which the file does not"
                    " declare",
                    (*base, "sensors", name),
                    hint=did_you_mean(str(name), list(target), "sensors"),
                )
                continue
            target[name] = {**target[name], **copy.deepcopy(dict(keys))}
            _move_lines(problems, (*base, "sensors", name), ("sensors", name))
    return out, merged


def _move_line(
    problems: Problems, source: tuple[str | int, ...], dest: tuple[str | int, ...]
) -> None:
    if source in problems.lines:
        problems.lines[dest] = problems.lines[source]


def _move_lines(
    problems: Problems, source: tuple[str | int, ...], dest: tuple[str | int, ...]
) -> None:
    """Problems in overlaid values are reported at the overlay's lines."""
    n = len(source)
    for path in [p for p in problems.lines if p[:n] == source]:
        problems.lines[(*dest, *path[n:])] = problems.lines[path]
        if path in problems.columns:
            problems.columns[(*dest, *path[n:])] = problems.columns[path]


class WrongEnvironment(StoreError):
    """The store was made by another environment than the one starting on it."""


def new_identity(environment: str, pipeline: str, now: datetime) -> StoreIdentity:
    """The identity of a store started for the first time."""
    return StoreIdentity(secrets.token_hex(16), environment, pipeline, now)


def check_identity(identity: StoreIdentity, environment: str, where: str) -> None:
    """Raise when the store belongs to another environment than the one starting."""
    if identity.environment != environment:
        raise WrongEnvironment(
            f"{where} belongs to environment `{identity.environment}` (store"
            f" {identity.short_id}, created {identity.created_at:%Y-%m-%d %H:%M} UTC); this"
            f" run is environment `{environment}`: refusing to write into"
            f" `{identity.environment}`'s state",
            hint=f"run with `--env {identity.environment}`, or give environment"
            f" `{environment}` its own `state:` under `environments.{environment}`",
        )
