"""Rasa's two-stage fallback (`action_two_stage_fallback`, a loop) on Rasa's rules bot
(`../shared/examples/rasa/rules`): affirm, rephrase, clarify, give up."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from schemas.events import UserUttered
from schemas.project.loader import Project, load_project
from services.dialogue.engine import Conversation, DialogueEngine, TurnResult
from services.dialogue.worker_cli import build_predictor


@pytest.fixture(scope="module")
def project(shared_dir: Path) -> Project:
    return load_project(shared_dir / "examples" / "rasa" / "rules")


def said(intent: str, ts: float, confidence: float = 1.0) -> UserUttered:
    ranking = [{"name": intent, "confidence": confidence}, {"name": "greet", "confidence": 0.2}]
    return UserUttered(
        timestamp=ts,
        text=intent,
        parse_data={
            "intent": {"name": intent, "confidence": confidence},
            "intent_ranking": ranking,
        },
    )


def shape(result: TurnResult) -> list[str]:
    return [f"{e.event}:{e.to_dict().get('name') or e.to_dict().get('text') or ''}"
            for e in result.new_events if e.event != "user_featurization"]  # fmt: skip


def test_affirmed_intent_is_replayed_as_if_the_user_had_said_it(project: Project) -> None:
    engine = DialogueEngine(project.domain, build_predictor(project), rng=random.Random(0))
    conv = Conversation.new("c", project.domain)
    first = engine.on_user_message(conv, said("nlu_fallback", 1.0, 0.2), 1.0)
    assert shape(first)[-4:] == [
        "action:action_two_stage_fallback",
        "active_loop:action_two_stage_fallback",
        "bot:Did you mean 'greet'?",
        "action:action_listen",
    ]
    second = engine.on_user_message(conv, said("greet", 2.0), 2.0)
    names = shape(second)
    assert names[:6] == [
        "user:greet",
        "action:action_two_stage_fallback",
        "active_loop:",
        "rewind:",
        "action:action_listen",
        "user:greet",
    ]
    clarified = [e for e in second.new_events if e.event == "user"][-1]
    assert clarified.to_dict()["parse_data"]["intent"]["confidence"] == 1.0
    assert conv.state.active_loop_name is None


def test_two_fallbacks_in_a_row_give_up(project: Project) -> None:
    engine = DialogueEngine(project.domain, build_predictor(project), rng=random.Random(0))
    conv = Conversation.new("c", project.domain)
    engine.on_user_message(conv, said("nlu_fallback", 1.0, 0.2), 1.0)
    again = engine.on_user_message(conv, said("nlu_fallback", 2.0, 0.1), 2.0)
    names = shape(again)
    assert "action:action_two_stage_fallback" in names
    index = names.index("action:action_two_stage_fallback")
    assert names[index + 1 : index + 4] == [
        "active_loop:",
        "bot:" + _default_text(project),
        "rewind:",
    ]


def test_out_of_scope_after_affirmation_asks_to_rephrase(project: Project) -> None:
    engine = DialogueEngine(project.domain, build_predictor(project), rng=random.Random(0))
    conv = Conversation.new("c", project.domain)
    engine.on_user_message(conv, said("nlu_fallback", 1.0, 0.2), 1.0)
    denied = engine.on_user_message(conv, said("out_of_scope", 2.0), 2.0)
    names = shape(denied)
    # no utter_ask_rephrase in the rules bot's domain: the loop asks nothing, and listens
    assert "action:action_two_stage_fallback" in names
    assert conv.state.active_loop_name == "action_two_stage_fallback"


def _default_text(project: Project) -> str:
    return project.domain.responses["utter_default"].variations[0].text or ""
