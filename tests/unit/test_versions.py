"""Pipeline versions: formatting never changes them, behaviour always does (property tests)."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventflow.config.loader import load_pipeline
from eventflow.pipeline import CompiledPipeline

DATASETS = ("orders", "stock", "prices")


@st.composite
def pipelines(draw: st.DrawFn) -> dict[str, Any]:
    """A valid pipeline: a directory sensor, 1-3 datasets keyed by dt, 1-3 rules."""
    names = draw(st.lists(st.sampled_from(DATASETS), min_size=1, max_size=3, unique=True))
    datasets = {n: {"sensor": "landing", "key": f"{n}/{{dt}}.csv"} for n in names}
    rules: dict[str, Any] = {}
    for i in range(draw(st.integers(1, 3))):
        inputs = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
        mode = draw(st.sampled_from(["all", "any"]))
        when: dict[str, Any] = {mode: inputs, "by": ["dt"]}
        if mode == "all" and draw(st.booleans()):
            when["within"] = draw(st.integers(1, 48)) * 60  # minutes, written in random units
        run: dict[str, Any] = {"command": ["echo", draw(st.sampled_from(["a", "b"])), "{dt}"]}
        run["retries"] = draw(st.integers(0, 3))
        if draw(st.booleans()):
            run["concurrency"] = draw(st.integers(1, 4))
        rules[f"r{i}"] = {"when": when, "run": run}
    return {
        "name": "prop",
        "sensors": {"landing": {"type": "directory", "path": "./landing"}},
        "datasets": datasets,
        "rules": rules,
        "publish": [{"type": "file", "path": "out/events.jsonl"}],
    }


def render(raw: dict[str, Any], rnd: random.Random) -> str:
    """``raw`` as YAML with random key order, flow or block style, comments and units."""
    tree = _shuffle(copy.deepcopy(raw), rnd)
    for rule in tree["rules"].values():
        minutes = rule["when"].get("within")
        if minutes is not None:
            units = [f"{minutes}m", f"{minutes * 60}s"] + (
                [f"{minutes // 60}h"] * (minutes % 60 == 0)
            )
            rule["when"]["within"] = rnd.choice(units)
    text = yaml.safe_dump(
        tree, sort_keys=False, default_flow_style=rnd.choice([None, False, True]), width=1000
    )
    out = []
    for line in text.splitlines():
        if rnd.random() < 0.3:
            out.append(" " * (len(line) - len(line.lstrip())) + "# a comment")
        out.append(line + ("  # trailing" if rnd.random() < 0.2 and not line.endswith(":") else ""))
    return "\n".join(out) + "\n"


def _shuffle(value: Any, rnd: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: _shuffle(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [_shuffle(v, rnd) for v in value]
    return value


def compile_text(tmp: Path, text: str, name: str) -> CompiledPipeline:
    (tmp / "landing").mkdir(exist_ok=True)
    path = tmp / f"{name}.yaml"
    path.write_text(text)
    return load_pipeline(path, environ={})


MUTATIONS = [
    "within",
    "by",
    "retries",
    "concurrency",
    "command",
    "dataset_key",
    "sensor_path",
    "publish_path",
    "rule_where",
    "on_update",
]


def mutate(raw: dict[str, Any], kind: str) -> set[str]:
    """Change one behaviour-relevant key of ``raw``; returns the rules it concerns."""
    rules = raw["rules"]
    first = sorted(rules)[0]
    rule = rules[first]
    if kind == "within":
        inputs = rule["when"].pop("any", None) or rule["when"].get("all")
        rule["when"]["all"] = inputs
        rule["when"]["within"] = (rule["when"].get("within") or 60) + 1
    elif kind == "by":
        for name in raw["datasets"]:
            raw["datasets"][name]["key"] = f"{name}/{{dt}}/{{hr}}.csv"
        for r in rules.values():
            r["when"]["by"] = ["dt", "hr"]
        return set(rules)
    elif kind == "retries":
        rule["run"]["retries"] += 1
    elif kind == "concurrency":
        rule["run"]["concurrency"] = rule["run"].get("concurrency", 0) + 5
    elif kind == "command":
        rule["run"]["command"] = [*rule["run"]["command"], "--more"]
    elif kind == "dataset_key":
        name = sorted(raw["datasets"])[0]
        raw["datasets"][name]["key"] = f"{name}/{{dt}}.csv.gz"
        return {n for n, r in rules.items() if name in _inputs(r)}
    elif kind == "sensor_path":
        raw["sensors"]["landing"]["include"] = ["*.csv"]
        return set(rules)
    elif kind == "publish_path":
        raw["publish"][0]["path"] = "out/other.jsonl"
        return set()
    elif kind == "rule_where":
        rule["where"] = "payload != null"
    elif kind == "on_update":
        rule["on_update"] = "ignore"
    return {first}


def _inputs(rule: dict[str, Any]) -> list[str]:
    return list(rule["when"].get("all") or rule["when"].get("any") or [])


SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(raw=pipelines(), seed=st.integers(0, 2**32 - 1))
def test_formatting_comments_and_key_order_keep_the_version(
    tmp_path: Path, raw: dict[str, Any], seed: int
) -> None:
    """The same pipeline written two ways (key order, flow or block style, comments,
    `2h` or `120m`) has the same pipeline version and the same rule versions."""
    rnd = random.Random(seed)
    one = compile_text(tmp_path, render(raw, rnd), "one")
    two = compile_text(tmp_path, render(raw, rnd), "two")
    assert one.version.id == two.version.id
    assert one.version.rules == two.version.rules


@SETTINGS
@given(raw=pipelines(), seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(MUTATIONS))
def test_every_behaviour_change_changes_the_version(
    tmp_path: Path, raw: dict[str, Any], seed: int, kind: str
) -> None:
    """Changing a behaviour-relevant key changes the pipeline version, and the version of
    exactly the rules that depend on what changed."""
    rnd = random.Random(seed)
    before = compile_text(tmp_path, render(raw, rnd), "before")
    changed = copy.deepcopy(raw)
    concerned = mutate(changed, kind)
    after = compile_text(tmp_path, render(changed, rnd), "after")
    assert before.version.id != after.version.id, kind
    moved = {r for r in before.version.rules if before.version.rules[r] != after.version.rules[r]}
    assert moved == concerned, kind


def test_settings_that_change_no_behaviour_keep_the_version(tmp_path: Path) -> None:
    """The state DSN, engine and server settings and environments are not part of the
    version; renamed_from and migrations are declarations, not behaviour."""
    base = {
        "name": "same",
        "sensors": {"landing": {"type": "directory", "path": "./landing"}},
        "datasets": {"orders": {"sensor": "landing", "key": "orders/{dt}.csv"}},
        "rules": {"r": {"when": {"all": ["orders"]}, "run": {"command": ["true"]}}},
    }
    other = copy.deepcopy(base)
    other["state"] = "sqlite:///elsewhere.db"
    other["engine"] = {"batch_size": 10}
    other["server"] = {"allowed_hosts": ["example.com"]}
    other["environments"] = {"staging": {"state": "sqlite:///staging.db"}}
    other["migrations"] = {"orphans": "keep"}
    rnd = random.Random(1)
    one = compile_text(tmp_path, render(base, rnd), "one")
    two = compile_text(tmp_path, render(other, rnd), "two")
    assert one.version == two.version


def test_a_renamed_rule_keeps_its_rule_version(tmp_path: Path) -> None:
    """The rule version hashes the rule's definition, not its name."""
    text = """
sensors: {landing: {type: directory, path: ./landing}}
datasets: {orders: {sensor: landing, key: "orders/{dt}.csv"}}
rules:
  NAME: {when: {all: [orders]}, run: {command: ["true"]}EXTRA}
"""
    one = compile_text(tmp_path, text.replace("NAME", "daily").replace("EXTRA", ""), "one")
    renamed = text.replace("NAME", "daily_v2").replace("EXTRA", ", renamed_from: daily")
    two = compile_text(tmp_path, renamed, "two")
    assert one.version.rules["daily"] == two.version.rules["daily_v2"]
    assert one.version.id != two.version.id


def test_values_from_the_environment_enter_as_their_reference(tmp_path: Path) -> None:
    """A secret given by `${NAME}` is in the definition as `${NAME}`, never as its value."""
    text = """
sensors: {landing: {type: directory, path: ./landing}}
datasets: {orders: {sensor: landing, key: "orders/{dt}.csv"}}
rules:
  r:
    when: {all: [orders]}
    run: {http: {url: "https://hooks.example.com/${HOOK_TOKEN}", method: POST}}
"""
    path = tmp_path / "p.yaml"
    (tmp_path / "landing").mkdir()
    path.write_text(text)
    one = load_pipeline(path, environ={"HOOK_TOKEN": "s3cr3t-value-1"})
    two = load_pipeline(path, environ={"HOOK_TOKEN": "s3cr3t-value-2"})
    assert "s3cr3t" not in repr(one.version.definition)
    assert "${HOOK_TOKEN}" in repr(one.version.definition)
    assert one.version.id == two.version.id
