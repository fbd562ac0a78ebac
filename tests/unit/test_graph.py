"""The lineage graph: golden Mermaid and DOT output, and DOT that a parser accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eventflow.config.loader import load_pipeline
from eventflow.graph import Graph, RuleState, build
from eventflow.pipeline import CompiledPipeline

PIPELINE = """
name: lake "prod"
sensors:
  landing: {type: directory, path: ./landing}
datasets:
  orders:     {sensor: landing, key: "orders/dt={dt}/_SUCCESS"}
  fx.rates:   {sensor: landing, key: "fx/dt={dt}/rates.csv"}
rules:
  daily-report:
    when: {all: [orders, fx.rates], by: [dt]}
    run: {command: [report, "{dt}"]}
    produces: report
  publish:
    when: {any: [report]}
    run: {command: [publish, "{dt}"]}
"""

MERMAID = """\
flowchart LR
    sensor_landing[["landing<br/>directory"]]
    dataset_orders[("orders")]
    dataset_fx_2e_rates[("fx.rates")]
    dataset_report[("report")]
    rule_daily_2d_report{{"daily-report<br/>last run: failed · open: 2"}}
    rule_publish{{"publish<br/>last run: none · open: 0"}}
    sensor_landing --> dataset_orders
    sensor_landing --> dataset_fx_2e_rates
    dataset_orders --> rule_daily_2d_report
    dataset_fx_2e_rates --> rule_daily_2d_report
    rule_daily_2d_report --> dataset_report
    dataset_report --> rule_publish
    classDef sensor fill:#e8f0fe
    class sensor_landing sensor
    classDef dataset fill:#fef7e0
    class dataset_orders,dataset_fx_2e_rates,dataset_report dataset
    classDef rule fill:#e6f4ea
    class rule_daily_2d_report,rule_publish rule
"""

DOT = """\
digraph "lake \\"prod\\"" {
    rankdir=LR;
    node [fontname="Helvetica"];
    "sensor:landing" [label="landing\\ndirectory", shape=cds, style=filled, fillcolor="#e8f0fe"];
    "dataset:orders" [label="orders", shape=cylinder, style=filled, fillcolor="#fef7e0"];
    "dataset:fx.rates" [label="fx.rates", shape=cylinder, style=filled, fillcolor="#fef7e0"];
    "dataset:report" [label="report", shape=cylinder, style=filled, fillcolor="#fef7e0"];
    "rule:daily-report" [label="daily-report", shape=box, style="rounded,filled", fillcolor="#e6f4ea"];
    "rule:publish" [label="publish", shape=box, style="rounded,filled", fillcolor="#e6f4ea"];
    "sensor:landing" -> "dataset:orders";
    "sensor:landing" -> "dataset:fx.rates";
    "dataset:orders" -> "rule:daily-report";
    "dataset:fx.rates" -> "rule:daily-report";
    "rule:daily-report" -> "dataset:report";
    "dataset:report" -> "rule:publish";
}
"""  # noqa: E501


@pytest.fixture
def pipeline(tmp_path: Path) -> CompiledPipeline:
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    return load_pipeline(tmp_path / "pipeline.yaml")


def test_mermaid_golden_with_state(pipeline: CompiledPipeline) -> None:
    """Mermaid: shapes per kind, escaped ids, live state under each rule's name."""
    state = {"daily-report": RuleState("failed", 2), "publish": RuleState(None, 0)}
    assert build(pipeline, state).render("mermaid") == MERMAID


def test_dot_golden(pipeline: CompiledPipeline) -> None:
    """DOT: quoted ids and labels (quotes in names escaped), edges in declaration order."""
    assert build(pipeline).render("dot") == DOT


# A minimal DOT reader: enough of the grammar (graphviz.org/doc/info/lang.html) to check
# that what we print is a digraph of node and edge statements with balanced quoting.
_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(->|[{}\[\];=,])|([A-Za-z_][A-Za-z0-9_.]*|#\w+))')


def parse_dot(text: str) -> tuple[set[str], list[tuple[str, str]]]:
    """Node ids and edges of a ``digraph``; raises ValueError on anything else."""
    tokens: list[str] = []
    pos = 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"unexpected text at {pos}: {text[pos : pos + 20]!r}")
        tokens.append(m.group(m.lastindex or 0))
        pos = m.end()
    if tokens[:1] != ["digraph"] or tokens[2] != "{" or tokens[-1] != "}":
        raise ValueError("not `digraph NAME { ... }`")
    nodes: set[str] = set()
    edges: list[tuple[str, str]] = []
    body = tokens[3:-1]
    statements: list[list[str]] = [[]]
    depth = 0
    for tok in body:
        depth += {"[": 1, "]": -1}.get(tok, 0)
        if depth < 0:
            raise ValueError("unbalanced ]")
        if tok == ";" and depth == 0:
            statements.append([])
        else:
            statements[-1].append(tok)
    for st in filter(None, statements):
        attrs = st[st.index("[") :] if "[" in st else []
        if attrs and (attrs[-1] != "]" or any(t in "{}" for t in attrs)):
            raise ValueError(f"bad attribute list {attrs}")
        head = st[: len(st) - len(attrs)]
        if len(head) == 3 and head[1] == "->":
            edges.append((head[0], head[2]))
        elif len(head) == 1 and head[0] not in ("node", "edge", "graph"):
            nodes.add(head[0])
        elif not (len(head) == 3 and head[1] == "=") and head[0] not in ("node", "edge", "graph"):
            raise ValueError(f"not a statement: {st}")
    return nodes, edges


def test_dot_parses_and_every_edge_joins_declared_nodes(pipeline: CompiledPipeline) -> None:
    """The DOT output is well formed and its edges only name declared nodes."""
    graph: Graph = build(pipeline, {"publish": RuleState("succeeded", 1)})
    nodes, edges = parse_dot(graph.render("dot"))
    assert len(nodes) == 6
    assert len(edges) == 6
    assert {end for edge in edges for end in edge} <= nodes


def test_the_dot_reader_rejects_broken_input() -> None:
    """The structural check is not vacuous: an unclosed quote or bracket fails."""
    with pytest.raises(ValueError, match="unexpected text"):
        parse_dot('digraph "g" { "a [label="x"]; }')
    with pytest.raises(ValueError, match="bad attribute list"):
        parse_dot('digraph "g" { "a" [label="x"; }')
