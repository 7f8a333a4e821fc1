"""The policy ensemble: Rasa's choice among predictions, config, JSON, and the example bots."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from schemas.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActiveLoop,
    DefinePrevUserUtteredFeaturization,
    Event,
    LoopInterrupted,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from schemas.project.config import Component, Config
from schemas.project.domain import Domain
from schemas.project.loader import Project, load_project
from schemas.project.problems import Source
from services.dialogue.engine import Prediction, Predictor
from services.dialogue.policies.base import PolicyPrediction, SupportedData
from services.dialogue.policies.ensemble import (
    EnsemblePredictor,
    PolicyEnsemble,
    best_prediction_index,
    exclude_rejected_action,
)
from services.dialogue.policies.memoization import AugmentedMemoizationPolicy, MemoizationPolicy
from services.dialogue.policies.rule import RulePolicy
from services.dialogue.tracker import replay, slot_defaults
from services.dialogue.training_data import story_trackers, training_trackers


def pp(probabilities: dict[str, float], name: str, priority: int, **kw: Any) -> PolicyPrediction:
    return PolicyPrediction(probabilities, name, priority, **kw)


def user(intent: str, text: str | None = None) -> UserUttered:
    return UserUttered(text=text, parse_data={"intent": {"name": intent, "confidence": 1.0}})


def action(name: str) -> ActionExecuted:
    return ActionExecuted(name=name)


LISTEN = action("action_listen")
START: list[Event] = [action("action_session_start"), SessionStarted(), LISTEN]


def test_higher_confidence_wins_then_priority_then_the_first() -> None:
    rule, memo, ted = pp({"a": 0.3, "b": 0.8}, "R", 6), pp({"c": 0.9}, "M", 3), pp({}, "T", 1)
    assert best_prediction_index([rule, memo, ted]) == 1
    tie = pp({"c": 0.8}, "M", 3)
    assert best_prediction_index([tie, rule]) == 1
    same = pp({"d": 0.8}, "X", 6)
    assert best_prediction_index([rule, same]) == 0
    assert best_prediction_index([same, rule]) == 0
    with pytest.raises(ValueError, match="at least one"):
        best_prediction_index([])


def test_no_user_beats_end_to_end_which_beats_confidence() -> None:
    confident = pp({"a": 1.0}, "M", 3)
    e2e = pp({"b": 0.5}, "T", 1, is_end_to_end_prediction=True)
    loop = pp({"form": 0.2}, "R", 6, is_no_user_prediction=True)
    assert best_prediction_index([confident, e2e]) == 1
    assert best_prediction_index([confident, e2e, loop]) == 2
    # With a no-user prediction present, end-to-end gives no edge.
    weak_loop = pp({"form": 0.2}, "R", 6, is_no_user_prediction=False)
    assert best_prediction_index([confident, e2e, weak_loop]) == 1


def test_the_rejected_action_gets_no_confidence() -> None:
    predictions = [pp({"form": 1.0, "fallback": 0.3}, "R", 6), pp({"utter_x": 1.0}, "M", 3)]
    rejected: list[Event] = [*START, user("x"), ActionExecutionRejected(name="form")]
    out = exclude_rejected_action(rejected, predictions)
    assert out[0].probabilities == {"form": 0.0, "fallback": 0.3}
    assert out[1] is predictions[1]
    # Only when the rejection is the latest action event.
    later = [*rejected, action("utter_x")]
    assert exclude_rejected_action(later, predictions) == predictions


class Fixed:
    """A policy that always answers the same prediction."""

    def __init__(self, prediction: PolicyPrediction) -> None:
        self.prediction = prediction
        self.name = prediction.policy_name or "Fixed"
        self.priority = prediction.policy_priority

    @property
    def supported_data(self) -> SupportedData:
        return SupportedData.ML_DATA

    def train(self, trackers: Any, domain: Any) -> None:
        pass

    def predict(
        self,
        events: Any,
        domain: Any,
        *,
        rule_only: Any = None,
        state: Any = None,
        initial: Any = None,
    ) -> PolicyPrediction:
        return self.prediction

    def to_json(self) -> dict[str, Any]:
        return {}


def test_events_of_all_predictions_and_the_winners_optional_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = LoopInterrupted(is_interrupted=True)
    slot = SlotSet(name="x", value=1)
    first = pp({"a": 0.3}, "R", 6, events=(loop,), optional_events=(slot,))
    second = PolicyPrediction(
        {"b": 0.9}, "M", 3, optional_events=(SlotSet(name="y", value=2),), action_metadata={}
    )
    with caplog.at_level(logging.WARNING):
        ensemble = PolicyEnsemble([Fixed(first), Fixed(second)])
    assert "RulePolicy" in caplog.text
    domain = Domain()
    best = ensemble.predict([*START, user("hi")], domain)
    assert best.policy_name == "M"
    assert best.events == (
        loop,
        SlotSet(name="y", value=2),
        DefinePrevUserUtteredFeaturization(use_text_for_featurization=False),
    )
    assert (best.optional_events, best.action_metadata) == ((), None)
    # Not after a user turn: no featurization event.
    after_action = ensemble.predict([*START, user("hi"), action("b")], domain)
    assert after_action.events == (loop, SlotSet(name="y", value=2))
    predictor: Predictor = ensemble.as_predictor()
    events = [*START, user("hi")]
    got = predictor.predict(events, replay(events, slot_defaults(domain)), domain)
    assert got == Prediction("b", 0.9, "M", best.events, False)
    # Nothing has any confidence: action_listen, as Rasa's argmax over zeros.
    silent = EnsemblePredictor(PolicyEnsemble([Fixed(pp({}, "R", 6))]))
    nothing = silent.predict(events, replay(events, {}), domain)
    assert (nothing.action, nothing.confidence, nothing.policy) == ("action_listen", 0.0, "R")


def component(name: str, **options: Any) -> Component:
    return Component(name, Source(Path("config.yml"), 1), options)


def test_from_config_builds_the_listed_policies_with_their_options(
    caplog: pytest.LogCaptureFixture,
) -> None:
    default = PolicyEnsemble.from_config(Config())
    assert [type(p) for p in default.policies] == [RulePolicy, MemoizationPolicy]
    config = Config(
        policies=(
            component("TEDPolicy", epochs=1),
            component("AugmentedMemoizationPolicy", max_history=4),
            component(
                "rasa.core.policies.rule_policy.RulePolicy",
                core_fallback_threshold=0.4,
                core_fallback_action_name="utter_default",
                enable_fallback_prediction=False,
                restrict_rules=False,
                check_for_contradictions=False,
            ),
        )
    )
    with caplog.at_level(logging.WARNING):
        ensemble = PolicyEnsemble.from_config(config)
    assert "TEDPolicy" in caplog.text
    memo, rule = ensemble.policies
    assert isinstance(memo, AugmentedMemoizationPolicy)
    assert memo.max_history == 4
    assert isinstance(rule, RulePolicy)
    assert (rule.core_fallback_threshold, rule.core_fallback_action_name) == (0.4, "utter_default")
    assert not rule.enable_fallback_prediction
    assert not rule.restrict_rules
    assert not rule.check_for_contradictions
    with pytest.raises(ValueError, match="max_history"):
        PolicyEnsemble.from_config(
            Config(policies=(component("MemoizationPolicy", max_history="x"),))
        )
    with pytest.raises(ValueError, match="none of the configured policies"):
        PolicyEnsemble.from_config(Config(policies=(component("UnexpecTEDIntentPolicy"),)))


# -- the example bots ---------------------------------------------------------------------


def example(shared_dir: Path, name: str, *needed: str) -> Project:
    root = shared_dir / "examples" / "rasa" / name
    for part in ("config.yml", "domain.yml", *needed):
        if not (root / part).is_file():
            pytest.fail(f"{root} lacks {part}: the {name} example bot is needed here")
    return load_project(root)


def trained(p: Project) -> PolicyEnsemble:
    ensemble = PolicyEnsemble.from_config(p.config)
    ensemble.train(training_trackers(p), p.domain)
    return ensemble


Step = tuple[str, int, str, str]  # (story, action index, expected, predicted)


def replay_story(
    ensemble: PolicyEnsemble, name: str, story: Sequence[Event], p: Project
) -> tuple[int, list[Step]]:
    """Predict each bot action of the story; (how many were right, what went wrong)."""
    predictor = ensemble.as_predictor()
    events: list[Event] = [action("action_session_start"), SessionStarted()]
    right, wrong = 0, []
    index = 0
    for event in story:
        if isinstance(event, ActionExecuted) and len(events) > 2:
            expected = event.name or event.action_text or ""
            state = replay(events, slot_defaults(p.domain))
            got = predictor.predict(events, state, p.domain)
            loop = state.active_loop_name
            if loop and got.action == loop and expected != loop:
                # As `rasa test` does: the form rejects, and the unhappy path is predicted.
                events.append(ActionExecutionRejected(name=loop))
                state = replay(events, slot_defaults(p.domain))
                got = predictor.predict(events, state, p.domain)
            if got.action == expected:
                right += 1
            else:
                wrong.append((name, index, expected, got.action))
            events += got.events
            index += 1
        events.append(event)
    return right, wrong


def test_moodbot_test_stories_are_predicted_by_rules_and_memoization(shared_dir: Path) -> None:
    p = example(shared_dir, "moodbot", "tests/test_stories.yml")
    ensemble = trained(p)
    assert [x.name for x in ensemble.policies] == ["RulePolicy", "MemoizationPolicy"]
    total, failures = 0, list[Step]()
    for test in story_trackers(p.test_stories, p.domain):
        right, wrong = replay_story(ensemble, test.name, test.events, p)
        total, failures = total + right, failures + wrong
    assert failures == []
    assert total == 35


def test_formbot_test_stories_are_predicted(shared_dir: Path) -> None:
    p = example(shared_dir, "formbot", "tests/test_stories.yml")
    ensemble = trained(p)
    assert [x.name for x in ensemble.policies] == ["AugmentedMemoizationPolicy", "RulePolicy"]
    total, failures = 0, list[Step]()
    for test in story_trackers(p.test_stories, p.domain):
        right, wrong = replay_story(ensemble, test.name, test.events, p)
        total, failures = total + right, failures + wrong
    # Known failures: none. TEDPolicy (configured, not built) is not needed for these stories.
    assert failures == []
    assert total == 29


# The rules example has no test stories: these conversations walk through its rules.
RULES_BOT_CONVERSATIONS: dict[str, list[Any]] = {
    "greet at the start": ["user:greet", "utter_greet", "action_listen"],
    "detailed faq that did not help": [
        ("slot", "detailed_faq", True),
        "user:faq",
        "utter_faq",
        "utter_ask_did_help",
        "action_listen",
        "user:deny",
        "utter_detailed_faq",
        "utter_ask_did_help",
        "action_listen",
        "user:deny",
        "utter_ask_stop",
        "action_listen",
        "user:affirm",
        "utter_stop",
        "action_listen",
    ],
    "simple faq": [
        ("slot", "detailed_faq", False),
        "user:faq",
        "utter_faq",
        "action_listen",
        "user:ask_possibilities",
        "utter_list_possibilities",
        "action_listen",
    ],
    "form with an explanation": [
        "user:activate_q_form",
        "loop_q_form",
        ("loop", "loop_q_form"),
        ("slot", "requested_slot", "some_slot"),
        "action_listen",
        "user:explain",
        "utter_explain_some_slot",
        "loop_q_form",
        "action_listen",
        "user:inform",
        "loop_q_form",
        ("loop", None),
        ("slot", "requested_slot", None),
        "utter_stop",
        "action_listen",
    ],
    "nlu fallback": ["user:nlu_fallback", "action_two_stage_fallback"],
    "restart": ["user:greet", "utter_greet", "action_listen", "user:restart", "action_restart"],
    "no rule": ["user:stopp", "action_default_fallback"],
}


def conversation(steps: list[Any]) -> list[Event]:
    events: list[Event] = [LISTEN]
    for step in steps:
        if isinstance(step, tuple):
            kind, *args = step
            events.append(
                SlotSet(name=args[0], value=args[1]) if kind == "slot" else ActiveLoop(name=args[0])
            )
        elif step.startswith("user:"):
            events.append(user(step.removeprefix("user:"), text="..."))
        else:
            events.append(action(step))
    return events


def test_the_rules_example_follows_its_rules(shared_dir: Path) -> None:
    p = example(shared_dir, "rules", "data/rules.yml")
    ensemble = trained(p)
    assert [x.name for x in ensemble.policies] == ["RulePolicy"]
    total, failures = 0, list[Step]()
    for name, steps in RULES_BOT_CONVERSATIONS.items():
        right, wrong = replay_story(ensemble, name, conversation(steps), p)
        total, failures = total + right, failures + wrong
    assert failures == []
    assert total == 29


def test_the_trained_ensemble_round_trips_through_json(shared_dir: Path) -> None:
    p = example(shared_dir, "formbot")
    ensemble = trained(p)
    data = json.loads(json.dumps(ensemble.to_json()))
    assert [(x["class"], x["data"]["policy"]) for x in data["policies"]] == [
        ("AugmentedMemoizationPolicy", "AugmentedMemoizationPolicy"),
        ("RulePolicy", "RulePolicy"),
    ]
    loaded = PolicyEnsemble.from_json(data)
    assert loaded.to_json() == ensemble.to_json()
    for test in story_trackers(p.test_stories, p.domain):
        events: list[Event] = [*START[:2], *test.events]
        for end in range(3, len(events)):
            assert loaded.predict(events[:end], p.domain) == ensemble.predict(
                events[:end], p.domain
            )
    with pytest.raises(ValueError, match="version"):
        PolicyEnsemble.from_json({**data, "version": 9})
    with pytest.raises(ValueError, match="unknown policy class"):
        PolicyEnsemble.from_json({**data, "policies": [{"class": "TEDPolicy", "data": {}}]})
    with pytest.raises(ValueError, match="non-empty"):
        PolicyEnsemble.from_json({**data, "policies": []})
