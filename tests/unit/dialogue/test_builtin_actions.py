"""Rasa's built-in actions: the events each returns."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from schemas.events import ActionExecuted, Event, SlotSet, UserUttered
from schemas.project.domain import Domain
from schemas.project.loader import load_project
from services.dialogue.builtin_actions import ActionContext, is_local, run_local
from services.dialogue.responses import ResponseRenderer
from services.dialogue.tracker import replay, slot_defaults

DOMAIN = """version: "3.1"
intents: [greet, bye]
slots:
  name:
    type: text
    mappings: [{type: custom}]
responses:
  utter_default:
  - text: "Sorry, I didn't get that."
  utter_restart:
  - text: "Starting over."
  utter_greet:
  - text: "Hi {name}"
forms:
  f:
    required_slots: [name]
actions: [action_back]
session_config:
  carry_over_slots_to_new_session: {carry}
"""


def domain_with(tmp_path: Path, carry: bool = True) -> Domain:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "domain.yml").write_text(DOMAIN.replace("{carry}", str(carry).lower()))
    (tmp_path / "config.yml").write_text("language: en\n")
    return load_project(tmp_path).domain


def run(name: str, domain: Domain, events: list[Event]) -> list[dict[str, object]]:
    state = replay(events, slot_defaults(domain))
    ctx = ActionContext(
        state, events, domain, ResponseRenderer(domain, random.Random(0)), "rest", 9.0
    )
    return [e.to_dict() for e in run_local(name, ctx)]


HISTORY: list[Event] = [
    ActionExecuted(timestamp=1.0, name="action_listen"),
    UserUttered(
        timestamp=1.0,
        text="hi",
        parse_data={
            "intent": {"name": "nlu_fallback", "confidence": 0.2},
            "intent_ranking": [
                {"name": "nlu_fallback", "confidence": 0.3},
                {"name": "greet", "confidence": 0.2},
            ],
        },
    ),
    SlotSet(timestamp=1.0, name="name", value="Ada"),
]


def test_restart_utters_then_restarts(tmp_path: Path) -> None:
    events = run("action_restart", domain_with(tmp_path), HISTORY)
    assert [e["event"] for e in events] == ["bot", "restart"]
    assert events[0]["text"] == "Starting over."


def test_session_start_carries_slots_over_or_not(tmp_path: Path) -> None:
    events = run("action_session_start", domain_with(tmp_path), HISTORY)
    assert [(e["event"], e.get("name")) for e in events] == [
        ("session_started", None),
        ("slot", "name"),
        ("action", "action_listen"),
    ]
    fresh = run("action_session_start", domain_with(tmp_path / "b", carry=False), HISTORY)
    assert [e["event"] for e in fresh] == ["session_started", "action"]


def test_fallback_deactivate_back_affirm_rephrase(tmp_path: Path) -> None:
    domain = domain_with(tmp_path)
    assert [e["event"] for e in run("action_default_fallback", domain, HISTORY)] == [
        "bot",
        "rewind",
    ]
    assert run("action_deactivate_loop", domain, HISTORY) == [
        {"event": "active_loop", "timestamp": 9.0, "name": None},
        {"event": "slot", "timestamp": 9.0, "name": "requested_slot", "value": None},
    ]
    affirm = run("action_default_ask_affirmation", domain, HISTORY)
    assert affirm[0]["text"] == "Did you mean 'greet'?"
    assert affirm[0]["data"]["buttons"] == [  # type: ignore[index]
        {"title": "Yes", "payload": "/greet"},
        {"title": "No", "payload": "/out_of_scope"},
    ]
    assert run("action_default_ask_rephrase", domain, HISTORY) == []  # no utter_ask_rephrase


def test_responses_and_end_to_end_texts(tmp_path: Path) -> None:
    domain = domain_with(tmp_path)
    greet = run("utter_greet", domain, HISTORY)
    assert greet[0]["text"] == "Hi Ada"
    assert greet[0]["metadata"] == {"utter_action": "utter_greet"}
    assert run("utter_missing", domain, HISTORY) == []
    assert run("Hello there!", domain, HISTORY)[0]["text"] == "Hello there!"


@pytest.mark.parametrize(
    ("name", "local"),
    [
        ("action_listen", True),
        ("action_restart", True),
        ("action_back", False),  # the domain overrides it with a custom action
        ("utter_greet", True),
        ("validate_f", False),
        ("action_search", False),
    ],
)
def test_which_actions_run_locally(tmp_path: Path, name: str, local: bool) -> None:
    assert is_local(name, domain_with(tmp_path)) is local


def test_action_handoff_is_parleys_builtin_unless_the_domain_declares_it(tmp_path: Path) -> None:
    domain = domain_with(tmp_path)
    assert is_local("action_handoff", domain)
    assert run("action_handoff", domain, HISTORY) == [
        {"event": "pause", "timestamp": 9.0, "metadata": {"handoff_reason": "requested"}}
    ]
    declared = tmp_path / "declared"
    declared.mkdir()
    (declared / "domain.yml").write_text(
        DOMAIN.replace("{carry}", "true").replace("[action_back]", "[action_back, action_handoff]")
    )
    (declared / "config.yml").write_text("language: en\n")
    custom = load_project(declared).domain
    assert not is_local("action_handoff", custom)  # the bot's own action server runs it
