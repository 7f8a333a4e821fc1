"""Stories, rules and test stories: the conversations a bot learns from and is tested on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.project._read import FileReader, line_of, type_name
from schemas.project._yaml import LineDict, LineList
from schemas.project.nlu import AnnotationError, EntityAnnotation, parse_example
from schemas.project.problems import Source

StoryKind = Literal["story", "rule", "test"]


@dataclass(frozen=True, slots=True)
class UserStep:
    """A user turn: an intent (and entities), or end-to-end text, or both (test stories)."""

    source: Source
    intent: str | None = None
    entities: tuple[tuple[str, Any], ...] = ()
    entity_roles: tuple[tuple[str, str | None, str | None], ...] = ()
    text: str | None = None
    annotations: tuple[EntityAnnotation, ...] = ()


@dataclass(frozen=True, slots=True)
class ActionStep:
    """A bot action (or, with `text`, an end-to-end bot utterance)."""

    source: Source
    name: str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class SlotStep:
    """`slot_was_set`: slots and the values they took (None = "was set", any value)."""

    source: Source
    slots: tuple[tuple[str, Any], ...]
    any_value: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class LoopStep:
    """`active_loop`: a form became active (name) or finished (None)."""

    source: Source
    name: str | None


@dataclass(frozen=True, slots=True)
class CheckpointStep:
    """A checkpoint joining the end of one story to the start of another."""

    source: Source
    name: str


@dataclass(frozen=True, slots=True)
class OrStep:
    """Alternatives: any one of these user or slot steps."""

    source: Source
    alternatives: tuple[UserStep | SlotStep, ...]


Step = UserStep | ActionStep | SlotStep | LoopStep | CheckpointStep | OrStep


@dataclass(frozen=True)
class Story:
    """A story, a rule, or a test story."""

    name: str
    kind: StoryKind
    source: Source
    steps: tuple[Step, ...]
    condition: tuple[SlotStep | LoopStep, ...] = ()
    conversation_start: bool = False
    wait_for_user_input: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)


STEP_KEYS = (
    "intent",
    "user",
    "entities",
    "action",
    "bot",
    "slot_was_set",
    "active_loop",
    "checkpoint",
    "or",
    "metadata",
)


def read_story_section(
    items: LineList, kind: StoryKind, reader: FileReader, out: list[Story]
) -> None:
    """The `stories:` or `rules:` list of a data or test file."""
    label = "rule" if kind == "rule" else "story"
    for index, item in enumerate(items):
        item_line = items.line_of(index)
        entry = reader.mapping(
            item, item_line, f"an item of `{label if kind != 'test' else 'stories'}s`"
        )
        if entry is None:
            continue
        name = entry.get(label)
        if not isinstance(name, str):
            reader.error(item_line, f"a {label} needs a name: `- {label}: <name>`")
            continue
        allowed = ["steps", "metadata", label]
        if kind == "rule":
            allowed += ["condition", "conversation_start", "wait_for_user_input"]
        reader.unknown_keys(entry, allowed, f"{label} `{name}`", error=True)
        steps = reader.sequence(
            entry.get("steps"), entry.line_of("steps"), f"the steps of {label} `{name}`"
        )
        if steps is None:
            continue
        condition: list[SlotStep | LoopStep] = []
        if kind == "rule" and "condition" in entry:
            cond_items = reader.sequence(
                entry["condition"], entry.line_of("condition"), f"the condition of rule `{name}`"
            )
            for c_index, c_item in enumerate(cond_items or ()):
                step = _step(c_item, line_of(cond_items, c_index), reader, kind)
                if isinstance(step, SlotStep | LoopStep):
                    condition.append(step)
                elif step is not None:
                    reader.error(
                        line_of(cond_items, c_index),
                        f"the condition of rule `{name}` "
                        "may only hold `slot_was_set` and `active_loop`",
                    )
        parsed = [_step(s, steps.line_of(i), reader, kind) for i, s in enumerate(steps)]
        out.append(
            Story(
                name=name,
                kind=kind,
                source=reader.source(item_line),
                steps=tuple(s for s in parsed if s is not None),
                condition=tuple(condition),
                conversation_start=reader.boolean(
                    entry.get("conversation_start"),
                    entry.line_of("conversation_start"),
                    "conversation_start",
                    False,
                ),
                wait_for_user_input=reader.boolean(
                    entry.get("wait_for_user_input"),
                    entry.line_of("wait_for_user_input"),
                    "wait_for_user_input",
                    True,
                ),
                metadata=dict(entry.get("metadata") or {}),
            )
        )


def _step(item: Any, line: int | None, reader: FileReader, kind: StoryKind) -> Step | None:
    step = reader.mapping(item, line, "a step")
    if step is None:
        return None
    source = reader.source(line)
    reader.unknown_keys(step, STEP_KEYS, "a step", error=True)
    if "intent" in step or "user" in step:
        return _user_step(step, source, reader)
    if "action" in step:
        name = reader.string(step["action"], step.line_of("action"), "action")
        return ActionStep(source, name=name) if name else None
    if "bot" in step:
        text = reader.string(step["bot"], step.line_of("bot"), "bot")
        return ActionStep(source, text=text) if text is not None else None
    if "slot_was_set" in step:
        return _slot_step(step["slot_was_set"], step.line_of("slot_was_set"), reader)
    if "active_loop" in step:
        value = step["active_loop"]
        if value is not None and not isinstance(value, str):
            reader.error(step.line_of("active_loop"), "active_loop should be a form name or null")
            return None
        return LoopStep(source, value)
    if "checkpoint" in step:
        name = reader.string(step["checkpoint"], step.line_of("checkpoint"), "checkpoint")
        return CheckpointStep(source, name) if name else None
    if "or" in step:
        alternatives = reader.sequence(step["or"], step.line_of("or"), "`or`")
        parsed = [
            _step(a, line_of(alternatives, i), reader, kind)
            for i, a in enumerate(alternatives or ())
        ]
        options = tuple(p for p in parsed if isinstance(p, UserStep | SlotStep))
        if len(options) != len(parsed):
            reader.error(line, "`or` may only hold intent and slot_was_set steps")
        return OrStep(source, options)
    if not step:
        reader.error(
            line,
            "an empty step",
            "a step needs one of: intent, user, action, bot, slot_was_set, active_loop, "
            "checkpoint, or",
        )
    return None  # a step of unknown keys only was reported by unknown_keys


def _user_step(step: LineDict, source: Source, reader: FileReader) -> UserStep | None:
    intent = None
    if "intent" in step:
        intent = reader.string(step["intent"], step.line_of("intent"), "intent")
    text = None
    annotations: tuple[EntityAnnotation, ...] = ()
    if "user" in step:
        raw = reader.string(step["user"], step.line_of("user"), "user")
        if raw is not None:
            try:
                plain, found = parse_example(raw.strip())
            except AnnotationError as exc:
                reader.error(step.line_of("user"), f"user text: {exc}")
                return None
            text, annotations = plain, tuple(found)
    entities: list[tuple[str, Any]] = []
    roles: list[tuple[str, str | None, str | None]] = []
    if "entities" in step:
        items = reader.sequence(step["entities"], step.line_of("entities"), "entities")
        for index, item in enumerate(items or ()):
            if isinstance(item, str):
                entities.append((item, None))
            elif isinstance(item, LineDict) and "entity" in item:
                entities.append((str(item["entity"]), item.get("value")))
                roles.append((str(item["entity"]), item.get("role"), item.get("group")))
            elif isinstance(item, LineDict) and len(item) == 1:
                key, value = next(iter(item.items()))
                entities.append((str(key), value))
            else:
                reader.error(
                    line_of(items, index),
                    f"an entity of a step should be `- name: "
                    f"value` or `- entity: name`, not {type_name(item)}",
                )
    return UserStep(source, intent, tuple(entities), tuple(roles), text, annotations)


def _slot_step(value: Any, line: int | None, reader: FileReader) -> SlotStep | None:
    items = reader.sequence(value, line, "slot_was_set")
    if items is None:
        return None
    slots: list[tuple[str, Any]] = []
    any_value: set[str] = set()
    for index, item in enumerate(items):
        if isinstance(item, str):
            slots.append((item, None))
            any_value.add(item)
        elif isinstance(item, LineDict) and len(item) == 1:
            key, slot_value = next(iter(item.items()))
            slots.append((str(key), slot_value))
        else:
            reader.error(
                line_of(items, index),
                "an item of slot_was_set should be "
                f"`- slot: value` or `- slot`, not {type_name(item)}",
            )
    return SlotStep(reader.source(line), tuple(slots), frozenset(any_value))
