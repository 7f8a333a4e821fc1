"""Story conflicts: the same conversation history followed by different bot actions.

Stories are expanded into linear paths (checkpoints followed, `or` branches taken), each
path into the states Rasa's featurizer sees before each action (previous action, the
latest user intent and entities right after a user turn, slots that influence the
conversation, the active loop). Two paths whose last `max_history` states are equal but
whose next actions differ conflict, as `rasa data validate stories` reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from schemas.project.domain import Domain
from schemas.project.problems import Level, Problem
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

MAX_PATHS = 5_000
START = "STORY_START"

State = tuple[str, str, frozenset[tuple[str, str]], str]


@dataclass(frozen=True, slots=True)
class PathStep:
    """A step on an expanded path, with the story it came from."""

    step: Step
    story: Story


def expand(stories: list[Story]) -> Iterator[list[PathStep]]:
    """Linear paths through the stories: checkpoints joined, `or` alternatives expanded."""
    by_start: dict[str, list[Story]] = {}
    for story in stories:
        first = story.steps[0] if story.steps else None
        key = first.name if isinstance(first, CheckpointStep) else START
        by_start.setdefault(key, []).append(story)
    produced = 0
    stack: list[tuple[list[PathStep], Story, int, frozenset[str]]] = [
        ([], story, 0, frozenset()) for story in reversed(by_start.get(START, []))
    ]
    while stack and produced < MAX_PATHS:
        path, story, index, visited = stack.pop()
        while index < len(story.steps):
            step = story.steps[index]
            if isinstance(step, OrStep) and step.alternatives:
                for alternative in reversed(step.alternatives[1:]):
                    stack.append(([*path, PathStep(alternative, story)], story, index + 1, visited))
                path = [*path, PathStep(step.alternatives[0], story)]
            elif not isinstance(step, CheckpointStep):
                path = [*path, PathStep(step, story)]
            index += 1
        last = story.steps[-1] if story.steps else None
        checkpoint = last.name if isinstance(last, CheckpointStep) else None
        continuations: list[Story] = []
        if checkpoint and len(story.steps) > 1 and checkpoint not in visited:
            continuations = by_start.get(checkpoint, [])
        if checkpoint and continuations:
            for follow in reversed(continuations):
                stack.append((path, follow, 1, visited | {checkpoint}))
        else:
            produced += 1
            yield path


def _states(path: list[PathStep], domain: Domain) -> Iterator[tuple[tuple[State, ...], PathStep]]:
    """(states before the action, the action step) for every action on the path."""
    prev_action = "action_listen"
    user = ""
    slots: dict[str, str] = {}
    loop = ""
    history: list[State] = []
    just_heard = False
    for item in path:
        step = item.step
        if isinstance(step, UserStep):
            if prev_action != "action_listen":
                history.append(_state("action_listen", "", slots, loop))
            intent = step.intent or (f"text:{step.text}" if step.text else "")
            used = _used_entities(step, domain)
            user = intent + ("[" + ",".join(sorted(used)) + "]" if used else "")
            prev_action = "action_listen"
            just_heard = True
        elif isinstance(step, SlotStep):
            for name, value in step.slots:
                slot = domain.slots.get(name)
                if slot is not None and slot.influence_conversation:
                    slots[name] = _featurized(slot.type, value)
        elif isinstance(step, LoopStep):
            loop = step.name or ""
        elif isinstance(step, ActionStep):
            name = step.name or f"text:{step.text}"
            state = _state(prev_action, user if just_heard else "", slots, loop)
            yield (*history, state), item
            history.append(state)
            prev_action, just_heard = name, False


def _state(prev: str, user: str, slots: dict[str, str], loop: str) -> State:
    return (prev, user, frozenset(slots.items()), loop)


def _used_entities(step: UserStep, domain: Domain) -> set[str]:
    names = {name for name, _ in step.entities} | {a.entity for a in step.annotations}
    intent = domain.intents.get(step.intent or "")
    if intent is None or intent.use_entities is True:
        return names - set(intent.ignore_entities if intent else ())
    if intent.use_entities is False:
        return set()
    return names & set(intent.use_entities)


def _featurized(slot_type: str, value: object) -> str:
    if slot_type in ("text", "list", "any"):
        return "set" if value not in (None, [], "") else "unset"
    return str(value)


def find_conflicts(stories: list[Story], domain: Domain, max_history: int) -> list[Problem]:
    """One error per pair of stories whose equal histories lead to different actions."""
    seen: dict[tuple[State, ...], tuple[str, PathStep]] = {}
    reported: set[tuple[str, str, str, str]] = set()
    problems = []
    for path in expand(stories):
        for states, item in _states(path, domain):
            key = states[-max_history:]
            action = _action_name(item)
            first = seen.setdefault(key, (action, item))
            if first[0] == action:
                continue
            other = first[1]
            pair = (other.story.name, action, item.story.name, first[0])
            if pair in reported:
                continue
            reported.add(pair)
            problems.append(
                Problem(
                    Level.ERROR,
                    item.step.source,
                    f"story conflict: `{item.story.name}` runs `{action}` here, but "
                    f"`{other.story.name}` runs `{first[0]}` ({other.step.source}) after the "
                    f"same {len(key)} turn(s): {_describe(key[-1])}",
                    "make the histories differ (a slot, an intent, a checkpoint) or make the "
                    "stories agree; the model cannot learn both",
                    "story-conflict",
                )
            )
    return problems


def _action_name(item: PathStep) -> str:
    step = item.step
    assert isinstance(step, ActionStep)
    return step.name or f"bot text {step.text!r}"


def _describe(state: State) -> str:
    prev, user, slots, loop = state
    parts = [f"previous action `{prev}`"]
    if user:
        parts.append(f"user `{user}`")
    if slots:
        parts.append("slots " + ", ".join(f"{k}={v}" for k, v in sorted(slots)))
    if loop:
        parts.append(f"active loop `{loop}`")
    return ", ".join(parts)
