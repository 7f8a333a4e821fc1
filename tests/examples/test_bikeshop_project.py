"""The Spoke & Chain example bot is a consistent Rasa 3.x project.

Cross-references are checked with a small reader local to these tests
(`_bikeshop.py`), not with Parley's own project validator.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from typing import Any

import pytest

from schemas.project.domain import DEFAULT_ACTIONS as RASA_DEFAULT_ACTIONS
from schemas.project.domain import DEFAULT_INTENTS as RASA_DEFAULT_INTENTS
from tests.examples._bikeshop import (
    BOT,
    block_items,
    domain,
    entity_annotations,
    intent_examples,
    load_yaml,
    nlu,
    plain_text,
    story_files,
    synonyms,
    yaml_files,
)

# Names Rasa 3.x adds to every domain by itself (the loader's own lists).
DEFAULT_INTENTS = set(RASA_DEFAULT_INTENTS)
DEFAULT_ACTIONS = set(RASA_DEFAULT_ACTIONS)
# Template variables that the custom actions pass to `utter_message` themselves.
ACTION_TEMPLATE_KWARGS = {"minutes", "order_status", "order_id"}
PLACEHOLDER = re.compile(r"(?<!\{)\{([^{}\n]+)\}(?!\})")
RESPONSE_KEYS = {"text", "buttons", "image", "custom", "channel", "condition", "attachment", "id"}
MIN_EXAMPLES_PER_INTENT = 15


def known_intents() -> set[str]:
    return set(domain().intents) | DEFAULT_INTENTS


def known_actions() -> set[str]:
    d = domain()
    return set(d.actions) | set(d.responses) | set(d.forms) | DEFAULT_ACTIONS


def all_stories() -> list[tuple[str, dict[str, Any]]]:
    return [(name, story) for name, stories in story_files().items() for story in stories]


def label(file: str, story: dict[str, Any]) -> str:
    return f"{file}: {story.get('story') or story.get('rule')}"


def story_entity_names(step: dict[str, Any]) -> set[str]:
    """Entity names of a story step, from `entities:` and from `user:` annotations."""
    names = {e if isinstance(e, str) else next(iter(e)) for e in step.get("entities", [])}
    names |= {a.entity for a in entity_annotations(step.get("user", ""))}
    return names


def actions_source() -> ast.Module:
    return ast.parse((BOT / "actions" / "actions.py").read_text(encoding="utf-8"))


def implemented_action_names() -> set[str]:
    """The string each `def name(self)` in actions.py returns."""
    names = set()
    for node in ast.walk(actions_source()):
        if isinstance(node, ast.FunctionDef) and node.name == "name":
            returned = node.body[-1]
            assert isinstance(returned, ast.Return), f"name() at line {node.lineno}"
            assert isinstance(returned.value, ast.Constant), f"name() at line {node.lineno}"
            assert isinstance(returned.value.value, str), f"name() at line {node.lineno}"
            names.add(returned.value.value)
    return names


def responses_uttered_by_actions() -> set[str]:
    """Every `response="utter_..."` keyword in actions.py."""
    return {
        kw.value.value
        for node in ast.walk(actions_source())
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "response"
        and isinstance(kw.value, ast.Constant)
        and isinstance(kw.value.value, str)
    }


# --- files -------------------------------------------------------------------------------


def test_every_yaml_file_parses_and_declares_version_3_1() -> None:
    files = yaml_files()
    assert len(files) >= 12, [str(p.relative_to(BOT)) for p in files]
    for path in files:
        data = load_yaml(path)
        if path.name == "credentials.yml":
            # Rasa reads every top-level key of credentials.yml as a channel name.
            assert "version" not in data, "a `version` key would be read as a channel"
            assert "rest" in data
            continue
        assert data.get("version") == "3.1", f"{path.relative_to(BOT)}: {data.get('version')!r}"


def test_expected_files_exist() -> None:
    for relative in (
        "config.yml",
        "endpoints.yml",
        "credentials.yml",
        "README.md",
        "actions/__init__.py",
        "actions/actions.py",
        "data/rules.yml",
        "data/stories.yml",
        "tests/test_stories.yml",
    ):
        assert (BOT / relative).is_file(), relative
    assert len(list((BOT / "domain").glob("*.yml"))) >= 2, "the domain is split into a folder"
    assert len(list((BOT / "data" / "nlu").glob("*.yml"))) >= 2


def test_config_uses_the_stock_rasa_components() -> None:
    config = load_yaml(BOT / "config.yml")
    assert config["language"] == "en"
    assert config["recipe"] == "default.v1"
    pipeline = {c["name"]: c for c in config["pipeline"]}
    for name in (
        "WhitespaceTokenizer",
        "RegexFeaturizer",
        "LexicalSyntacticFeaturizer",
        "CountVectorsFeaturizer",
        "DIETClassifier",
        "EntitySynonymMapper",
        "RegexEntityExtractor",
        "FallbackClassifier",
    ):
        assert name in pipeline, name
    assert any(c.get("analyzer") == "char_wb" for c in config["pipeline"]), "char n-grams"
    assert pipeline["RegexEntityExtractor"]["use_lookup_tables"] is True
    assert pipeline["RegexEntityExtractor"]["use_regexes"] is True
    assert pipeline["FallbackClassifier"]["threshold"] == pytest.approx(0.6)
    policies = {p["name"]: p for p in config["policies"]}
    assert set(policies) == {"MemoizationPolicy", "RulePolicy", "TEDPolicy"}
    assert 0 < policies["RulePolicy"]["core_fallback_threshold"] < 1


def test_endpoints_point_at_the_action_server() -> None:
    endpoints = load_yaml(BOT / "endpoints.yml")
    assert endpoints["action_endpoint"]["url"] == "http://localhost:5055/webhook"


# --- domain ------------------------------------------------------------------------------


def test_domain_parts_merge_without_duplicates() -> None:
    d = domain()
    for kind, names in (("intents", d.intents), ("actions", d.actions)):
        duplicated = [name for name, count in Counter(names).items() if count > 1]
        assert not duplicated, f"{kind} listed twice: {duplicated}"
    assert d.session_config == {
        "session_expiration_time": 60,
        "carry_over_slots_to_new_session": True,
    }
    assert "EXTERNAL_pickup_reminder" in d.intents


def test_slot_mappings_reference_domain_names() -> None:
    d = domain()
    for slot, spec in d.slots.items():
        assert spec.get("mappings"), f"slot {slot} has no mappings (required in Rasa 3.x)"
        for mapping in spec["mappings"]:
            if mapping["type"] == "from_entity":
                entity = mapping["entity"]
                assert entity in d.entities, f"slot {slot}: unknown entity {entity}"
                if "role" in mapping:
                    assert mapping["role"] in d.entities[entity], f"slot {slot}: role"
            elif mapping["type"] == "custom":
                # Rasa's action_extract_slots would run a named action on every user
                # message; these slots are set only by the actions that own them.
                assert "action" not in mapping, f"slot {slot}: custom mapping names an action"
            for key in ("intent", "not_intent"):
                wanted = mapping.get(key, [])
                for intent in [wanted] if isinstance(wanted, str) else wanted:
                    assert intent in known_intents(), f"slot {slot}: unknown intent {intent}"
            for condition in mapping.get("conditions", []):
                assert condition["active_loop"] in d.forms, f"slot {slot}: condition"


def test_domain_uses_every_slot_feature_the_demo_needs() -> None:
    slots = domain().slots
    types = {spec["type"] for spec in slots.values()}
    assert {"text", "categorical", "bool"} <= types
    assert any("initial_value" in spec for spec in slots.values())
    assert slots["bike_type"]["values"] == ["mountain", "road", "electric", "city"]


def test_form_is_complete() -> None:
    d = domain()
    assert set(d.forms) == {"repair_form"}
    form = d.forms["repair_form"]
    assert form["required_slots"] == ["bike_type", "problem", "day"]
    for slot in form["required_slots"]:
        assert slot in d.slots, slot
        assert f"utter_ask_{slot}" in d.responses, f"utter_ask_{slot}"
    for intent in form["ignored_intents"]:
        assert intent in known_intents(), intent
    assert "validate_repair_form" in d.actions


def test_responses_are_well_formed() -> None:
    d = domain()
    for name, variations in d.responses.items():
        assert name.startswith("utter_"), name
        assert variations, f"{name} has no variation"
        for variation in variations:
            assert set(variation) <= RESPONSE_KEYS, f"{name}: {set(variation) - RESPONSE_KEYS}"
            assert "text" in variation, name
            texts = [variation["text"]]
            for button in variation.get("buttons", []):
                assert set(button) == {"title", "payload"}, name
                texts += [button["title"], button["payload"]]
            for text in texts:
                for placeholder in PLACEHOLDER.findall(text):
                    assert placeholder in d.slots or placeholder in ACTION_TEMPLATE_KWARGS, (
                        f"{name}: unknown template variable {{{placeholder}}}"
                    )
            for condition in variation.get("condition", []):
                assert condition["type"] == "slot", name
                slot = d.slots[condition["name"]]
                assert condition["value"] in slot.get("values", [condition["value"]]), name


def test_domain_uses_every_response_feature_the_demo_needs() -> None:
    variations = [v for vs in domain().responses.values() for v in vs]
    assert any("buttons" in v for v in variations)
    assert any("condition" in v for v in variations)
    assert any("channel" in v for v in variations)
    assert any(len(vs) > 1 for vs in domain().responses.values())
    payloads = [b["payload"] for v in variations for b in v.get("buttons", [])]
    # Literal braces in a response must be doubled, or Rasa reads them as a template.
    assert '/inform{{"bike_type":"mountain"}}' in payloads


def test_actions_in_domain_are_implemented_and_vice_versa() -> None:
    assert implemented_action_names() == set(domain().actions)


def test_responses_uttered_by_actions_exist() -> None:
    uttered = responses_uttered_by_actions()
    assert "utter_handoff" in uttered
    missing = uttered - set(domain().responses)
    assert not missing, missing


# --- NLU ---------------------------------------------------------------------------------


def test_every_nlu_intent_is_in_the_domain_and_has_enough_examples() -> None:
    examples = intent_examples()
    for intent, items in examples.items():
        assert intent in domain().intents, f"NLU intent {intent} is not in the domain"
        assert len(items) >= MIN_EXAMPLES_PER_INTENT, f"{intent}: {len(items)} examples"
    for intent in domain().intents:
        if not intent.startswith("EXTERNAL_"):
            assert intent in examples, f"domain intent {intent} has no NLU examples"
    assert 250 <= sum(len(items) for items in examples.values()) <= 400


def test_no_example_is_repeated() -> None:
    seen: dict[str, str] = {}
    for intent, items in intent_examples().items():
        for example in items:
            key = plain_text(example).lower()
            assert key not in seen, f"{example!r} is in {seen[key]} and {intent}"
            seen[key] = intent


def test_annotations_use_domain_entities_and_roles() -> None:
    entities = domain().entities
    found: list[str] = []
    for items in intent_examples().values():
        for example in items:
            for annotation in entity_annotations(example):
                assert annotation.entity in entities, f"{example}: {annotation.entity}"
                if annotation.role is not None:
                    assert annotation.role in entities[annotation.entity], example
                    found.append(annotation.role)
    assert {"from", "to"} <= set(found), "the time roles are exercised"


def test_synonyms_lookups_and_regexes_name_domain_entities() -> None:
    entries = nlu()
    bike_types = domain().slots["bike_type"]["values"]
    assert set(synonyms()) >= set(bike_types), "every bike type has spoken synonyms"
    lookup_names = {e["lookup"] for e in entries["lookup"]}
    regex_names = {e["regex"] for e in entries["regex"]}
    assert lookup_names <= set(domain().entities), "RegexEntityExtractor uses them as entities"
    assert regex_names <= set(domain().entities)
    patterns = [p for e in entries["regex"] for p in block_items(e["examples"])]
    assert any(re.fullmatch(p, "SC-1234") for p in patterns)


def test_annotated_bike_type_values_are_known_types_or_deliberately_unknown() -> None:
    known = set(domain().slots["bike_type"]["values"])
    annotated = {
        a.value
        for items in intent_examples().values()
        for example in items
        for a in entity_annotations(example)
        if a.entity == "bike_type"
    }
    assert known <= annotated
    # The few others teach DIET to extract bikes the validator must turn away.
    assert annotated - known == {"tandem", "bmx", "unicycle"}


# --- stories, rules and test stories -----------------------------------------------------


def test_story_steps_reference_domain_names() -> None:
    d = domain()
    for file, story in all_stories():
        where = label(file, story)
        for step in story.get("condition", []) + story["steps"]:
            if "intent" in step:
                assert step["intent"] in known_intents(), f"{where}: {step['intent']}"
            if "action" in step:
                assert step["action"] in known_actions(), f"{where}: {step['action']}"
            if "active_loop" in step:
                assert step["active_loop"] in {None, *d.forms}, where
            for item in step.get("slot_was_set", []):
                slot = item if isinstance(item, str) else next(iter(item))
                assert slot in d.slots or slot == "requested_slot", f"{where}: {slot}"
            for entity in story_entity_names(step):
                assert entity in d.entities, f"{where}: {entity}"


def test_every_utter_action_used_in_data_is_defined() -> None:
    used = {
        step["action"]
        for _, story in all_stories()
        for step in story["steps"]
        if step.get("action", "").startswith("utter_")
    }
    assert used, "stories use responses"
    assert used <= set(domain().responses), used - set(domain().responses)


def test_stories_never_branch_on_the_same_history() -> None:
    """Two stories that agree on every earlier step must agree on the next action."""
    next_action: dict[tuple[tuple[str, Any], ...], tuple[str, str]] = {}
    for file, story in all_stories():
        if "rule" in story:
            continue
        history: list[tuple[str, Any]] = []
        for step in story["steps"]:
            for key in ("intent", "action", "active_loop"):
                if key not in step:
                    continue
                if key == "action":
                    seen = next_action.setdefault(
                        tuple(history), (step["action"], label(file, story))
                    )
                    assert seen[0] == step["action"], (
                        f"{label(file, story)} predicts {step['action']} where {seen[1]} "
                        f"predicts {seen[0]}"
                    )
                history.append((key, step[key]))


def one_step_rules() -> dict[str, str]:
    """Intent -> first action of every rule that starts with that intent and has no condition."""
    rules = load_yaml(BOT / "data" / "rules.yml")["rules"]
    mapping = {}
    for rule in rules:
        steps = rule["steps"]
        if "condition" not in rule and "intent" in steps[0]:
            mapping[steps[0]["intent"]] = steps[1]["action"]
    return mapping


def test_stories_follow_the_unconditional_rules() -> None:
    rules = one_step_rules()
    assert rules["book_repair"] == "repair_form"
    assert rules["nlu_fallback"] == "utter_default"
    for file, story in all_stories():
        steps = story["steps"]
        for index, step in enumerate(steps):
            if step.get("intent") in rules:
                following = next((s["action"] for s in steps[index + 1 :] if "action" in s), None)
                if following is not None:
                    assert following == rules[step["intent"]], f"{label(file, story)}"


def test_every_completed_form_is_submitted_like_the_submit_rule() -> None:
    rules = load_yaml(BOT / "data" / "rules.yml")["rules"]
    submit = [r for r in rules if r.get("condition") == [{"active_loop": "repair_form"}]]
    submit = [r for r in submit if r["steps"][0] == {"action": "repair_form"}]
    assert len(submit) == 1, "exactly one submit rule"
    expected = [s["action"] for s in submit[0]["steps"][1:] if "action" in s]
    assert expected == ["action_book_repair", "utter_booking_confirmed"]
    checked = 0
    for file, story in all_stories():
        steps = story["steps"]
        for index, step in enumerate(steps[:-1]):
            if step == {"action": "repair_form"} and steps[index + 1] == {"active_loop": None}:
                actions = [s["action"] for s in steps[index + 2 :] if "action" in s]
                assert actions[: len(expected)] == expected, label(file, story)
                checked += 1
    assert checked >= 4


def test_test_stories_cover_the_demo() -> None:
    stories = story_files()["tests/test_stories.yml"]
    assert len(stories) >= 8
    intents: set[str] = set()
    actions: set[str] = set()
    loops: set[str | None] = set()
    for story in stories:
        for step in story["steps"]:
            if "user" in step:
                assert "intent" in step, f"{story['story']}: user text without an intent"
            intents.add(step.get("intent", ""))
            actions.add(step.get("action", ""))
            if "active_loop" in step:
                loops.add(step["active_loop"])
    assert {
        "book_repair",
        "inform",
        "stop",
        "ask_reminder",
        "cancel_reminder",
        "EXTERNAL_pickup_reminder",
        "human_handoff",
        "nlu_fallback",
        "ask_opening_hours",
        "check_status",
    } <= intents
    assert {
        "action_book_repair",
        "action_set_pickup_reminder",
        "action_cancel_pickup_reminder",
        "action_handoff",
        "action_deactivate_loop",
        "utter_default",
    } <= actions
    assert loops == {"repair_form", None}
