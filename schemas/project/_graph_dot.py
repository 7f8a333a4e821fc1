"""A story graph as Graphviz DOT: shapes and colours per node kind, rules dashed."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schemas.project.story_graph import GraphEdge, GraphNode, StoryGraph

FONT = "Helvetica,Arial,sans-serif"
RULE_COLOUR = "#c2410c"
STORY_COLOUR = "#475569"
MAX_TOOLTIP_STORIES = 12
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# kind: (shape, style, fill, border, font colour)
STYLES: dict[str, tuple[str, str, str, str, str]] = {
    "start": ("box", "rounded,filled", "#1e293b", "#1e293b", "#ffffff"),
    "end": ("box", "rounded,filled", "#64748b", "#64748b", "#ffffff"),
    "rule_start": ("box", "rounded,filled", "#ffedd5", RULE_COLOUR, "#7c2d12"),
    "user": ("box", "rounded,filled", "#dbeafe", "#2563eb", "#1e3a8a"),
    "action": ("ellipse", "filled", "#dcfce7", "#16a34a", "#14532d"),
    "slot": ("note", "filled", "#fef9c3", "#ca8a04", "#713f12"),
    "form": ("component", "filled", "#f3e8ff", "#9333ea", "#581c87"),
    "checkpoint": ("cds", "filled", "#ffe4e6", "#e11d48", "#881337"),
}


def quote(text: str) -> str:
    """`text` as a quoted DOT string: backslashes and quotes escaped, newlines as `\\n`."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = CONTROL.sub(" ", text)
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def tooltip(item: GraphNode | GraphEdge) -> str:
    """What hovering a node or edge says: what it is, and the stories and rules through it."""
    shown = list(item.stories[:MAX_TOOLTIP_STORIES])
    if len(item.stories) > MAX_TOOLTIP_STORIES:
        shown.append(f"… and {len(item.stories) - MAX_TOOLTIP_STORIES} more")
    head = getattr(item, "detail", "") or getattr(item, "label", "").replace("\n", " ")
    if not head:
        head = {"rule": "rule step", "story": "story step", "both": "story and rule step"}[
            item.origin
        ]
    return "\n".join([head, *shown])


def _attrs(pairs: dict[str, str]) -> str:
    return ", ".join(f"{key}={quote(value)}" for key, value in pairs.items())


def _node_line(node: GraphNode) -> str:
    shape, style, fill, border, font = STYLES[node.kind]
    attrs = {"id": node.id, "label": node.label, "shape": shape}
    if node.origin == "rule" and node.kind not in ("start", "end"):
        style += ",dashed"
        border, attrs["penwidth"] = RULE_COLOUR, "1.6"
    attrs.update(style=style, fillcolor=fill, color=border, fontcolor=font)
    attrs["tooltip"] = tooltip(node)
    return f"  {node.id} [{_attrs(attrs)}];"


def _edge_line(edge: GraphEdge) -> str:
    attrs = {"id": edge.id}
    if edge.origin == "rule":
        attrs.update(style="dashed", color=RULE_COLOUR, penwidth="1.3")
    else:
        attrs.update(color=STORY_COLOUR)
    attrs["tooltip"] = tooltip(edge)
    return f"  {edge.source} -> {edge.target} [{_attrs(attrs)}];"


def to_dot(graph: StoryGraph) -> str:
    """Graphviz DOT for the graph (top to bottom); the same graph always gives the same text.

    Parts of the graph that do not touch each other (rule fragments, mostly) are stacked one
    under the other with invisible edges, so many rules make the drawing taller, not wider.
    """
    lines = [
        "digraph story_graph {",
        f"  graph [rankdir=TB, nodesep=0.25, ranksep=0.35, pad=0.15, bgcolor=white,"
        f" fontname={quote(FONT)}];",
        f'  node [fontname={quote(FONT)}, fontsize=12, margin="0.12,0.04", height=0.36];',
        f"  edge [fontname={quote(FONT)}, fontsize=10, arrowsize=0.7];",
    ]
    lines += [_node_line(node) for node in graph.nodes]
    lines += [_edge_line(edge) for edge in graph.edges]
    sources = {edge.source for edge in graph.edges}
    previous: list[str] = []
    for part in _parts(graph):
        for sink in previous:
            lines.append(f"  {sink} -> {part[0]} [style=invis, weight=0];")
        previous = [n for n in part if n not in sources] or part[-1:]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _parts(graph: StoryGraph) -> list[list[str]]:
    parent = {node.id: node.id for node in graph.nodes}

    def root(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    order = {node.id: i for i, node in enumerate(graph.nodes)}.__getitem__
    for edge in graph.edges:
        a, b = root(edge.source), root(edge.target)
        if a != b:
            parent[max(a, b, key=order)] = min(a, b, key=order)
    parts: dict[str, list[str]] = {}
    for node in graph.nodes:
        parts.setdefault(root(node.id), []).append(node.id)
    return list(parts.values())
