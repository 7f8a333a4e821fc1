"""Rasa 3.x's RulePolicy: rules, conversation starts, loops, defaults, fallback and checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActiveLoop,
    Event,
    LoopInterrupted,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from schemas.project.loader import Project, load_project
from services.dialogue.policies.base import RULE_POLICY_PRIORITY, SupportedData
from services.dialogue.policies.rule import InvalidRule, RulePolicy
from services.dialogue.states import RuleOnlyData
from services.dialogue.training_data import training_trackers

DOMAIN = """version: "3.1"
intents: [greet, inform, affirm, deny, goodbye, thanks, faq, explain, ask_form, chitchat]
entities: [city]
slots:
  city:
    type: text
    mappings: [{type: from_entity, entity: city}]
  vip:
    type: bool
    mappings: [{type: custom}]
  detailed:
    type: bool
    mappings: [{type: custom}]
forms:
  city_form:
    required_slots: [city]
responses:
  utter_greet: [{text: "Hi"}]
  utter_welcome_back: [{text: "Hi again"}]
  utter_ok: [{text: "OK"}]
  utter_bye: [{text: "Bye"}]
  utter_vip: [{text: "Welcome back"}]
  utter_faq: [{text: "FAQ"}]
  utter_ask_help: [{text: "Did that help?"}]
  utter_more: [{text: "More"}]
  utter_explain: [{text: "We need your city"}]
  utter_chitchat: [{text: "Chit chat"}]
  utter_submit: [{text: "Done"}]
  utter_default: [{text: "Sorry?"}]
  utter_ask_city: [{text: "Which city?"}]
"""

RULES = """- rule: start
  conversation_start: true
  steps:
  - intent: greet
  - action: utter_greet
- rule: greet again
  steps:
  - intent: greet
  - action: utter_welcome_back
- rule: bye
  steps:
  - intent: goodbye
  - action: utter_bye
- rule: vip thanks
  condition:
  - slot_was_set:
    - vip: true
  steps:
  - intent: thanks
  - action: utter_vip
- rule: plain thanks
  condition:
  - slot_was_set:
    - vip: null
  steps:
  - intent: thanks
  - action: utter_ok
- rule: detailed faq
  condition:
  - slot_was_set:
    - detailed: true
  steps:
  - intent: faq
  - action: utter_faq
  wait_for_user_input: false
- rule: faq follow-up
  condition:
  - slot_was_set:
    - detailed: true
  steps:
  - action: utter_faq
  - action: utter_ask_help
- rule: activate form
  steps:
  - intent: ask_form
  - action: city_form
  - active_loop: city_form
- rule: explain inside the form
  condition:
  - active_loop: city_form
  steps:
  - intent: explain
  - action: utter_explain
  - action: city_form
  - active_loop: city_form
- rule: chitchat
  steps:
  - intent: chitchat
  - action: utter_chitchat
- rule: submit form
  condition:
  - active_loop: city_form
  steps:
  - action: city_form
  - active_loop: null
  - action: utter_submit
"""

STORIES = """- story: greet and inform
  steps:
  - intent: greet
  - action: utter_greet
  - intent: inform
  - action: utter_ok
"""


def project(
    tmp_path: Path,
    rules: str = RULES,
    stories: str = STORIES,
    domain: str = DOMAIN,
    config: str = "",
) -> Project:
    root = tmp_path / "bot"
    (root / "data").mkdir(parents=True, exist_ok=True)
    text = 'version: "3.1"\nlanguage: en\n' + config
    (root / "config.yml").write_text(text, encoding="utf-8")
    (root / "domain.yml").write_text(domain, encoding="utf-8")
    for key, body in (("stories", stories), ("rules", rules)):
        path = root / "data" / f"{key}.yml"
        if body:
            path.write_text(f'version: "3.1"\n{key}:\n{body}', encoding="utf-8")
        elif path.exists():
            path.unlink()
    return load_project(root)


def trained(p: Project, **options: Any) -> RulePolicy:
    policy = RulePolicy(**options)
    policy.train(training_trackers(p), p.domain)
    return policy


def user(intent: str, text: str | None = None, confidence: float = 1.0) -> UserUttered:
    data = {"intent": {"name": intent, "confidence": confidence}, "entities": []}
    return UserUttered(text=text, parse_data=data)


def action(name: str) -> ActionExecuted:
    return ActionExecuted(name=name)


LISTEN = action("action_listen")
START: list[Event] = [action("action_session_start"), SessionStarted(), LISTEN]


def said(*events: Event) -> list[Event]:
    return [*START, *events]


def test_a_rule_predicts_its_action_then_listens_and_falls_back_otherwise(
    tmp_path: Path,
) -> None:
    p = project(tmp_path)
    policy = trained(p)
    assert (policy.name, policy.priority, policy.supported_data) == (
        "RulePolicy",
        RULE_POLICY_PRIORITY,
        SupportedData.ML_AND_RULE_DATA,
    )
    prediction = policy.predict(said(user("goodbye")), p.domain)
    assert prediction.probabilities == {"action_default_fallback": 0.3, "utter_bye": 1.0}
    assert prediction.action == "utter_bye"
    assert not prediction.is_end_to_end_prediction
    after = said(user("goodbye"), action("utter_bye"))
    assert policy.predict(after, p.domain).action == "action_listen"
    # No rule for `inform`: only the core fallback, at the threshold.
    nothing = policy.predict(said(user("inform")), p.domain)
    assert nothing.probabilities == {"action_default_fallback": 0.3}
    assert nothing.policy_name == "RulePolicy"


def test_conversation_start_rules_apply_only_at_the_start(tmp_path: Path) -> None:
    p = project(tmp_path)
    policy = trained(p)
    assert policy.predict(said(user("greet")), p.domain).action == "utter_greet"
    later = said(user("goodbye"), action("utter_bye"), LISTEN, user("greet"))
    assert policy.predict(later, p.domain).action == "utter_welcome_back"
    # Without a session start too: the first state has no previous action.
    assert policy.predict([LISTEN, user("greet")], p.domain).action == "utter_greet"


def test_slot_conditions_and_should_not_be_set(tmp_path: Path) -> None:
    p = project(tmp_path)
    policy = trained(p)
    assert policy.predict(said(user("thanks")), p.domain).action == "utter_ok"
    vip = said(SlotSet(name="vip", value=True), user("thanks"))
    assert policy.predict(vip, p.domain).action == "utter_vip"
    # `vip: false` is set, so "vip: null" does not hold and "vip: true" does not match.
    not_vip = said(SlotSet(name="vip", value=False), user("thanks"))
    assert policy.predict(not_vip, p.domain).action == "action_default_fallback"


def test_wait_for_user_input_false_lets_another_rule_continue(tmp_path: Path) -> None:
    p = project(tmp_path)
    policy = trained(p)
    events = said(SlotSet(name="detailed", value=True), user("faq"))
    assert policy.predict(events, p.domain).action == "utter_faq"
    events.append(action("utter_faq"))
    assert policy.predict(events, p.domain).action == "utter_ask_help"
    events.append(action("utter_ask_help"))
    assert policy.predict(events, p.domain).action == "action_listen"
    # Without the slot the first rule does not apply.
    assert policy.predict(said(user("faq")), p.domain).action == "action_default_fallback"


def test_the_active_loop_runs_until_rejected_then_rules_take_over(tmp_path: Path) -> None:
    p = project(tmp_path)
    policy = trained(p)
    events = said(user("ask_form"))
    assert policy.predict(events, p.domain).action == "city_form"
    events += [action("city_form"), ActiveLoop(name="city_form")]
    after_form = policy.predict(events, p.domain)
    assert (after_form.action, after_form.is_no_user_prediction) == ("action_listen", True)
    events += [LISTEN, user("inform")]
    happy = policy.predict(events, p.domain)
    assert (happy.action, happy.is_no_user_prediction) == ("city_form", True)
    assert happy.probabilities["city_form"] == 1.0
    # The form rejects `chitchat`: a general rule answers, then the loop comes back.
    events += [ActionExecutionRejected(name="city_form")]
    assert policy.predict(events, p.domain).action == "action_default_fallback"
    events = [*events[:-2], user("chitchat"), ActionExecutionRejected(name="city_form")]
    assert policy.predict(events, p.domain).action == "utter_chitchat"
    events.append(action("utter_chitchat"))
    back = policy.predict(events, p.domain)
    assert (back.action, back.is_no_user_prediction) == ("city_form", False)
    # The form finished: the submit rule follows it.
    done = said(user("ask_form"), action("city_form"), ActiveLoop(name=None))
    assert policy.predict(done, p.domain).action == "utter_submit"


def test_unhappy_path_rules_inside_the_loop(tmp_path: Path) -> None:
    p = project(tmp_path)
    policy = trained(p)
    events = said(user("ask_form"), action("city_form"), ActiveLoop(name="city_form"), LISTEN)
    events += [user("explain"), ActionExecutionRejected(name="city_form")]
    assert policy.predict(events, p.domain).action == "utter_explain"
    events.append(action("utter_explain"))
    assert policy.predict(events, p.domain).action == "city_form"
    events.append(action("city_form"))
    assert policy.predict(events, p.domain).action == "action_listen"


LOOP_STORY = """- story: form interrupted
  steps:
  - intent: ask_form
  - action: city_form
  - active_loop: city_form
  - intent: chitchat
  - action: utter_chitchat
  - intent: affirm
  - action: city_form
"""


def test_a_loop_resumed_after_the_user_strayed_is_told_it_was_interrupted(
    tmp_path: Path,
) -> None:
    p = project(tmp_path, stories=LOOP_STORY)
    policy = trained(p)
    assert "loop_was_interrupted" in policy.lookup.rules_for_loop_unhappy_path.values()
    events = said(user("ask_form"), action("city_form"), ActiveLoop(name="city_form"), LISTEN)
    events += [user("chitchat"), ActionExecutionRejected(name="city_form")]
    events += [action("utter_chitchat"), LISTEN, user("affirm")]
    prediction = policy.predict(events, p.domain)
    # The rule policy has no rule here, but it tells the loop it comes back from a detour.
    assert prediction.action == "action_default_fallback"
    assert prediction.events == (LoopInterrupted(is_interrupted=True),)


@pytest.mark.parametrize(
    ("intent", "expected"),
    [
        ("restart", "action_restart"),
        ("back", "action_back"),
        ("session_start", "action_session_start"),
    ],
)
def test_default_intents_trigger_default_actions(
    tmp_path: Path, intent: str, expected: str
) -> None:
    p = project(tmp_path)
    policy = trained(p)
    prediction = policy.predict(said(user(intent)), p.domain)
    assert prediction.action == expected
    # Even inside a loop: defaults come first.
    in_form = said(user("ask_form"), action("city_form"), ActiveLoop(name="city_form"), LISTEN)
    assert policy.predict([*in_form, user(intent)], p.domain).action == expected
    # They are rules no story uses: their turns are hidden from the other policies.
    assert prediction.hide_rule_turn


NLU_FALLBACK_RULE = """- rule: nlu fallback
  steps:
  - intent: nlu_fallback
  - action: utter_default
"""


def test_nlu_fallback_is_handled_by_the_bots_rule(tmp_path: Path) -> None:
    p = project(tmp_path, rules=NLU_FALLBACK_RULE, stories="")
    policy = trained(p)
    assert policy.predict(said(user("nlu_fallback")), p.domain).action == "utter_default"


def test_core_fallback_options(tmp_path: Path) -> None:
    p = project(tmp_path)
    custom = trained(p, core_fallback_threshold=0.4, core_fallback_action_name="utter_default")
    assert custom.predict(said(user("inform")), p.domain).probabilities == {"utter_default": 0.4}
    disabled = trained(p, enable_fallback_prediction=False)
    assert disabled.predict(said(user("inform")), p.domain).probabilities == {}
    assert disabled.predict(said(user("goodbye")), p.domain).probabilities == {"utter_bye": 1.0}
    with pytest.raises(ValueError, match="utter_missing"):
        trained(p, core_fallback_action_name="utter_missing")
    scored = trained(p, use_nlu_confidence_as_score=True)
    prediction = scored.predict(said(user("goodbye", confidence=0.6)), p.domain)
    assert prediction.probabilities["utter_bye"] == 0.6


def test_end_to_end_rules_match_the_text_first(tmp_path: Path) -> None:
    rules = (
        RULES
        + """- rule: by text
  steps:
  - user: "see you"
  - action: utter_ok
"""
    )
    p = project(tmp_path, rules=rules)
    policy = trained(p)
    prediction = policy.predict(said(user("goodbye", text="see you")), p.domain)
    assert (prediction.action, prediction.is_end_to_end_prediction) == ("utter_ok", True)
    by_intent = policy.predict(said(user("goodbye", text="bye now")), p.domain)
    assert (by_intent.action, by_intent.is_end_to_end_prediction) == ("utter_bye", False)


LONG_RULE = """- rule: two questions
  steps:
  - intent: greet
  - action: utter_greet
  - intent: inform
  - action: utter_ok
"""


def test_restrict_rules_rejects_rules_with_two_user_turns(tmp_path: Path) -> None:
    p = project(tmp_path, rules=LONG_RULE, stories="")
    with pytest.raises(InvalidRule, match=r"'two questions'.*more than 1 user message"):
        trained(p)
    policy = trained(p, restrict_rules=False)
    events = said(user("greet"), action("utter_greet"), LISTEN, user("inform"))
    assert policy.predict(events, p.domain).action == "utter_ok"


CONTRADICTING_RULES = """- rule: polite bye
  steps:
  - intent: goodbye
  - action: utter_bye
- rule: terse bye
  steps:
  - intent: goodbye
  - action: utter_ok
"""

STORY_AGAINST_RULE = """- story: bye differently
  steps:
  - intent: goodbye
  - action: utter_ok
"""


def test_contradicting_rules_raise_with_their_names(tmp_path: Path) -> None:
    p = project(tmp_path, rules=CONTRADICTING_RULES, stories="")
    with pytest.raises(InvalidRule, match="Contradicting") as raised:
        trained(p)
    assert "polite bye" in str(raised.value)
    assert "terse bye" in str(raised.value)
    # Unchecked, the ambiguous rules are simply forgotten.
    policy = trained(p, check_for_contradictions=False)
    assert policy.predict(said(user("goodbye")), p.domain).action == "action_default_fallback"


def test_a_story_contradicting_a_rule_raises(tmp_path: Path) -> None:
    p = project(tmp_path, rules=CONTRADICTING_RULES.split("- rule: terse")[0], stories="")
    trained(p)
    p = project(
        tmp_path, rules=CONTRADICTING_RULES.split("- rule: terse")[0], stories=(STORY_AGAINST_RULE)
    )
    with pytest.raises(InvalidRule, match=r"story 'bye differently'.*'polite bye'.*'utter_bye'"):
        trained(p)


INCOMPLETE = """- rule: form sets a loop
  steps:
  - intent: ask_form
  - action: city_form
  - active_loop: city_form
- rule: form without loop
  steps:
  - intent: explain
  - action: city_form
  - action: utter_ok
"""


def test_incomplete_rules_raise_with_the_rule_name(tmp_path: Path) -> None:
    p = project(tmp_path, rules=INCOMPLETE, stories="")
    with pytest.raises(
        InvalidRule, match=r"(?s)Incomplete.*'city_form' in rule 'form without loop'"
    ):
        trained(p)
    trained(p, check_for_contradictions=False)


def test_rule_only_slots_and_loops_and_hidden_rule_turns(tmp_path: Path) -> None:
    p = project(tmp_path)
    policy = trained(p)
    assert policy.rule_only_data == RuleOnlyData(
        frozenset({"vip", "detailed"}), frozenset({"city_form"})
    )
    # The story uses the start rule: its turn is not hidden; the bye rule is not in stories.
    assert not policy.predict(said(user("greet")), p.domain).hide_rule_turn
    assert policy.predict(said(user("goodbye")), p.domain).hide_rule_turn
    unchecked = trained(p, check_for_contradictions=False)
    assert unchecked.rule_only_data == RuleOnlyData()
    assert not unchecked.predict(said(user("goodbye")), p.domain).hide_rule_turn


def test_the_rule_policy_round_trips_through_json(tmp_path: Path) -> None:
    p = project(tmp_path)
    policy = trained(p, core_fallback_threshold=0.25, priority=7)
    data = json.loads(json.dumps(policy.to_json()))
    assert (data["policy"], data["version"]) == ("RulePolicy", 1)
    loaded = RulePolicy.from_json(data)
    assert loaded.to_json() == policy.to_json()
    conversations = [
        said(user("goodbye")),
        said(user("greet")),
        said(SlotSet(name="detailed", value=True), user("faq"), action("utter_faq")),
        said(user("ask_form"), action("city_form"), ActiveLoop(name="city_form")),
    ]
    for events in conversations:
        assert loaded.predict(events, p.domain) == policy.predict(events, p.domain)
    with pytest.raises(ValueError, match="version"):
        RulePolicy.from_json({**data, "version": 2})
    with pytest.raises(ValueError, match="cannot load"):
        RulePolicy.from_json({**data, "policy": "MemoizationPolicy"})
    with pytest.raises(ValueError, match="rules"):
        RulePolicy.from_json({**data, "lookup": {"rules": {"[]": 1}}})
    with pytest.raises(ValueError, match="core_fallback_threshold"):
        RulePolicy(core_fallback_threshold=1.5)
