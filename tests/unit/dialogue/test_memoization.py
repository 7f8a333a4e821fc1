"""Training trackers from stories and rules, and the (augmented) memoization policy."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from schemas.events import (
    ActionExecuted,
    ActiveLoop,
    DefinePrevUserUtteredFeaturization,
    Event,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from schemas.project.config import Component, Config
from schemas.project.loader import Project, load_project
from schemas.project.problems import Source
from schemas.project.stories import UserStep
from services.dialogue.model import train_core
from services.dialogue.policies import (
    MEMOIZATION_POLICY_PRIORITY,
    AugmentedMemoizationPolicy,
    MemoizationPolicy,
    Policy,
    PolicyEnsemble,
    PolicyPrediction,
    RulePolicy,
    SupportedData,
)
from services.dialogue.test_stories_cli import StoryTester
from services.dialogue.tracker import replay
from services.dialogue.training_data import (
    TrainingTracker,
    rule_trackers,
    story_trackers,
    training_trackers,
)

DOMAIN = """version: "3.1"
intents: [greet, inform, affirm, goodbye, thanks, bot_challenge]
entities: [city]
slots:
  city: {type: text, mappings: [{type: from_entity, entity: city}]}
  vip: {type: bool, mappings: [{type: custom}]}
forms:
  city_form:
    required_slots: [city]
responses:
  utter_greet: [{text: "Hi"}]
  utter_ok: [{text: "OK"}]
  utter_bye: [{text: "Bye"}]
  utter_welcome: [{text: "Welcome"}]
  utter_vip: [{text: "Welcome back"}]
  utter_iamabot: [{text: "I am a bot"}]
"""

STORIES = """- story: greet
  steps:
  - intent: greet
  - action: utter_greet
  - checkpoint: greeted
- story: city
  steps:
  - checkpoint: greeted
  - or:
    - intent: affirm
    - intent: inform
      entities:
      - city: Rome
  - action: utter_ok
- story: bye
  steps:
  - checkpoint: greeted
  - intent: goodbye
  - action: utter_bye
- story: bot starts
  steps:
  - action: utter_greet
  - intent: thanks
  - action: utter_welcome
"""

RULES = """- rule: challenge
  steps:
  - intent: bot_challenge
  - action: utter_iamabot
- rule: vip thanks
  condition:
  - slot_was_set:
    - vip: true
  - active_loop: null
  steps:
  - intent: thanks
  - action: utter_vip
  wait_for_user_input: false
- rule: start
  conversation_start: true
  steps:
  - intent: greet
  - action: utter_greet
"""


def project(tmp_path: Path, stories: str = STORIES, rules: str = RULES) -> Project:
    root = tmp_path / "bot"
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "config.yml").write_text('version: "3.1"\nlanguage: en\n', encoding="utf-8")
    (root / "domain.yml").write_text(DOMAIN, encoding="utf-8")
    for key, body in (("stories", stories), ("rules", rules)):
        if body:
            text = f'version: "3.1"\n{key}:\n{body}'
            (root / "data" / f"{key}.yml").write_text(text, encoding="utf-8")
    return load_project(root)


def user(intent: str, *entities: dict[str, Any], confidence: float = 1.0) -> UserUttered:
    data = {"intent": {"name": intent, "confidence": confidence}, "entities": list(entities)}
    return UserUttered(parse_data=data)


def action(name: str) -> ActionExecuted:
    return ActionExecuted(name=name)


LISTEN = action("action_listen")


def describe(events: tuple[Event, ...] | list[Event]) -> list[str]:
    out = []
    for e in events:
        if isinstance(e, UserUttered):
            out.append(f"user:{e.intent_name}")
        elif isinstance(e, ActionExecuted):
            out.append(e.name or f"bot:{e.action_text}")
        elif isinstance(e, SlotSet):
            out.append(f"slot:{e.name}={e.value}")
        elif isinstance(e, ActiveLoop):
            out.append(f"loop:{e.name}")
        else:
            out.append(e.event)
    return out


GREETED = ["action_listen", "user:greet", "utter_greet"]
VIP = ["slot:vip=True", "loop:should_not_be_set", "..."]


def test_stories_become_trackers_with_checkpoints_joined_and_ors_expanded(
    tmp_path: Path,
) -> None:
    p = project(tmp_path)
    trackers = story_trackers(p.stories, p.domain)
    assert [(t.name, describe(t.events)) for t in trackers] == [
        (
            "greet > city",
            [*GREETED, "action_listen", "user:affirm", "utter_ok", "action_listen"],
        ),
        (
            "greet > city",
            [
                *GREETED,
                "action_listen",
                "user:inform",
                "slot:city=Rome",
                "utter_ok",
                "action_listen",
            ],
        ),
        (
            "greet > bye",
            [*GREETED, "action_listen", "user:goodbye", "utter_bye", "action_listen"],
        ),
        (
            "bot starts",
            ["utter_greet", "action_listen", "user:thanks", "utter_welcome", "action_listen"],
        ),
    ]
    assert [t.unpredictable for t in trackers] == [frozenset()] * 3 + [frozenset({0})]
    assert trackers[3].labels == ["action_listen", "utter_welcome", "action_listen"]
    assert not any(t.is_rule for t in trackers)


def test_rules_become_rule_trackers_with_snippets_and_should_not_be_set(tmp_path: Path) -> None:
    p = project(tmp_path)
    trackers = rule_trackers(p.rules, p.domain)
    assert [(t.name, describe(t.events)) for t in trackers] == [
        (
            "challenge",
            ["...", "action_listen", "user:bot_challenge", "utter_iamabot", "action_listen"],
        ),
        (
            "vip thanks",
            [*VIP, "action_listen", "user:thanks", "utter_vip", "...", "action_listen"],
        ),
        ("start", ["action_listen", "user:greet", "utter_greet", "action_listen"]),
    ]
    assert all(t.is_rule for t in trackers)
    # The snippet stands for "anything before": it is not a label.
    assert trackers[0].labels == ["action_listen", "utter_iamabot", "action_listen"]
    assert len(training_trackers(p)) == 7


def trained(cls: type[MemoizationPolicy], p: Project, **options: Any) -> MemoizationPolicy:
    policy = cls(**options)
    policy.train(training_trackers(p), p.domain)
    return policy


def test_memoization_recalls_story_turns(tmp_path: Path) -> None:
    p = project(tmp_path)
    policy = trained(MemoizationPolicy, p)
    inform = user("inform", {"entity": "city", "value": "Rome"})
    events: list[Event] = [LISTEN, user("greet"), action("utter_greet"), LISTEN, inform]
    assert policy.predict(events[:2], p.domain).action == "utter_greet"
    assert policy.predict(events[:3], p.domain).action == "action_listen"
    # The story set the slot from the entity: so must the conversation.
    assert policy.predict(events, p.domain).action is None
    prediction = policy.predict([*events, SlotSet(name="city", value="Rome")], p.domain)
    assert prediction == PolicyPrediction(
        {"utter_ok": 1.0}, "MemoizationPolicy", MEMOIZATION_POLICY_PRIORITY
    )
    # Rules are the rule policy's: memoization learns from stories only.
    assert policy.predict([LISTEN, user("bot_challenge")], p.domain).action is None
    story_only = MemoizationPolicy()
    story_only.train(story_trackers(p.stories, p.domain), p.domain)
    assert story_only.lookup == policy.lookup


def test_memoization_looks_at_max_history_states_only(tmp_path: Path) -> None:
    p = project(tmp_path)
    full, short = trained(MemoizationPolicy, p), trained(MemoizationPolicy, p, max_history=2)
    greeted: list[Event] = [LISTEN, user("greet"), action("utter_greet")]
    events: list[Event] = [*greeted, LISTEN, user("goodbye"), action("utter_bye")]
    events += [*greeted, LISTEN, user("affirm")]
    assert full.predict(events, p.domain).action is None
    assert short.predict(events, p.domain).action == "utter_ok"
    assert full.predict(events[-5:], p.domain).action == "utter_ok"


CONTRADICTING = """- story: polite
  steps:
  - intent: greet
  - action: utter_greet
- story: terse
  steps:
  - intent: greet
  - action: utter_ok
- story: polite again
  steps:
  - intent: greet
  - action: utter_greet
  - intent: thanks
  - action: utter_welcome
"""


def test_contradicting_examples_are_dropped_for_good(tmp_path: Path) -> None:
    p = project(tmp_path, CONTRADICTING, rules="")
    policy = trained(MemoizationPolicy, p)
    # Seen with utter_greet, then utter_ok, then utter_greet again: never learned.
    assert policy.predict([LISTEN, user("greet")], p.domain).action is None
    after_greet = [LISTEN, user("greet"), action("utter_greet")]
    assert policy.predict(after_greet, p.domain).action == "action_listen"
    assert policy.predict([*after_greet, LISTEN, user("thanks")], p.domain).action == (
        "utter_welcome"
    )
    assert len(policy.lookup) == 5


def test_augmented_memoization_forgets_old_turns_and_their_slots(tmp_path: Path) -> None:
    p = project(tmp_path)
    events: list[Event] = [
        LISTEN,
        user("inform", {"entity": "city", "value": "Rome"}),
        SlotSet(name="city", value="Rome"),
        SlotSet(name="vip", value=True),
        action("utter_ok"),
        LISTEN,
        user("greet"),
        action("utter_greet"),
        LISTEN,
        user("affirm"),
    ]
    for max_history in (None, 2):
        plain = trained(MemoizationPolicy, p, max_history=max_history)
        augmented = trained(AugmentedMemoizationPolicy, p, max_history=max_history)
        assert plain.lookup == augmented.lookup
        assert plain.predict(events, p.domain).action is None
        # From the second listen on, the slots set before are forgotten: "greet > city" matches.
        prediction = augmented.predict(events, p.domain)
        assert prediction.action == "utter_ok"
        assert prediction.policy_name == "AugmentedMemoizationPolicy"
        # A slot set before the first action is forgotten at the first try.
        leading_slot: list[Event] = [SlotSet(name="vip", value=True), *events[5:]]
        assert plain.predict(leading_slot, p.domain).action is None
        assert augmented.predict(leading_slot, p.domain).action == "utter_ok"
    assert augmented.predict([LISTEN, user("bot_challenge")], p.domain).action is None


END_TO_END = """- story: e2e
  steps:
  - user: "I had that yesterday"
  - bot: "Something else, then?"
  - intent: affirm
  - action: utter_ok
"""


def test_end_to_end_turns_are_remembered_and_recalled_by_text(tmp_path: Path) -> None:
    p = project(tmp_path, END_TO_END, rules="")
    (tracker,) = story_trackers(p.stories, p.domain)
    assert describe(tracker.events) == [
        *("action_listen", "user:None", "bot:Something else, then?"),
        *("action_listen", "user:affirm", "utter_ok", "action_listen"),
    ]
    policy = trained(MemoizationPolicy, p)
    said = UserUttered(text="I had that yesterday")
    assert (
        policy.lookup[
            "[{}, {prev_action: {action_name: action_listen}, user: {text: I had that yesterday}}]"
        ]
        == "Something else, then?"
    )
    assert policy.end_to_end_texts == {"I had that yesterday"}
    prediction = policy.predict([LISTEN, said], p.domain)
    assert prediction.probabilities == {"Something else, then?": 1.0}
    assert prediction.is_end_to_end_prediction
    events: list[Event] = [LISTEN, said, ActionExecuted(action_text="Something else, then?")]
    after = policy.predict(events, p.domain)
    assert (after.action, after.is_end_to_end_prediction) == ("action_listen", False)
    assert policy.predict([*events, LISTEN, user("affirm")], p.domain).action == "utter_ok"


TEXT_OR_INTENT = """- story: declines by text
  steps:
  - intent: greet
  - action: utter_greet
  - user: "I had that yesterday"
  - action: utter_ok
- story: agrees
  steps:
  - intent: greet
  - action: utter_greet
  - intent: affirm
  - action: utter_bye
- story: affirm first
  steps:
  - intent: affirm
  - action: utter_welcome
"""


def said(text: str, intent: str = "affirm") -> UserUttered:
    """A user message as the NLU worker sends it: text and the intent NLU predicted."""
    return UserUttered(text=text, parse_data={"intent": {"name": intent, "confidence": 0.6}})


GREETED_EVENTS: list[Event] = [LISTEN, user("greet"), action("utter_greet"), LISTEN]


@pytest.mark.parametrize("cls", [MemoizationPolicy, AugmentedMemoizationPolicy])
def test_a_seen_end_to_end_text_is_looked_up_before_the_intent(
    tmp_path: Path, cls: type[MemoizationPolicy]
) -> None:
    p = project(tmp_path, TEXT_OR_INTENT, rules="")
    policy = trained(cls, p)
    assert policy.end_to_end_texts == {"I had that yesterday"}

    def predict(events: list[Event]) -> tuple[str | None, bool]:
        prediction = policy.predict(events, p.domain)
        with_state = policy.predict(events, p.domain, state=replay(events, {}))
        assert with_state == prediction, "the tracker state gives the same answer"
        return prediction.action, prediction.is_end_to_end_prediction

    # NLU says affirm, but the text is the story's end-to-end text: the text wins.
    assert predict([*GREETED_EVENTS, said("I had that yesterday")]) == ("utter_ok", True)
    # Rasa's story reader strips texts; typed spaces and newlines do not matter.
    assert predict([*GREETED_EVENTS, said("  I had that yesterday \n")]) == ("utter_ok", True)
    # A text training never saw (or saw with another case) goes by the intent.
    assert predict([*GREETED_EVENTS, said("sure")]) == ("utter_bye", False)
    assert predict([*GREETED_EVENTS, said("i had that yesterday")]) == ("utter_bye", False)
    # The text is known, but not after this history: the intent state is looked up next.
    assert predict([LISTEN, said("I had that yesterday")]) == ("utter_welcome", False)
    # Neither the text nor the intent after this history: nothing to recall.
    assert predict([LISTEN, said("I had that yesterday", "goodbye")]) == (None, False)


def test_augmented_memoization_forgets_old_turns_for_the_text_too(tmp_path: Path) -> None:
    p = project(tmp_path, TEXT_OR_INTENT, rules="")
    earlier: list[Event] = [LISTEN, user("thanks"), action("utter_welcome")]
    events = [*earlier, *GREETED_EVENTS, said("I had that yesterday", "goodbye")]
    assert trained(MemoizationPolicy, p).predict(events, p.domain).action is None
    prediction = trained(AugmentedMemoizationPolicy, p).predict(events, p.domain)
    assert (prediction.action, prediction.is_end_to_end_prediction) == ("utter_ok", True)


def test_the_ensemble_marks_a_text_recall_so_later_turns_see_the_text(tmp_path: Path) -> None:
    p = project(tmp_path, TEXT_OR_INTENT, rules="")
    ensemble = PolicyEnsemble([RulePolicy(), MemoizationPolicy()])
    ensemble.train(training_trackers(p), p.domain)
    events: list[Event] = [*GREETED_EVENTS, said("I had that yesterday")]
    best = ensemble.predict(events, p.domain)
    assert (best.action, best.policy_name) == ("utter_ok", "MemoizationPolicy")
    assert DefinePrevUserUtteredFeaturization(use_text_for_featurization=True) in best.events
    # With the turn featurized by its text, the next state is the one training saw.
    events += [*best.events, action("utter_ok")]
    assert ensemble.predict(events, p.domain).action == "action_listen"
    # Without the mark the turn counts by intent and text: no story goes on from there.
    unmarked: list[Event] = [*GREETED_EVENTS, said("I had that yesterday"), action("utter_ok")]
    memo = ensemble.policies[1]
    assert memo.predict(unmarked, p.domain).action is None


def test_a_ted_only_config_gets_rules_and_memoization_in_its_place(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = Source(Path("config.yml"), 1)
    ted = Component("TEDPolicy", source, {"epochs": 200, "max_history": 4})
    with caplog.at_level(logging.WARNING):
        ensemble = PolicyEnsemble.from_config(Config(policies=(ted,)))
    rule, memo = ensemble.policies
    assert isinstance(rule, RulePolicy)
    assert type(memo) is MemoizationPolicy
    assert memo.max_history == 4
    assert "RulePolicy and MemoizationPolicy stand in for it" in caplog.text
    # With another policy Parley builds, TED is skipped and nothing stands in.
    rules_too = Config(policies=(ted, Component("RulePolicy", source)))
    assert [p.name for p in PolicyEnsemble.from_config(rules_too).policies] == ["RulePolicy"]
    with pytest.raises(ValueError, match="none of the configured policies"):
        PolicyEnsemble.from_config(Config(policies=(Component("UnexpecTEDIntentPolicy", source),)))


def test_nlu_confidence_can_be_the_score(tmp_path: Path) -> None:
    p = project(tmp_path)
    policy = trained(MemoizationPolicy, p, use_nlu_confidence_as_score=True)
    prediction = policy.predict([LISTEN, user("greet", confidence=0.75)], p.domain)
    assert prediction.probabilities == {"utter_greet": 0.75}
    assert prediction.max_confidence == 0.75


@pytest.mark.parametrize("cls", [MemoizationPolicy, AugmentedMemoizationPolicy])
def test_the_trained_lookup_round_trips_through_json(
    tmp_path: Path, cls: type[MemoizationPolicy]
) -> None:
    p = project(tmp_path)
    policy = trained(cls, p, max_history=3)
    data = json.loads(json.dumps(policy.to_json()))
    loaded = cls.from_json(data)
    assert isinstance(loaded, cls)
    assert (loaded.lookup, loaded.max_history, loaded.priority) == (policy.lookup, 3, 3)
    assert (data["policy"], data["version"]) == (cls.__name__, 2)
    events: list[Event] = [LISTEN, user("greet")]
    assert loaded.predict(events, p.domain) == policy.predict(events, p.domain)


def test_end_to_end_texts_round_trip_and_version_1_layouts_load_without_them(
    tmp_path: Path,
) -> None:
    p = project(tmp_path, TEXT_OR_INTENT, rules="")
    policy = trained(MemoizationPolicy, p)
    data = json.loads(json.dumps(policy.to_json()))
    assert data["end_to_end_texts"] == ["I had that yesterday"]
    events: list[Event] = [*GREETED_EVENTS, said("I had that yesterday")]
    assert MemoizationPolicy.from_json(data).predict(events, p.domain).action == "utter_ok"
    old = {k: v for k, v in data.items() if k != "end_to_end_texts"} | {"version": 1}
    assert MemoizationPolicy.from_json(old).end_to_end_texts == frozenset()
    assert MemoizationPolicy.from_json(old).predict(events, p.domain).action == "utter_bye"
    with pytest.raises(ValueError, match="end_to_end_texts"):
        MemoizationPolicy.from_json({**data, "end_to_end_texts": "I had that yesterday"})


def test_from_json_rejects_other_layouts() -> None:
    data = MemoizationPolicy(lookup={"[{}]": "action_listen"}).to_json()
    with pytest.raises(ValueError, match="cannot load"):
        AugmentedMemoizationPolicy.from_json(data)
    with pytest.raises(ValueError, match="version"):
        MemoizationPolicy.from_json({**data, "version": 99})
    with pytest.raises(ValueError, match="lookup"):
        MemoizationPolicy.from_json({**data, "lookup": {"[{}]": 1}})
    with pytest.raises(ValueError, match="max_history"):
        MemoizationPolicy(max_history=0)


def test_policies_share_one_protocol() -> None:
    policies: list[Policy] = [MemoizationPolicy(), AugmentedMemoizationPolicy(max_history=5)]
    assert [(p.name, p.priority) for p in policies] == [
        ("MemoizationPolicy", 3),
        ("AugmentedMemoizationPolicy", 3),
    ]
    story = TrainingTracker("s", (LISTEN,))
    rule = TrainingTracker("r", (LISTEN,), is_rule=True)
    assert SupportedData.ML_DATA.trackers([story, rule]) == [story]
    assert SupportedData.RULE_DATA.trackers([story, rule]) == [rule]
    assert SupportedData.ML_AND_RULE_DATA.trackers([story, rule]) == [story, rule]
    assert PolicyPrediction.abstain("X", 1).action is None


# Rasa 3.x's memorized_turns.json for moodbot (MemoizationPolicy, max_history None), keys
# decoded from zlib+base64. Ten of these come from a published Rasa-trained model; the two
# whose copy there was damaged (after affirm/utter_happy, after deny) follow the same rule.
RASA_MOODBOT_LOOKUP = {
    "[{}]": "action_listen",
    "[{}, {prev_action: {action_name: action_listen}, user: {intent: greet}}]": "utter_greet",
}
GREET = "{}, {prev_action: {action_name: action_listen}, user: {intent: greet}}, "
HELLO = GREET + "{prev_action: {action_name: utter_greet}, user: {intent: greet}}"
UNHAPPY = "{prev_action: {action_name: action_listen}, user: {intent: mood_unhappy}}"
CHEERED = "{prev_action: {action_name: utter_cheer_up}, user: {intent: mood_unhappy}}"
SAD = f"{HELLO}, {UNHAPPY}, {CHEERED}"
HELPED = SAD + ", {prev_action: {action_name: utter_did_that_help}, user: {intent: mood_unhappy}}"
RASA_MOODBOT_LOOKUP |= {
    f"[{HELLO}]": "action_listen",
    f"[{HELLO}, {{prev_action: {{action_name: action_listen}}, user: {{intent: mood_great}}}}]": (
        "utter_happy"
    ),
    f"[{HELLO}, {{prev_action: {{action_name: action_listen}}, user: {{intent: mood_great}}}}"
    ", {prev_action: {action_name: utter_happy}, user: {intent: mood_great}}]": "action_listen",
    f"[{HELLO}, {UNHAPPY}]": "utter_cheer_up",
    f"[{SAD}]": "utter_did_that_help",
    f"[{HELPED}]": "action_listen",
    f"[{HELPED}, {{prev_action: {{action_name: action_listen}}, user: {{intent: affirm}}}}]": (
        "utter_happy"
    ),
    f"[{HELPED}, {{prev_action: {{action_name: action_listen}}, user: {{intent: affirm}}}}"
    ", {prev_action: {action_name: utter_happy}, user: {intent: affirm}}]": "action_listen",
    f"[{HELPED}, {{prev_action: {{action_name: action_listen}}, user: {{intent: deny}}}}]": (
        "utter_goodbye"
    ),
    f"[{HELPED}, {{prev_action: {{action_name: action_listen}}, user: {{intent: deny}}}}"
    ", {prev_action: {action_name: utter_goodbye}, user: {intent: deny}}]": "action_listen",
}


@pytest.fixture(scope="module")
def moodbot(shared_dir: Path) -> Project:
    root = shared_dir / "examples" / "rasa" / "moodbot"
    if not (root / "tests" / "test_stories.yml").is_file():
        pytest.fail(f"{root} is missing the moodbot example and its test stories")
    return load_project(root)


def test_moodbot_lookup_is_the_one_rasa_learns(moodbot: Project) -> None:
    policy = trained(MemoizationPolicy, moodbot)
    assert dict(policy.lookup) == RASA_MOODBOT_LOOKUP


# moodbot's rules answer goodbye and bot_challenge anywhere; memoization learns only stories.
RULE_INTENTS = {"goodbye", "bot_challenge"}


@pytest.mark.parametrize("cls", [MemoizationPolicy, AugmentedMemoizationPolicy])
@pytest.mark.parametrize("max_history", [None, 5])
def test_moodbot_test_stories_are_predicted_step_by_step(
    moodbot: Project, cls: type[MemoizationPolicy], max_history: int | None
) -> None:
    policy = trained(cls, moodbot, max_history=max_history)
    tests = story_trackers(moodbot.test_stories, moodbot.domain)
    assert len(tests) == 7
    predicted = 0
    for test in tests:
        # A live conversation starts with a session; its start is cut from the history.
        events: list[Event] = [action("action_session_start"), SessionStarted()]
        intent: str | None = None
        for event in test.events:
            if isinstance(event, ActionExecuted) and len(events) > 2:
                expected = None if intent in RULE_INTENTS else event.name
                got = policy.predict(events, moodbot.domain).action
                assert got == expected, f"{test.name}: after {describe(events)[2:]}"
                predicted += got is not None
            if isinstance(event, UserUttered):
                assert event.text, "test stories carry the user's text as well"
                intent = event.intent_name
            events.append(event)
    assert predicted == 29


# e2ebot (../shared/examples/rasa/e2ebot) configures TEDPolicy only and has end-to-end steps.
SUSHI = "I can always go for sushi"


@pytest.fixture(scope="module")
def e2ebot(shared_dir: Path) -> Project:
    root = shared_dir / "examples" / "rasa" / "e2ebot"
    if not (root / "tests" / "test_stories.yml").is_file():
        pytest.fail(f"{root} is missing the e2ebot example and its test stories")
    return load_project(root)


class StoryNlu:
    """An NLU that predicts each test story's own intent, except where told otherwise."""

    def __init__(self, project: Project, wrong: dict[str, str]) -> None:
        self.intents = {
            step.text: step.intent
            for story in project.test_stories
            for step in story.steps
            if isinstance(step, UserStep) and step.text and step.intent
        }
        self.wrong = wrong

    async def parse(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {
                "text": text,
                "intent": {"name": self.wrong.get(text, self.intents[text]), "confidence": 0.5},
                "entities": [],
            }
            for text in texts
        ]


def test_e2ebot_learns_its_end_to_end_steps_by_text(e2ebot: Project) -> None:
    ensemble = train_core(e2ebot).ensemble
    assert [p.name for p in ensemble.policies] == ["RulePolicy", "MemoizationPolicy"]
    memo = ensemble.policies[1]
    assert isinstance(memo, MemoizationPolicy)
    assert memo.end_to_end_texts == {SUSHI, "I had that yesterday"}


@pytest.mark.parametrize("wrong", [{}, {SUSHI: "search_restaurant"}])
async def test_e2ebot_test_stories_follow_the_text_whatever_the_nlu_says(
    e2ebot: Project, wrong: dict[str, str]
) -> None:
    predictor = train_core(e2ebot).ensemble.as_predictor()
    results = await StoryTester(e2ebot, predictor, nlu=StoryNlu(e2ebot, wrong)).run(
        e2ebot.test_stories
    )
    assert len(results) == 4
    # Every action is right: after the sushi text, memoization recalls the story by the text.
    assert all(expected == got for r in results for expected, got in r.actions)
    assert sum(len(r.actions) for r in results) == 24
    # As in Rasa's `rasa test --e2e`, a wrong intent still fails its story.
    failed = {r.story.name: r.first_difference for r in results if not r.passed}
    if wrong:
        assert failed == {
            "Happy path accepts suggestion indirectly": (
                4,
                f"predicted: search_restaurant: {SUSHI}",
            )
        }
    else:
        assert failed == {}


async def test_e2ebot_without_the_text_lookup_falls_back_after_the_sushi_text(
    e2ebot: Project,
) -> None:
    ensemble = train_core(e2ebot).ensemble
    data = ensemble.to_json()
    for item in data["policies"]:
        item["data"].pop("end_to_end_texts", None)
    by_intent = PolicyEnsemble.from_json(data).as_predictor()
    nlu = StoryNlu(e2ebot, {SUSHI: "search_restaurant"})
    (result,) = await StoryTester(e2ebot, by_intent, nlu=nlu).run(e2ebot.test_stories[2:3])
    assert result.actions[-1] == ("utter_search_restaurants", "action_default_fallback")
