"""The lineage graph of a pipeline: sensors -> datasets -> rules -> produced datasets.

The graph falls out of the declarations: a dataset is announced by its sensor (or produced
by a rule), a rule consumes the datasets of its ``when`` and may produce one. It renders as
Mermaid (for Markdown, GitHub, the docs) or Graphviz DOT (``dot -Tsvg``), optionally with
live state from the store: the last run's status per rule and its open partial matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from eventflow.pipeline import CompiledPipeline
from eventflow.types import Store

Kind = Literal["sensor", "dataset", "rule"]
Format = Literal["mermaid", "dot"]


@dataclass(frozen=True, slots=True)
class Node:
    kind: Kind
    name: str
    detail: str = ""
    """A second line under the name: the sensor's type, the rule's state."""

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class RuleState:
    """What ``--state`` shows of a rule."""

    last_run: str | None
    """The status of the newest run, None before the first."""
    open: int
    """Open partial matches."""

    def describe(self) -> str:
        return f"last run: {self.last_run or 'none'} · open: {self.open}"


@dataclass(slots=True)
class Graph:
    """Nodes in declaration order, edges ``(from id, to id)`` in declaration order."""

    name: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def render(self, fmt: Format) -> str:
        return to_mermaid(self) if fmt == "mermaid" else to_dot(self)


def build(pipeline: CompiledPipeline, state: dict[str, RuleState] | None = None) -> Graph:
    """The graph of ``pipeline``; with ``state``, rules carry their live state."""
    graph = Graph(pipeline.name)
    for sensor in pipeline.sensors.values():
        graph.nodes.append(Node("sensor", sensor.name, sensor.type))
    for ds in pipeline.datasets.values():
        graph.nodes.append(Node("dataset", ds.name))
        if ds.sensor in pipeline.sensors:
            graph.edges.append((f"sensor:{ds.sensor}", f"dataset:{ds.name}"))
    for rule in pipeline.rules.values():
        detail = state[rule.name].describe() if state and rule.name in state else ""
        graph.nodes.append(Node("rule", rule.name, detail))
        for ds_name in rule.spec.datasets:
            graph.edges.append((f"dataset:{ds_name}", f"rule:{rule.name}"))
        if rule.produces:
            graph.edges.append((f"rule:{rule.name}", f"dataset:{rule.produces}"))
    known = {n.id for n in graph.nodes}
    for a, b in graph.edges:  # a produced dataset that no rule consumes is still a node
        for end in (a, b):
            if end not in known:
                graph.nodes.append(Node("dataset", end.partition(":")[2]))
                known.add(end)
    return graph


async def rule_states(pipeline: CompiledPipeline, store: Store) -> dict[str, RuleState]:
    """Each rule's newest run status and open partial matches, read from ``store``."""
    counts = await store.match_counts()
    states: dict[str, RuleState] = {}
    for name in pipeline.rules:
        runs = await store.list_runs(rule=name, limit=1)
        states[name] = RuleState(
            runs[0].status if runs else None, counts.get(name, {}).get("open", 0)
        )
    return states


_FILLS: dict[Kind, str] = {"sensor": "#e8f0fe", "dataset": "#fef7e0", "rule": "#e6f4ea"}

# --- Mermaid -------------------------------------------------------------------------------

_MERMAID_SHAPES: dict[Kind, tuple[str, str]] = {
    "sensor": ("[[", "]]"),
    "dataset": ("[(", ")]"),
    "rule": ("{{", "}}"),
}


def to_mermaid(graph: Graph) -> str:
    """A Mermaid ``flowchart LR``: sensors as subroutines, datasets as cylinders, rules as
    hexagons."""
    lines = ["flowchart LR"]
    for node in graph.nodes:
        left, right = _MERMAID_SHAPES[node.kind]
        label = node.name + (f"<br/>{node.detail}" if node.detail else "")
        lines.append(f'    {_mermaid_id(node.id)}{left}"{_mermaid_text(label)}"{right}')
    for a, b in graph.edges:
        lines.append(f"    {_mermaid_id(a)} --> {_mermaid_id(b)}")
    for kind, fill in _FILLS.items():
        members = [_mermaid_id(n.id) for n in graph.nodes if n.kind == kind]
        if members:
            lines.append(f"    classDef {kind} fill:{fill}")
            lines.append(f"    class {','.join(members)} {kind}")
    return "\n".join(lines) + "\n"


def _mermaid_id(node_id: str) -> str:
    """A Mermaid node id: letters, digits and ``_`` only; other characters as ``_xx_``."""
    kind, _, name = node_id.partition(":")
    return kind + "_" + re.sub(r"[^A-Za-z0-9]", lambda m: f"_{ord(m.group()):x}_", name)


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


# --- Graphviz DOT --------------------------------------------------------------------------

_DOT_SHAPES: dict[Kind, str] = {
    "sensor": "shape=cds, style=filled",
    "dataset": "shape=cylinder, style=filled",
    "rule": 'shape=box, style="rounded,filled"',
}


def to_dot(graph: Graph) -> str:
    """A Graphviz ``digraph`` laid out left to right."""
    lines = [
        f"digraph {_dot_quote(graph.name)} {{",
        "    rankdir=LR;",
        '    node [fontname="Helvetica"];',
    ]
    for node in graph.nodes:
        label = node.name + (f"\n{node.detail}" if node.detail else "")
        lines.append(
            f"    {_dot_quote(node.id)} [label={_dot_quote(label)}, {_DOT_SHAPES[node.kind]},"
            f' fillcolor="{_FILLS[node.kind]}"];'
        )
    for a, b in graph.edges:
        lines.append(f"    {_dot_quote(a)} -> {_dot_quote(b)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
