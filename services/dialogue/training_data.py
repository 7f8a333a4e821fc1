"""Training trackers: a project's stories and rules as event sequences, as Rasa's generator makes.

Each story is cut into steps at its checkpoints; a step's `or` alternatives make one copy of the
step per alternative. Steps are joined end checkpoint to start checkpoint, from the steps that
start the conversation. Within a step, ``action_listen`` goes before every user turn (unless the
step already has one there) and after the step when it ends the story; a user turn's entities
fill the slots whose unconditional ``from_entity`` mapping they match. Training trackers carry no
session start: Rasa's start empty, and at prediction ``session_started`` cuts the history before
it, so both begin with ``action_listen``.

Rules begin with their condition, then the ``...`` snippet action unless they hold at the
conversation start, and end with ``...`` when they do not wait for user input; in rules a slot
or loop set to null becomes ``should_not_be_set``. A story's first action before any user turn is
unpredictable: it is not a training label.

Unlike Rasa there is no random augmentation (stories glued end to start): augmentation_factor 0.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.events import ActionExecuted, ActiveLoop, Event, SlotSet, UserUttered
from schemas.project.domain import Domain
from schemas.project.loader import Project
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
from services.dialogue.states import SHOULD_NOT_BE_SET
from services.dialogue.tracker import ACTION_LISTEN

__all__ = [
    "RULE_SNIPPET_ACTION",
    "TrainingTracker",
    "rule_trackers",
    "story_trackers",
    "training_trackers",
]

logger = logging.getLogger(__name__)

STORY_START = "STORY_START"
RULE_SNIPPET_ACTION = "..."
DEFAULT_VALUE_TEXT_SLOTS = "filled"
MAX_TRACKERS = 10_000


@dataclass(frozen=True)
class TrainingTracker:
    """A training conversation: its events, and which of its actions are not labels.

    ``unpredictable`` holds indices into ``events`` (Rasa's ``ActionExecuted.unpredictable``).
    """

    name: str
    events: tuple[Event, ...]
    is_rule: bool = False
    unpredictable: frozenset[int] = field(default_factory=frozenset)

    @property
    def labels(self) -> list[str]:
        """The actions a policy learns to predict from this tracker, in order."""
        return [
            e.name or e.action_text or ""
            for i, e in enumerate(self.events)
            if isinstance(e, ActionExecuted) and i not in self.unpredictable
        ]


@dataclass(frozen=True)
class _Variant:
    events: tuple[Event, ...]
    unpredictable: frozenset[int]


@dataclass(frozen=True)
class _Step:
    name: str
    starts: tuple[str, ...]
    ends: tuple[str, ...]
    variants: tuple[_Variant, ...]


def training_trackers(project: Project) -> list[TrainingTracker]:
    """Story trackers, then rule trackers (Rasa's ``TrainingDataGenerator.generate``)."""
    return story_trackers(project.stories, project.domain) + rule_trackers(
        project.rules, project.domain
    )


def story_trackers(
    stories: Sequence[Story], domain: Domain, *, limit: int = MAX_TRACKERS
) -> list[TrainingTracker]:
    """Every path through the stories (or test stories), checkpoints joined, ORs expanded."""
    steps = [s for story in stories for s in _steps(story, domain, rule=False)]
    return _generate(steps, rule=False, limit=limit)


def rule_trackers(
    rules: Sequence[Story], domain: Domain, *, limit: int = MAX_TRACKERS
) -> list[TrainingTracker]:
    """One tracker per rule (and per `or` alternative), marked ``is_rule``."""
    steps = [s for rule in rules for s in _steps(rule, domain, rule=True)]
    return _generate(steps, rule=True, limit=limit)


def _steps(story: Story, domain: Domain, *, rule: bool) -> list[_Step]:
    prefix: list[Event] = []
    if rule:
        prefix = [event for step in story.condition for event in _event(step, domain)[0]]
        if not story.conversation_start:
            prefix.append(ActionExecuted(name=RULE_SNIPPET_ACTION))
    raw: list[list[Event]] = [prefix]
    starts: list[str] = []
    ends: list[str] = []
    out: list[_Step] = []
    for step in story.steps:
        if isinstance(step, CheckpointStep):
            (ends if any(raw) else starts).append(step.name)
            continue
        if ends:
            out.append(_close(story.name, starts, ends, raw, domain, rule))
            starts, ends, raw = ends, [], [[]]
        raw = [[*v, *alt] for v in raw for alt in _event(step, domain)]
    if rule and not story.wait_for_user_input:
        raw = [[*v, ActionExecuted(name=RULE_SNIPPET_ACTION)] for v in raw]
    if any(raw):
        out.append(_close(story.name, starts, ends, raw, domain, rule))
    return out


def _close(
    name: str,
    starts: list[str],
    ends: list[str],
    raw: list[list[Event]],
    domain: Domain,
    rule: bool,
) -> _Step:
    first = not starts
    variants = tuple(_explicit(v, domain, rule, first=first, final=not ends) for v in raw)
    return _Step(name, tuple(starts) or (STORY_START,), tuple(ends), variants)


def _event(step: Step, domain: Domain) -> list[list[Event]]:
    """The alternatives a step stands for, each a list of events (one unless it is an `or`)."""
    if isinstance(step, UserStep):
        return [[_user_uttered(step)]]
    if isinstance(step, ActionStep):
        if step.name is not None:
            return [[ActionExecuted(name=step.name)]]
        return [[ActionExecuted(action_text=step.text)]]
    if isinstance(step, SlotStep):
        return [[SlotSet(name=n, value=_slot_value(n, v, step, domain)) for n, v in step.slots]]
    if isinstance(step, LoopStep):
        return [[ActiveLoop(name=step.name)]]
    if isinstance(step, OrStep):
        options: list[list[Event]] = []
        for alt in step.alternatives:
            if isinstance(alt, UserStep):
                options.append([_user_uttered(alt)])
            else:
                # Rasa makes each slot of an `or` its own alternative.
                options.extend(
                    [SlotSet(name=n, value=_slot_value(n, v, alt, domain))] for n, v in alt.slots
                )
        return options or [[]]
    return [[]]


def _slot_value(name: str, value: Any, step: SlotStep, domain: Domain) -> Any:
    if name not in step.any_value:
        return value
    slot = domain.slots.get(name)
    if slot is not None and slot.type == "text":
        return DEFAULT_VALUE_TEXT_SLOTS
    if slot is not None and slot.type == "list":
        return [DEFAULT_VALUE_TEXT_SLOTS]
    return None


def _user_uttered(step: UserStep) -> UserUttered:
    intent: dict[str, Any] = {"name": None}
    if step.intent is not None:
        name = step.intent.strip().removeprefix("/")
        base, _, response_key = name.partition("/")
        intent = {
            "name": base,
            "full_retrieval_intent_name": name if response_key else None,
            "confidence": 1.0,
        }
    entities: list[dict[str, Any]] = []
    if step.text is not None:
        for a in step.annotations:
            entity = {"start": a.start, "end": a.end, "value": a.value, "entity": a.entity}
            entity.update({k: v for k, v in (("role", a.role), ("group", a.group)) if v})
            entities.append(entity)
    else:
        roles = list(step.entity_roles)
        for name, value in step.entities:
            entity = {"entity": name, "value": "" if value is None else value}
            match = next((r for r in roles if r[0] == name), None)
            if match is not None:
                roles.remove(match)
                entity.update({k: v for k, v in (("role", match[1]), ("group", match[2])) if v})
            entities.append(entity)
    return UserUttered(text=step.text, parse_data={"intent": intent, "entities": entities})


def _slots_for_entities(entities: list[dict[str, Any]], domain: Domain) -> list[Event]:
    """Slots an unconditional ``from_entity`` mapping fills from these entities."""
    if not domain.store_entities_as_slots:
        return []
    events: list[Event] = []
    for slot in domain.slots.values():
        values = [
            entity.get("value")
            for mapping in slot.mappings
            if mapping.type == "from_entity"
            and not (mapping.conditions and mapping.conditions[0].active_loop is not None)
            for entity in entities
            if (entity.get("entity"), entity.get("role"), entity.get("group"))
            == (mapping.entity, mapping.role, mapping.group)
        ]
        if values:
            events.append(
                SlotSet(name=slot.name, value=values if slot.type == "list" else values[-1])
            )
    return events


def _is_listen(event: Event) -> bool:
    return type(event) is ActionExecuted and event.name == ACTION_LISTEN


def _explicit(
    raw: list[Event], domain: Domain, rule: bool, *, first: bool, final: bool
) -> _Variant:
    """Rasa's ``StoryStep.explicit_events``, with the unpredictable first action found."""
    marked: Event | None = None
    if first:
        for event in raw:
            if isinstance(event, UserUttered):
                break
            if isinstance(event, ActionExecuted):
                marked = event
                break
    events: list[Event] = []
    unpredictable: set[int] = set()
    for event in raw:
        added = [event]
        if isinstance(event, UserUttered):
            if not events or not _is_listen(events[-1]):
                events.append(ActionExecuted(name=ACTION_LISTEN))
            added += _slots_for_entities(event.entities, domain)
        for item in added:
            if item is marked:
                unpredictable.add(len(events))
            events.append(_rule_event(item) if rule else item)
    if final and (not events or not _is_listen(events[-1])):
        events.append(ActionExecuted(name=ACTION_LISTEN))
    return _Variant(tuple(events), frozenset(unpredictable))


def _rule_event(event: Event) -> Event:
    # A rule tells "this slot (loop) is not set" apart from "this slot is anything".
    if isinstance(event, SlotSet) and event.value is None:
        return SlotSet(name=event.name, value=SHOULD_NOT_BE_SET)
    if isinstance(event, ActiveLoop) and event.name is None:
        return ActiveLoop(name=SHOULD_NOT_BE_SET)
    return event


def _generate(steps: list[_Step], *, rule: bool, limit: int) -> list[TrainingTracker]:
    by_start: dict[str, list[_Step]] = defaultdict(list)
    for step in steps:
        for start in step.starts:
            by_start[start].append(step)
    trackers: list[TrainingTracker] = []
    for tracker in _walk(by_start, rule):
        if len(trackers) == limit:
            logger.warning("stopped after %d training trackers; simplify the checkpoints", limit)
            break
        trackers.append(tracker)
    return trackers


_Pending = tuple[str, tuple[Event, ...], frozenset[int], _Step, _Variant, frozenset[str]]


def _walk(by_start: dict[str, list[_Step]], rule: bool) -> Iterator[TrainingTracker]:
    stack: list[_Pending] = [
        (step.name, (), frozenset(), step, variant, frozenset())
        for step in reversed(by_start.get(STORY_START, []))
        for variant in reversed(step.variants)
    ]
    while stack:
        name, prefix, unpredictable, step, variant, visited = stack.pop()
        events = prefix + variant.events
        unpredictable |= {len(prefix) + i for i in variant.unpredictable}
        # A checkpoint already on the path is not followed again: cycles end there.
        follow = [
            (cp, nxt) for cp in step.ends if cp not in visited for nxt in by_start.get(cp, [])
        ]
        dead_end = any(cp in visited or not by_start.get(cp) for cp in step.ends)
        if not step.ends or dead_end:
            yield TrainingTracker(name, events, rule, unpredictable)
        for cp, nxt in reversed(follow):
            label = name if nxt.name in name.split(" > ") else f"{name} > {nxt.name}"
            for v in reversed(nxt.variants):
                stack.append((label, events, unpredictable, nxt, v, visited | {cp}))
