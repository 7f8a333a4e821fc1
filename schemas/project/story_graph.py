"""A project's stories and rules as one directed graph, as `rasa visualize` draws them.

Every step becomes a node (a user turn, a bot action, a slot set, a form entered or ended, a
checkpoint). Nodes are merged the Rasa way: a node's fingerprint is its own label plus the
labels of the up to `max_history` nodes before it on the path, and nodes with equal
fingerprints are one node, so stories sharing a prefix share one path. START, END, the rule
start nodes and checkpoints are anchors: one node each, whatever came before them.

Rules are drawn beside the stories: a rule that applies only at the start of a conversation
starts at START; every other rule starts at a RULE node labelled with its condition (one RULE
node leads to at most RULE_FAN different first steps; more rules get another RULE node, so the
drawing does not grow too wide). A rule is a fragment of a conversation, so it does not run into
END. Nodes and edges remember which stories and rules pass through them (`origin` says whether
stories, rules or both do).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from schemas.project._graph_dot import to_dot, tooltip
from schemas.project.loader import Project
from schemas.project.nlu import Example
from schemas.project.stories import (
    ActionStep,
    CheckpointStep,
    LoopStep,
    OrStep,
    SlotStep,
    Step,
    Story,
    UserStep,
)

__all__ = [
    "GraphEdge",
    "GraphNode",
    "NodeKind",
    "Origin",
    "StoryGraph",
    "StoryRef",
    "build_story_graph",
    "to_dot",
    "tooltip",
]

NodeKind = Literal["start", "end", "rule_start", "user", "action", "slot", "form", "checkpoint"]
Origin = Literal["story", "rule", "both"]
WRAP = 28
RULE_FAN = 5
MAX_TEXT = 90
MAX_VALUE = 40


@dataclass(frozen=True, slots=True)
class StoryRef:
    """A story or rule drawn in the graph; `key` ("story: name", "rule: name") is unique."""

    key: str
    name: str
    kind: Literal["story", "rule"]


@dataclass(frozen=True, slots=True)
class GraphNode:
    """A node: `stories` holds the keys of the stories and rules passing through it."""

    id: str
    kind: NodeKind
    label: str
    origin: Origin
    stories: tuple[str, ...]
    detail: str = ""


@dataclass(frozen=True, slots=True)
class GraphEdge:
    """An edge: `stories` holds the keys of the stories and rules taking it."""

    id: str
    source: str
    target: str
    origin: Origin
    stories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoryGraph:
    """The merged graph of a project's stories (and rules); ids and order are deterministic."""

    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    stories: tuple[StoryRef, ...]

    def node(self, node_id: str) -> GraphNode:
        """The node with this id (KeyError when there is none)."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def count(self, kind: Literal["story", "rule"]) -> int:
        """How many stories (or rules) the graph shows."""
        return sum(1 for ref in self.stories if ref.kind == kind)


def build_story_graph(
    project: Project, *, max_history: int = 2, nlu: bool = False, include_rules: bool = True
) -> StoryGraph:
    """The graph of the project's stories and (unless `include_rules` is off) its rules.

    With `nlu`, user nodes show the first training example of their intent (preferring one
    with the same entities) instead of the intent name; merging is the same either way.
    """
    if max_history < 0:
        raise ValueError(f"max_history must be 0 or more, not {max_history}")
    examples: dict[str, list[Example]] = {}
    if nlu:
        for example in project.nlu.examples:
            examples.setdefault(example.intent, []).append(example)
    builder = _Builder(max_history, examples if nlu else None)
    items: list[Story] = list(project.stories) + (list(project.rules) if include_rules else [])
    for ref, story in zip(_refs(items), items, strict=True):
        builder.walk(story, ref)
    return builder.graph()


def _refs(items: Iterable[Story]) -> list[StoryRef]:
    refs: list[StoryRef] = []
    seen: dict[str, int] = {}
    for story in items:
        kind: Literal["story", "rule"] = "rule" if story.kind == "rule" else "story"
        base = f"{kind}: {story.name}"
        seen[base] = seen.get(base, 0) + 1
        key = base if seen[base] == 1 else f"{base} #{seen[base]}"
        refs.append(StoryRef(key, story.name, kind))
    return refs


@dataclass
class _Node:
    id: str
    kind: NodeKind
    label: str
    detail: str
    token: str
    stories: list[str]
    kinds: set[str]


@dataclass
class _Edge:
    id: str
    stories: list[str]
    kinds: set[str]


@dataclass(frozen=True, slots=True)
class _Item:
    kind: NodeKind
    token: str
    label: str
    detail: str


class _Builder:
    def __init__(self, max_history: int, examples: dict[str, list[Example]] | None) -> None:
        self._max_history = max_history
        self._examples = examples
        self._ids: dict[tuple[str, ...], str] = {}
        self._nodes: dict[str, _Node] = {}
        self._edges: dict[tuple[str, str], _Edge] = {}
        self._refs: list[StoryRef] = []
        self._fans: dict[str, list[set[str]]] = {}
        self._start = self._anchor(_Item("start", "START", "START", "conversation start"))
        self._end = self._anchor(_Item("end", "END", "END", "end of the story"))

    def walk(self, story: Story, ref: StoryRef) -> None:
        self._refs.append(ref)
        loop: str | None = None
        steps = list(story.steps)
        first = steps[0] if steps else None
        if isinstance(first, CheckpointStep):
            start = self._anchor(_checkpoint(first))
            steps.pop(0)
        elif story.kind == "rule" and (story.condition or not story.conversation_start):
            lines = ["RULE"] + (["at conversation start"] if story.conversation_start else [])
            for cond in story.condition:
                if isinstance(cond, LoopStep):
                    loop = cond.name
                    lines.append(f"if form {loop} active" if loop else "if no form active")
                else:
                    label = _describe(cond, loop, None).label
                    lines += [f"if {line}" for line in label.split("\n")]
            start = self._rule_anchor("\n".join(lines), _first_token(steps, loop))
        else:
            start = self._start
        self._touch(start, ref)
        history = [self._token(start)]
        frontier = [start]
        for step in steps:
            if isinstance(step, CheckpointStep):
                anchor = self._anchor(_checkpoint(step))
                self._connect(frontier, anchor, ref)
                frontier, history = [anchor], [self._token(anchor)]
                continue
            if isinstance(step, LoopStep):
                item = _describe(step, loop, None)
                loop = step.name
            elif isinstance(step, OrStep):
                if not step.alternatives:
                    continue
                alternatives = [_describe(alt, loop, self._examples) for alt in step.alternatives]
                placed = (self._place(alt, history, ref) for alt in alternatives)
                targets = list(dict.fromkeys(placed))
                for target in targets:
                    self._connect(frontier, target, ref)
                frontier = targets
                history.append("or:" + "|".join(f"{a.kind}:{a.token}" for a in alternatives))
                continue
            else:
                item = _describe(step, loop, self._examples)
            target = self._place(item, history, ref)
            self._connect(frontier, target, ref)
            frontier = [target]
            history.append(f"{item.kind}:{item.token}")
        # A rule is a fragment: the conversation goes on (listening) after it, so no END.
        if story.kind != "rule" and not (steps and isinstance(steps[-1], CheckpointStep)):
            self._connect(frontier, self._end, ref)

    def graph(self) -> StoryGraph:
        nodes = tuple(
            GraphNode(n.id, n.kind, n.label, _origin(n.kinds), tuple(n.stories), n.detail)
            for n in self._nodes.values()
            if n.kind != "end" or n.stories
        )
        edges = tuple(
            GraphEdge(e.id, source, target, _origin(e.kinds), tuple(e.stories))
            for (source, target), e in self._edges.items()
        )
        return StoryGraph(nodes, edges, tuple(self._refs))

    def _token(self, node_id: str) -> str:
        return self._nodes[node_id].token

    def _rule_anchor(self, text: str, first: str) -> str:
        # One RULE node per condition would fan out into every rule: past RULE_FAN different
        # first steps, another RULE node (drawn below the first) takes the next ones.
        copies = self._fans.setdefault(text, [])
        index = next((i for i, c in enumerate(copies) if first in c), None)
        if index is None:
            index = next((i for i, c in enumerate(copies) if len(c) < RULE_FAN), len(copies))
            if index == len(copies):
                copies.append(set())
            copies[index].add(first)
        token = text if index == 0 else f"{text}#{index + 1}"
        return self._anchor(_Item("rule_start", token, text, "rule start"))

    def _anchor(self, item: _Item) -> str:
        return self._node((f"{item.kind}:{item.token}",), item)

    def _place(self, item: _Item, history: list[str], ref: StoryRef) -> str:
        previous = history[-self._max_history :] if self._max_history else []
        node_id = self._node((*previous, f"{item.kind}:{item.token}"), item)
        self._touch(node_id, ref)
        return node_id

    def _node(self, fingerprint: tuple[str, ...], item: _Item) -> str:
        node_id = self._ids.get(fingerprint)
        if node_id is None:
            node_id = self._ids[fingerprint] = f"n{len(self._nodes)}"
            self._nodes[node_id] = _Node(
                node_id, item.kind, item.label, item.detail, fingerprint[-1], [], set()
            )
        return node_id

    def _touch(self, node_id: str, ref: StoryRef) -> None:
        node = self._nodes[node_id]
        if ref.key not in node.stories:
            node.stories.append(ref.key)
        node.kinds.add(ref.kind)

    def _connect(self, sources: list[str], target: str, ref: StoryRef) -> None:
        self._touch(target, ref)
        for source in sources:
            edge = self._edges.get((source, target))
            if edge is None:
                edge = self._edges[(source, target)] = _Edge(f"e{len(self._edges)}", [], set())
            if ref.key not in edge.stories:
                edge.stories.append(ref.key)
            edge.kinds.add(ref.kind)


def _origin(kinds: set[str]) -> Origin:
    if kinds == {"rule"}:
        return "rule"
    return "both" if "rule" in kinds else "story"


def _first_token(steps: list[Step], loop: str | None) -> str:
    if not steps:
        return ""
    step = steps[0]
    if isinstance(step, CheckpointStep):
        items = [_checkpoint(step)]
    elif isinstance(step, OrStep):
        items = [_describe(alt, loop, None) for alt in step.alternatives]
    else:
        items = [_describe(step, loop, None)]
    return "|".join(f"{item.kind}:{item.token}" for item in items)


def _checkpoint(step: CheckpointStep) -> _Item:
    return _Item("checkpoint", step.name, f"checkpoint {step.name}", f"checkpoint {step.name}")


def _describe(
    step: UserStep | ActionStep | SlotStep | LoopStep,
    loop: str | None,
    examples: dict[str, list[Example]] | None,
) -> _Item:
    if isinstance(step, UserStep):
        return _user(step, examples)
    if isinstance(step, ActionStep):
        if step.name is not None:
            return _Item("action", step.name, step.name, f"action {step.name}")
        text = step.text or ""
        return _Item("action", f"text:{text}", _quoted(text), "bot says")
    if isinstance(step, SlotStep):
        parts = [
            f"{name} set" if name in step.any_value else f"{name}={_value(value)}"
            for name, value in step.slots
        ]
        token = ",".join(parts)
        lines = [line for part in parts for line in textwrap.wrap(f"slot {part}", WRAP + 6)]
        return _Item("slot", token, "\n".join(lines), "slot_was_set")
    if step.name is not None:
        return _Item("form", f"{step.name} active", f"form {step.name} active", "active_loop")
    label = f"form {loop} ended" if loop else "form ended"
    return _Item("form", label, label, "active_loop: null")


def _user(step: UserStep, examples: dict[str, list[Example]] | None) -> _Item:
    entities = [
        name if value is None else f"{name}={_value(value)}" for name, value in step.entities
    ]
    if step.intent is None:
        text = step.text or ""
        return _Item("user", f"text:{text}", _quoted(text), "user says")
    token = step.intent + (f"{{{','.join(entities)}}}" if entities else "")
    detail = f"intent {step.intent}" + (f" ({', '.join(entities)})" if entities else "")
    example = _example(step, examples) if examples is not None else None
    if example is not None:
        return _Item("user", token, _quoted(example), detail)
    return _Item("user", token, "\n".join([step.intent, *entities]), detail)


def _example(step: UserStep, examples: dict[str, list[Example]]) -> str | None:
    candidates = examples.get(step.intent or "", [])
    wanted = {name for name, _ in step.entities}
    for example in candidates:
        if {entity.entity for entity in example.entities} == wanted:
            return example.text
    return candidates[0].text if candidates else None


def _quoted(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 1] + "…"
    return "\n".join(textwrap.wrap(f'"{text}"', WRAP)) or '""'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"
