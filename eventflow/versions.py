"""Pipeline versions: a stable content hash of the compiled pipeline, and one per rule.

The *definition* of a pipeline is its compiled form as canonical JSON: every sensor,
dataset, rule and publisher after validation (plugin defaults filled in, durations
normalised), keys sorted. Formatting, comments, key order and the settings that do not
change what fires or what a run does (``state``, ``engine``, ``server``, ``environments``,
``migrations``, the ``renamed_from`` declarations) are not part of it. A value that came
from an environment variable enters as the reference written in the file (``${NAME}``),
never as the value: the definition is kept in the store, and secrets reach the config
that way.

- The **pipeline version** is the first 12 hex digits of the SHA-256 of the definition.
- The **rule version** hashes one rule's definition (not its name: a rename keeps it)
  with the datasets it reads and produces and their sensors: it changes exactly when
  something that rule depends on changes. Runs (``pipeline_version``), completion events
  (the CloudEvents extension attribute ``pipelineversion``) and OpenLineage events carry
  the version of the rule that fired them; an ``on_deadline`` alert carries its rule's.

Where the file is in a git work tree, a start also records the commit and whether the
tree is dirty (:func:`git_info`).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from eventflow.events import JSON

if TYPE_CHECKING:
    from eventflow.pipeline import CompiledPipeline

HASH_LENGTH = 12
"""Hex digits of a version: 48 bits, collision-free for any realistic history."""
_MIN_BARE_SECRET = 4


@dataclass(frozen=True)
class PipelineVersion:
    """The version of a compiled pipeline and of each of its rules."""

    id: str
    rules: Mapping[str, str]
    definition: Mapping[str, JSON]

    def rule(self, name: str) -> str:
        """The version of rule ``name`` (an alert or a hook, ``RULE:on_deadline``,
        ``RULE:on_failure``, ``RULE:on_missed``, has its rule's); the pipeline version for a
        name that is no rule."""
        base = name.partition(":")[0]
        return self.rules.get(base, self.id)


def digest(value: Any) -> str:
    """The version hash of a JSON value: canonical (sorted keys, compact) SHA-256, cut."""
    return hashlib.sha256(canonical_json(value)).hexdigest()[:HASH_LENGTH]


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def compute(pipeline: CompiledPipeline) -> PipelineVersion:
    """The version of ``pipeline`` (memoised as ``pipeline.version``)."""
    defn = definition(pipeline)
    return PipelineVersion(digest(defn), rule_versions(defn), defn)


def definition(pipeline: CompiledPipeline) -> dict[str, JSON]:
    """The canonical definition of ``pipeline`` (see the module docstring)."""
    raw = pipeline.raw
    out: dict[str, Any] = {
        "name": pipeline.name,
        "sensors": {n: _plugin(s.type, s.config) for n, s in pipeline.sensors.items()},
        "datasets": {
            n: d.model_dump(mode="json", exclude={"renamed_from"}) for n, d in raw.datasets.items()
        },
        "rules": {
            n: r.model_dump(mode="json", exclude={"renamed_from"}) for n, r in raw.rules.items()
        },
        "publish": [
            {"name": p.name, "types": list(p.types), **_plugin(p.type, p.config)}
            for p in pipeline.publishers
        ],
        "retention": raw.retention.model_dump(mode="json"),
    }
    masked: dict[str, JSON] = _mask(out, pipeline.hidden)
    return masked


def rule_versions(defn: Mapping[str, Any]) -> dict[str, str]:
    """The version of every rule of a definition."""
    return {name: digest(rule_closure(defn, name)) for name in defn.get("rules", {})}


def rule_closure(defn: Mapping[str, Any], name: str) -> dict[str, Any]:
    """What rule ``name``'s version hashes: its definition, the datasets it reads and
    produces, and the sensors of those datasets."""
    rule = defn["rules"][name]
    datasets: dict[str, Any] = defn.get("datasets", {})
    names = set(_leaf_datasets(rule.get("when", {})))
    if rule.get("produces"):
        names.add(rule["produces"])
    used = {d: datasets[d] for d in sorted(names) if d in datasets}
    sensors = defn.get("sensors", {})
    wanted = {d["sensor"] for d in used.values()}
    return {
        "rule": rule,
        "datasets": used,
        "sensors": {s: sensors[s] for s in sorted(wanted) if s in sensors},
    }


def _leaf_datasets(node: Any) -> list[str]:
    """Every dataset named in a dumped ``when`` condition, nested ones included."""
    out: list[str] = []
    if isinstance(node, str):
        out.append(node)
    elif isinstance(node, list):
        for item in node:
            out.extend(_leaf_datasets(item))
    elif isinstance(node, dict):
        if isinstance(node.get("dataset"), str):
            out.append(node["dataset"])
        for key in ("all", "any", "of"):
            if node.get(key) is not None:
                out.extend(_leaf_datasets(node[key]))
    return out


def _plugin(type_: str, config: Any) -> dict[str, Any]:
    dump = getattr(config, "model_dump", None)
    body = dump(mode="json") if callable(dump) else {"repr": repr(config)}
    return {"type": type_, "config": body}


def _mask(value: Any, hidden: Mapping[str, str]) -> Any:
    """``value`` with every environment variable's value replaced by its reference."""
    if not hidden:
        return value
    if isinstance(value, str):
        for secret in sorted(hidden, key=len, reverse=True):
            if value == secret or (len(secret) >= _MIN_BARE_SECRET and secret in value):
                value = value.replace(secret, hidden[secret])
        return value
    if isinstance(value, list):
        return [_mask(v, hidden) for v in value]
    if isinstance(value, dict):
        return {k: _mask(v, hidden) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class GitInfo:
    commit: str | None
    dirty: bool | None


def git_info(file: Path) -> GitInfo:
    """The commit of the git work tree holding ``file`` and whether the tree has changes
    (tracked files modified, or the file itself not tracked); ``None`` outside git."""
    where = str(file.parent)
    commit = _git(where, "rev-parse", "HEAD")
    if commit is None:
        return GitInfo(None, None)
    status = _git(where, "status", "--porcelain", "--untracked-files=no")
    tracked = _git(where, "ls-files", "--error-unmatch", file.name)
    dirty = bool(status) or tracked is None
    return GitInfo(commit, dirty)


def _git(where: str, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", where, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def worker_name() -> str:
    """``host:pid``: which process started a version."""
    return f"{socket.gethostname()}:{os.getpid()}"
