"""`parley validate`: every problem of a project, with `file:line` and a hint.

Errors break training or behaviour (a story naming an action that does not exist);
warnings are likely mistakes that Rasa would also only warn about (an annotated entity
missing from the domain, an example under two intents).
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Iterator

from schemas.project._read import suggest
from schemas.project.conflicts import find_conflicts
from schemas.project.domain import DEFAULT_ACTIONS, DEFAULT_INTENTS, Domain
from schemas.project.loader import Project
from schemas.project.nlu import Example
from schemas.project.problems import Level, Problem, Source
from schemas.project.stories import (
    ActionStep,
    CheckpointStep,
    LoopStep,
    OrStep,
    SlotStep,
    Story,
    UserStep,
)

EXTERNAL = re.compile(r"^EXTERNAL_")


def validate(project: Project, *, max_history: int | None = None) -> list[Problem]:
    """Every problem in the project beyond those found while reading it."""
    problems: list[Problem] = []
    domain = project.domain
    problems += _domain_problems(domain)
    problems += _nlu_problems(project)
    for story in (*project.stories, *project.rules, *project.test_stories):
        problems += _story_problems(story, domain)
    problems += _checkpoint_problems(project.stories)
    problems += _unused(project)
    history = max_history if max_history is not None else project.config.max_history
    problems += find_conflicts(project.stories, domain, history)
    return problems


def _at(source: Source, level: Level, message: str, hint: str = "", code: str = "") -> Problem:
    return Problem(level, source, message, hint, code)


def _known_intents(domain: Domain) -> set[str]:
    return set(domain.intents) | DEFAULT_INTENTS


def _unknown(kind: str, name: str, known: set[str], what_to_do: str) -> tuple[str, str]:
    close = suggest(name, known)
    return f"unknown {kind} `{name}`", close or what_to_do


def _domain_problems(domain: Domain) -> Iterator[Problem]:
    intents = _known_intents(domain)
    for form in domain.forms.values():
        for slot_name in form.required_slots:
            if not domain.is_known_slot(slot_name):
                message, hint = _unknown(
                    "slot", slot_name, set(domain.slots), "add it under `slots:` in the domain"
                )
                yield _at(
                    form.source,
                    Level.ERROR,
                    f"form `{form.name}` requires an {message}",
                    hint,
                    "form-slot",
                )
        for intent in form.ignored_intents:
            if intent not in intents:
                yield _at(
                    form.source,
                    Level.WARNING,
                    f"form `{form.name}` ignores unknown intent `{intent}`",
                    suggest(intent, intents) or "add it to `intents:`",
                    "form-intent",
                )
    for slot in domain.slots.values():
        for mapping in slot.mappings:
            if mapping.entity and mapping.entity not in domain.entities:
                message, hint = _unknown(
                    "entity",
                    mapping.entity,
                    set(domain.entities),
                    "add it under `entities:` in the domain",
                )
                yield _at(
                    mapping.source,
                    Level.ERROR,
                    f"slot `{slot.name}` is mapped from an {message}",
                    hint,
                    "slot-entity",
                )
            for intent in (*mapping.intent, *mapping.not_intent):
                if intent not in intents:
                    message, hint = _unknown("intent", intent, intents, "add it to `intents:`")
                    yield _at(
                        mapping.source,
                        Level.ERROR,
                        f"a mapping of slot `{slot.name}` names an {message}",
                        hint,
                        "slot-intent",
                    )
            for condition in mapping.conditions:
                if condition.active_loop and condition.active_loop not in domain.forms:
                    yield _at(
                        mapping.source,
                        Level.ERROR,
                        f"a mapping of slot `{slot.name}` is conditioned on unknown form "
                        f"`{condition.active_loop}`",
                        suggest(condition.active_loop, set(domain.forms))
                        or "add the form under `forms:`",
                        "slot-condition",
                    )
        if (
            slot.type == "categorical"
            and slot.initial_value is not None
            and str(slot.initial_value) not in slot.values
        ):
            yield _at(
                slot.source,
                Level.ERROR,
                f"categorical slot `{slot.name}` starts "
                f"with {slot.initial_value!r}, which is not one of its values",
                f"use one of: {', '.join(slot.values)}",
                "slot-initial",
            )
    for response in domain.responses.values():
        for variation in response.variations:
            for slot_condition in variation.condition:
                if slot_condition.name not in domain.slots:
                    yield _at(
                        variation.source,
                        Level.ERROR,
                        f"response `{response.name}` has a condition on unknown slot "
                        f"`{slot_condition.name}`",
                        suggest(slot_condition.name, set(domain.slots)) or "add the slot",
                        "response-condition",
                    )
            for name in _template_slots(variation.text or ""):
                if name not in domain.slots:
                    yield _at(
                        variation.source,
                        Level.WARNING,
                        f"response `{response.name}` fills `{{{name}}}`, which is not a slot",
                        suggest(name, set(domain.slots))
                        or "a custom action must pass it, or it is shown as written",
                        "response-template",
                    )


def _template_slots(text: str) -> Iterator[str]:
    try:
        for _, field_name, _, _ in string.Formatter().parse(text):
            if field_name and field_name.isidentifier():
                yield field_name
    except ValueError:
        return


def _nlu_problems(project: Project) -> Iterator[Problem]:
    domain = project.domain
    intents = _known_intents(domain)
    seen: dict[str, Example] = {}
    unknown_entities: dict[tuple[str, str, str], list[Example]] = defaultdict(list)
    for example in project.nlu.examples:
        base = example.retrieval_intent or example.intent
        if base not in intents:
            message, hint = _unknown("intent", base, intents, "add it to `intents:` in the domain")
            yield _at(
                example.source,
                Level.WARNING,
                f"the NLU data uses an {message} (not in the domain)",
                hint,
                "nlu-intent",
            )
            intents.add(base)  # one warning per intent
        key = " ".join(example.text.lower().split())
        first = seen.get(key)
        if first is None:
            seen[key] = example
        elif first.intent != example.intent:
            yield _at(
                example.source,
                Level.WARNING,
                f"the example {example.text!r} is under intent `{example.intent}` and "
                f"under `{first.intent}` ({first.source})",
                "keep it under one intent: the model cannot learn both",
                "duplicate-example",
            )
        else:
            yield _at(
                example.source,
                Level.WARNING,
                f"the example {example.text!r} of intent `{example.intent}` appears twice "
                f"(first at {first.source})",
                "remove the copy",
                "duplicate-example",
            )
        for entity in example.entities:
            declared = domain.entities.get(entity.entity)
            if declared is None:
                unknown_entities[("entity", entity.entity, "")].append(example)
                continue
            if entity.role and entity.role not in declared.roles:
                unknown_entities[("role", entity.entity, entity.role)].append(example)
            if entity.group and entity.group not in declared.groups:
                unknown_entities[("group", entity.entity, entity.group)].append(example)
        if example.retrieval_intent and f"utter_{example.intent}" not in domain.responses:
            yield _at(
                example.source,
                Level.WARNING,
                f"retrieval intent `{example.intent}` has no response `utter_{example.intent}`",
                "add it under `responses:`",
                "retrieval",
            )
    yield from _annotation_problems(unknown_entities, domain)


def _annotation_problems(
    found: dict[tuple[str, str, str], list[Example]], domain: Domain
) -> Iterator[Problem]:
    """One warning per unknown entity, role or group, with how often it is annotated."""
    for (kind, entity, name), examples in found.items():
        first = examples[0].source
        count = f"{len(examples)} example(s)"
        if kind == "entity":
            message, hint = _unknown(
                "entity",
                entity,
                set(domain.entities),
                "add it under `entities:` or fix the annotations",
            )
            yield _at(
                first,
                Level.WARNING,
                f"{count} annotate an {message} (not in the domain)",
                hint,
                "nlu-entity",
            )
        else:
            yield _at(
                first,
                Level.WARNING,
                f"{count} use {kind} `{name}` of entity `{entity}`, which is not declared",
                f"add `{kind}s: [{name}]` to entity `{entity}` in the domain",
                f"nlu-{kind}",
            )


def _story_problems(story: Story, domain: Domain) -> Iterator[Problem]:
    label = {"story": "story", "rule": "rule", "test": "test story"}[story.kind]
    intents = _known_intents(domain)
    for step in (*story.condition, *story.steps):
        yield from _step_problems(step, story, label, domain, intents)


def _step_problems(
    step: object, story: Story, label: str, domain: Domain, intents: set[str]
) -> Iterator[Problem]:
    where = f"{label} `{story.name}`"
    if isinstance(step, OrStep):
        for alternative in step.alternatives:
            yield from _step_problems(alternative, story, label, domain, intents)
    elif isinstance(step, UserStep):
        intent = step.intent
        if intent and intent not in intents and not EXTERNAL.match(intent):
            base = intent.split("/", 1)[0]
            if base not in intents:
                message, hint = _unknown(
                    "intent", intent, intents, "add it to `intents:` in the domain"
                )
                yield _at(
                    step.source, Level.ERROR, f"{where} uses an {message}", hint, "story-intent"
                )
        elif intent and intent not in intents:
            yield _at(
                step.source,
                Level.ERROR,
                f"{where} uses external intent `{intent}`, which is not in the domain",
                "list external intents under `intents:` too",
                "story-intent",
            )
        for name, _ in step.entities:
            if name not in domain.entities:
                message, hint = _unknown(
                    "entity", name, set(domain.entities), "add it under `entities:` in the domain"
                )
                yield _at(
                    step.source, Level.ERROR, f"{where} uses an {message}", hint, "story-entity"
                )
    elif isinstance(step, ActionStep) and step.name:
        if not domain.is_known_action(step.name):
            kind = "response" if step.name.startswith("utter_") else "action"
            todo = (
                "add it under `responses:`"
                if kind == "response"
                else "list it under `actions:` in the domain"
            )
            known = set(domain.actions) | set(domain.responses) | set(domain.forms)
            message, hint = _unknown(kind, step.name, known | DEFAULT_ACTIONS, todo)
            yield _at(step.source, Level.ERROR, f"{where} runs an {message}", hint, f"story-{kind}")
    elif isinstance(step, SlotStep):
        for name, _ in step.slots:
            if not domain.is_known_slot(name):
                message, hint = _unknown(
                    "slot", name, set(domain.slots), "add it under `slots:` in the domain"
                )
                yield _at(
                    step.source, Level.ERROR, f"{where} sets an {message}", hint, "story-slot"
                )
    elif isinstance(step, LoopStep) and step.name and not domain.is_known_loop(step.name):
        message, hint = _unknown(
            "form", step.name, set(domain.forms), "add it under `forms:` in the domain"
        )
        yield _at(step.source, Level.ERROR, f"{where} activates an {message}", hint, "story-form")


def _checkpoint_problems(stories: list[Story]) -> Iterator[Problem]:
    starts: dict[str, Source] = {}
    ends: dict[str, Source] = {}
    for story in stories:
        for index, step in enumerate(story.steps):
            if isinstance(step, CheckpointStep):
                target = starts if index == 0 else ends
                target.setdefault(step.name, step.source)
    for name, source in ends.items():
        if name not in starts:
            yield _at(
                source,
                Level.WARNING,
                f"checkpoint `{name}` is never continued",
                "start another story with `- checkpoint: " + name + "`",
                "checkpoint",
            )
    for name, source in starts.items():
        if name not in ends:
            yield _at(
                source,
                Level.WARNING,
                f"checkpoint `{name}` is never reached",
                "end another story with `- checkpoint: " + name + "`",
                "checkpoint",
            )


def _unused(project: Project) -> Iterator[Problem]:
    domain = project.domain
    used_actions: set[str] = set()
    used_intents: set[str] = set()
    for story in (*project.stories, *project.rules):
        for step in story.steps:
            for part in step.alternatives if isinstance(step, OrStep) else (step,):
                if isinstance(part, ActionStep) and part.name:
                    used_actions.add(part.name)
                if isinstance(part, UserStep) and part.intent:
                    used_intents.add(part.intent)
    for form in domain.forms.values():
        used_actions.update(f"utter_ask_{slot}" for slot in form.required_slots)
        used_actions.update(f"utter_ask_{form.name}_{slot}" for slot in form.required_slots)
    nlu_intents = {e.retrieval_intent or e.intent for e in project.nlu.examples}
    for intent in domain.intents.values():
        if intent.name not in nlu_intents and intent.name not in DEFAULT_INTENTS:
            hint = "add examples under `nlu:` or remove the intent"
            if EXTERNAL.match(intent.name) or intent.name.startswith("EXT"):
                hint = "fine if it is only triggered externally (reminders, trigger_intent)"
            yield _at(
                intent.source,
                Level.WARNING,
                f"intent `{intent.name}` has no NLU examples",
                hint,
                "intent-no-examples",
            )
    for response in domain.responses.values():
        name = response.name
        if (
            name.startswith("utter_")
            and name not in used_actions
            and "/" not in name
            and name not in ("utter_default", "utter_ask_rephrase", "utter_restart")
        ):
            yield _at(
                response.source,
                Level.WARNING,
                f"response `{name}` is never used in stories or rules",
                "a custom action may use it; else remove it",
                "unused-response",
            )
