"""`parley validate`: every problem of a project, with `file:line` and a hint.

Errors break training or behaviour (a story naming an action that does not exist);
warnings are likely mistakes that Rasa would also only warn about (an annotated entity
missing from the domain, an example under two intents). Checks against a part of the
project that could not be read are skipped: one broken file is one problem, not forty.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from schemas.project._read import suggest
from schemas.project.conflicts import find_conflicts
from schemas.project.domain import DEFAULT_ACTIONS, DEFAULT_INTENTS, Domain, Form
from schemas.project.loader import Project
from schemas.project.nlu import EntityAnnotation, Example
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

EXTERNAL = re.compile(r"^EXT(ERNAL)?_")
ALWAYS_USED = frozenset({"utter_default", "utter_ask_rephrase", "utter_restart"})


@dataclass(frozen=True)
class _Known:
    """What the domain defines, and which of its parts could be read."""

    domain: Domain
    incomplete: frozenset[str]

    def checks(self, section: str) -> bool:
        """Whether references to a domain section can be checked."""
        return "domain" not in self.incomplete and section not in self.incomplete

    @property
    def intents(self) -> set[str]:
        return set(self.domain.intents) | DEFAULT_INTENTS


def validate(project: Project, *, max_history: int | None = None) -> list[Problem]:
    """Every problem in the project beyond those found while reading it."""
    known = _Known(project.domain, frozenset(project.incomplete))
    problems: list[Problem] = []
    problems += _domain_problems(known, project.responses_in_actions)
    problems += _nlu_problems(project, known)
    for story in (*project.stories, *project.rules, *project.test_stories):
        problems += _story_problems(story, known)
    problems += _checkpoint_problems(project.stories)
    if "data" not in known.incomplete and "domain" not in known.incomplete:
        problems += _unused(project)
    if "domain" not in known.incomplete:
        history = max_history if max_history is not None else project.config.max_history
        problems += find_conflicts(project.stories, project.domain, history)
    return problems


def _at(source: Source, level: Level, message: str, hint: str = "", code: str = "") -> Problem:
    return Problem(level, source, message, hint, code)


def _unknown(kind: str, name: str, known: set[str], what_to_do: str) -> tuple[str, str]:
    return f"unknown {kind} `{name}`", suggest(name, known) or what_to_do


def _domain_problems(known: _Known, project_actions: set[str]) -> Iterator[Problem]:
    domain = known.domain
    if known.checks("forms"):
        for form in domain.forms.values():
            yield from _form_problems(form, known)
    if known.checks("slots"):
        yield from _slot_problems(known)
    if known.checks("responses") and known.checks("slots"):
        yield from _response_problems(domain, project_actions)


def _form_problems(form: Form, known: _Known) -> Iterator[Problem]:
    domain = known.domain
    for slot_name in form.required_slots:
        if known.checks("slots") and not domain.is_known_slot(slot_name):
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
            continue
        asks = (
            f"utter_ask_{form.name}_{slot_name}",
            f"utter_ask_{slot_name}",
            f"action_ask_{form.name}_{slot_name}",
            f"action_ask_{slot_name}",
        )
        if (
            known.checks("responses")
            and known.checks("actions")
            and not any(name in domain.responses or name in domain.actions for name in asks)
        ):
            yield _at(
                form.source,
                Level.WARNING,
                f"form `{form.name}` cannot ask for `{slot_name}`: there is no "
                f"`utter_ask_{slot_name}`",
                f"add a response `utter_ask_{slot_name}` (or `action_ask_{slot_name}`)",
                "form-ask",
            )
    for intent in form.ignored_intents:
        if known.checks("intents") and intent not in known.intents:
            yield _at(
                form.source,
                Level.WARNING,
                f"form `{form.name}` ignores unknown intent `{intent}`",
                suggest(intent, known.intents) or "add it to `intents:`",
                "form-intent",
            )


def _slot_problems(known: _Known) -> Iterator[Problem]:
    domain = known.domain
    for slot in domain.slots.values():
        for mapping in slot.mappings:
            if (
                mapping.entity
                and known.checks("entities")
                and (mapping.entity not in domain.entities)
            ):
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
                if known.checks("intents") and intent not in known.intents:
                    message, hint = _unknown(
                        "intent", intent, known.intents, "add it to `intents:`"
                    )
                    yield _at(
                        mapping.source,
                        Level.ERROR,
                        f"a mapping of slot `{slot.name}` names an {message}",
                        hint,
                        "slot-intent",
                    )
            if (
                mapping.action
                and known.checks("actions")
                and not (domain.is_known_action(mapping.action))
            ):
                message, hint = _unknown(
                    "action",
                    mapping.action,
                    set(domain.actions),
                    "list it under `actions:` in the domain",
                )
                yield _at(
                    mapping.source,
                    Level.ERROR,
                    f"the custom mapping of slot `{slot.name}` names an {message}",
                    hint,
                    "slot-action",
                )
            for condition in mapping.conditions:
                loop = condition.active_loop
                if not loop or not known.checks("forms"):
                    continue
                form = domain.forms.get(loop)
                if form is None:
                    yield _at(
                        mapping.source,
                        Level.ERROR,
                        f"a mapping of slot `{slot.name}` is conditioned on unknown form `{loop}`",
                        suggest(loop, set(domain.forms)) or "add the form under `forms:`",
                        "slot-condition",
                    )
                elif slot.name not in form.required_slots:
                    yield _at(
                        mapping.source,
                        Level.WARNING,
                        f"a mapping of slot `{slot.name}` is conditioned on form "
                        f"`{loop}`, which does not require the slot",
                        f"add `{slot.name}` to the `required_slots` of `{loop}`, or drop "
                        "the condition",
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
                f"categorical slot `{slot.name}` starts with {slot.initial_value!r}, "
                "which is not one of its values",
                f"use one of: {', '.join(slot.values)}",
                "slot-initial",
            )


def _response_problems(domain: Domain, project_actions: set[str]) -> Iterator[Problem]:
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
            if response.name in project_actions:
                continue  # an action utters it and may pass the template's values
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


def _nlu_problems(project: Project, known: _Known) -> Iterator[Problem]:
    domain = known.domain
    intents = known.intents
    seen: dict[str, Example] = {}
    found: dict[tuple[str, str, str], list[Source]] = defaultdict(list)
    for example in project.nlu.examples:
        base = example.retrieval_intent or example.intent
        if known.checks("intents") and base not in intents:
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
        _collect_annotations(example.entities, example.source, domain, found)
        if (
            example.retrieval_intent
            and known.checks("responses")
            and f"utter_{example.intent}" not in domain.responses
        ):
            yield _at(
                example.source,
                Level.WARNING,
                f"retrieval intent `{example.intent}` has no response `utter_{example.intent}`",
                "add it under `responses:`",
                "retrieval",
            )
    if known.checks("entities"):
        yield from _annotation_problems(found, domain)


def _collect_annotations(
    entities: tuple[EntityAnnotation, ...],
    source: Source,
    domain: Domain,
    found: dict[tuple[str, str, str], list[Source]],
) -> None:
    for entity in entities:
        declared = domain.entities.get(entity.entity)
        if declared is None:
            found[("entity", entity.entity, "")].append(source)
            continue
        if entity.role and entity.role not in declared.roles:
            found[("role", entity.entity, entity.role)].append(source)
        if entity.group and entity.group not in declared.groups:
            found[("group", entity.entity, entity.group)].append(source)


def _annotation_problems(
    found: dict[tuple[str, str, str], list[Source]], domain: Domain
) -> Iterator[Problem]:
    """One warning per unknown entity, role or group, with how often it is annotated."""
    for (kind, entity, name), sources in found.items():
        count = f"{len(sources)} example(s)" if len(sources) > 1 else "an example"
        verb = "annotate" if len(sources) > 1 else "annotates"
        if kind == "entity":
            message, hint = _unknown(
                "entity",
                entity,
                set(domain.entities),
                "add it under `entities:` or fix the annotations",
            )
            yield _at(
                sources[0],
                Level.WARNING,
                f"{count} {verb} an {message} (not in the domain)",
                hint,
                "nlu-entity",
            )
            continue
        declared = domain.entities[entity]
        options = set(declared.roles if kind == "role" else declared.groups)
        hint = suggest(name, options) or f"add `{kind}s: [{name}]` to entity `{entity}`"
        yield _at(
            sources[0],
            Level.WARNING,
            f"{count} use {kind} `{name}` of entity `{entity}`, which is not declared",
            hint,
            f"nlu-{kind}",
        )


def _story_problems(story: Story, known: _Known) -> Iterator[Problem]:
    label = {"story": "story", "rule": "rule", "test": "test story"}[story.kind]
    for step in (*story.condition, *story.steps):
        yield from _step_problems(step, f"{label} `{story.name}`", known)


def _step_problems(step: object, where: str, known: _Known) -> Iterator[Problem]:
    domain = known.domain
    if isinstance(step, OrStep):
        for alternative in step.alternatives:
            yield from _step_problems(alternative, where, known)
    elif isinstance(step, UserStep):
        yield from _user_step_problems(step, where, known)
    elif isinstance(step, ActionStep) and step.name and known.checks("actions"):
        if (
            known.checks("responses")
            and known.checks("forms")
            and (not domain.is_known_action(step.name))
        ):
            kind = "response" if step.name.startswith("utter_") else "action"
            todo = (
                "add it under `responses:`"
                if kind == "response"
                else "list it under `actions:` in the domain"
            )
            names = set(domain.actions) | set(domain.responses) | set(domain.forms)
            message, hint = _unknown(kind, step.name, names | DEFAULT_ACTIONS, todo)
            yield _at(step.source, Level.ERROR, f"{where} runs an {message}", hint, f"story-{kind}")
    elif isinstance(step, SlotStep) and known.checks("slots"):
        for name, value in step.slots:
            slot = domain.slots.get(name)
            if slot is None and not domain.is_known_slot(name):
                message, hint = _unknown(
                    "slot", name, set(domain.slots), "add it under `slots:` in the domain"
                )
                yield _at(
                    step.source, Level.ERROR, f"{where} sets an {message}", hint, "story-slot"
                )
            elif (
                slot is not None
                and slot.type == "categorical"
                and value is not None
                and name not in step.any_value
                and str(value) not in slot.values
            ):
                yield _at(
                    step.source,
                    Level.WARNING,
                    f"{where} sets categorical slot `{name}` to `{value}`, which is not "
                    "one of its values",
                    f"use one of: {', '.join(slot.values)}",
                    "story-slot-value",
                )
    elif (
        isinstance(step, LoopStep)
        and step.name
        and known.checks("forms")
        and not domain.is_known_loop(step.name)
    ):
        message, hint = _unknown(
            "form", step.name, set(domain.forms), "add it under `forms:` in the domain"
        )
        yield _at(step.source, Level.ERROR, f"{where} activates an {message}", hint, "story-form")


def _user_step_problems(step: UserStep, where: str, known: _Known) -> Iterator[Problem]:
    domain = known.domain
    intents = known.intents
    intent = step.intent
    if intent and known.checks("intents") and intent not in intents:
        base = intent.split("/", 1)[0]
        if EXTERNAL.match(intent):
            yield _at(
                step.source,
                Level.ERROR,
                f"{where} uses external intent `{intent}`, which is not in the domain",
                "list external intents under `intents:` too",
                "story-intent",
            )
        elif base not in intents:
            message, hint = _unknown(
                "intent", intent, intents, "add it to `intents:` in the domain"
            )
            yield _at(step.source, Level.ERROR, f"{where} uses an {message}", hint, "story-intent")
    if not known.checks("entities"):
        return
    for name, _ in step.entities:
        if name not in domain.entities:
            message, hint = _unknown(
                "entity", name, set(domain.entities), "add it under `entities:` in the domain"
            )
            yield _at(step.source, Level.ERROR, f"{where} uses an {message}", hint, "story-entity")
    for annotation in step.annotations:
        if annotation.entity not in domain.entities:
            message, hint = _unknown(
                "entity",
                annotation.entity,
                set(domain.entities),
                "add it under `entities:` or fix the annotation",
            )
            yield _at(
                step.source,
                Level.WARNING,
                f"the user text of {where} annotates an {message}",
                hint,
                "story-annotation",
            )


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
                f"start another story with `- checkpoint: {name}`",
                "checkpoint",
            )
    for name, source in starts.items():
        if name not in ends:
            yield _at(
                source,
                Level.WARNING,
                f"checkpoint `{name}` is never reached",
                f"end another story with `- checkpoint: {name}`",
                "checkpoint",
            )


def _unused(project: Project) -> Iterator[Problem]:
    domain = project.domain
    used_actions: set[str] = set(project.responses_in_actions)
    for story in (*project.stories, *project.rules):
        for step in story.steps:
            for part in step.alternatives if isinstance(step, OrStep) else (step,):
                if isinstance(part, ActionStep) and part.name:
                    used_actions.add(part.name)
    for form in domain.forms.values():
        for slot in form.required_slots:
            used_actions.update((f"utter_ask_{slot}", f"utter_ask_{form.name}_{slot}"))
    nlu_intents = {e.retrieval_intent or e.intent for e in project.nlu.examples}
    for intent in domain.intents.values():
        if intent.name not in nlu_intents and intent.name not in DEFAULT_INTENTS:
            hint = "add examples under `nlu:` or remove the intent"
            if EXTERNAL.match(intent.name):
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
            and name not in ALWAYS_USED
        ):
            yield _at(
                response.source,
                Level.WARNING,
                f"response `{name}` is never used in stories or rules",
                "a custom action may use it; else remove it",
                "unused-response",
            )
