"""Dialogue states as Rasa 3.x builds them: user turn, slots, previous action, active loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.events import (
    ActionExecuted,
    ActiveLoop,
    AllSlotsReset,
    DefinePrevUserUtteredFeaturization,
    Event,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from schemas.project.domain import Domain
from schemas.project.loader import load_project
from services.dialogue.states import (
    RuleOnlyData,
    State,
    UserSubState,
    end_to_end_texts,
    feature_key,
    prediction_states,
    slot_features,
    states_for,
    used_entities,
)

DOMAIN = """version: "3.1"
intents:
  - greet
  - inform
  - ask_weather:
      use_entities: [city]
  - chitchat:
      use_entities: false
  - book:
      ignore_entities: [city]
entities:
  - city:
      roles: [from, to]
  - date
  - mood:
      influence_conversation: false
slots:
  name: {type: text, mappings: [{type: custom}]}
  vip: {type: bool, mappings: [{type: custom}]}
  size: {type: categorical, values: [Small, large], mappings: [{type: custom}]}
  budget: {type: float, min_value: 10, max_value: 110, mappings: [{type: custom}]}
  items: {type: list, mappings: [{type: custom}]}
  blob: {type: any, mappings: [{type: custom}]}
  note: {type: text, influence_conversation: false, mappings: [{type: custom}]}
  lang: {type: text, initial_value: en, mappings: [{type: custom}]}
forms:
  booking_form:
    required_slots: [name]
responses:
  utter_greet: [{text: "Hi"}]
"""


@pytest.fixture(scope="module")
def domain(tmp_path_factory: pytest.TempPathFactory) -> Domain:
    root = tmp_path_factory.mktemp("bot")
    (root / "config.yml").write_text('version: "3.1"\nlanguage: en\n', encoding="utf-8")
    (root / "domain.yml").write_text(DOMAIN, encoding="utf-8")
    return load_project(Path(root)).domain


def user(
    intent: str | None = None, *entities: dict[str, Any], text: str | None = None
) -> UserUttered:
    data = {"intent": {"name": intent, "confidence": 0.9} if intent else {}}
    return UserUttered(text=text, parse_data={**data, "entities": list(entities)})


def action(name: str, *, hide_rule_turn: bool = False) -> ActionExecuted:
    return ActionExecuted(name=name, hide_rule_turn=hide_rule_turn)


LISTEN = action("action_listen")
LANG = {"lang": (1.0,)}


def dicts(states: list[State]) -> list[dict[str, Any]]:
    return [s.to_dict() for s in states]


def test_one_state_before_each_action_and_one_at_the_end(domain: Domain) -> None:
    events: list[Event] = [LISTEN, user("greet"), action("utter_greet"), LISTEN, user("inform")]
    assert dicts(states_for(events, domain)) == [
        {"slots": LANG},
        {
            "user": {"intent": "greet"},
            "prev_action": {"action_name": "action_listen"},
            "slots": LANG,
        },
        {"user": {"intent": "greet"}, "prev_action": {"action_name": "utter_greet"}, "slots": LANG},
        {
            "user": {"intent": "inform"},
            "prev_action": {"action_name": "action_listen"},
            "slots": LANG,
        },
    ]


def test_history_before_the_session_start_is_cut(domain: Domain) -> None:
    events: list[Event] = [
        LISTEN,
        user("chitchat"),
        action("action_session_start"),
        SessionStarted(),
        SlotSet(name="name", value="Ada"),
        LISTEN,
        user("greet"),
    ]
    slots = {**LANG, "name": (1.0,)}
    assert dicts(states_for(events, domain)) == [
        {"slots": slots},
        {
            "user": {"intent": "greet"},
            "prev_action": {"action_name": "action_listen"},
            "slots": slots,
        },
    ]


@pytest.mark.parametrize(
    ("slot", "value", "expected"),
    [
        ("name", None, (0.0,)),
        ("name", "", (1.0,)),
        ("name", "Ada", (1.0,)),
        ("vip", True, (1.0, 1.0)),
        ("vip", "false", (1.0, 0.0)),
        ("vip", 1, (1.0, 1.0)),
        ("vip", "maybe", (0.0, 0.0)),
        ("vip", None, (0.0, 0.0)),
        ("size", "SMALL", (1.0, 0.0, 0.0)),
        ("size", "large", (0.0, 1.0, 0.0)),
        ("size", "huge", (0.0, 0.0, 1.0)),
        ("size", None, (0.0, 0.0, 0.0)),
        ("budget", 60, (1.0, 0.5)),
        ("budget", 500, (1.0, 1.0)),
        ("budget", "0", (1.0, 0.0)),
        ("budget", "lots", (0.0, 0.0)),
        ("items", [], (0.0,)),
        ("items", ["a"], (1.0,)),
        ("items", 3, (0.0,)),
        ("blob", {"any": 1}, ()),
        ("note", "x", ()),
    ],
)
def test_slot_features_by_type(
    domain: Domain, slot: str, value: Any, expected: tuple[float, ...]
) -> None:
    assert slot_features(domain.slots[slot], value) == expected


def test_states_hold_set_slots_that_influence_the_conversation(domain: Domain) -> None:
    events: list[Event] = [
        SlotSet(name="vip", value=False),
        SlotSet(name="size", value="huge"),
        SlotSet(name="items", value=[]),
        SlotSet(name="blob", value=1),
        SlotSet(name="note", value="x"),
        SlotSet(name="name", value="should_not_be_set"),
        SlotSet(name="unknown", value=1),
        LISTEN,
    ]
    assert states_for(events, domain)[-1].to_dict() == {
        "prev_action": {"action_name": "action_listen"},
        "slots": {
            **LANG,
            "name": "should_not_be_set",
            "size": (0.0, 0.0, 1.0),
            "vip": (1.0, 0.0),
        },
    }


def test_omit_unset_slots_leaves_out_initial_values_until_set_again(domain: Domain) -> None:
    events: list[Event] = [SlotSet(name="vip", value=True), LISTEN, AllSlotsReset()]
    states = states_for(events, domain, omit_unset_slots=True)
    assert dicts(states) == [
        {"slots": {"vip": (1.0, 1.0)}},
        {"prev_action": {"action_name": "action_listen"}},
    ]
    assert states_for(events, domain)[-1].to_dict()["slots"] == LANG


CITY_FROM = {"entity": "city", "value": "Rome", "role": "from"}
DATE = {"entity": "date", "value": "today"}
MOOD = {"entity": "mood", "value": "happy"}
STRANGER = {"entity": "colour", "value": "red"}


@pytest.mark.parametrize(
    ("intent", "expected"),
    [
        ("inform", ("city", "city#from", "date")),
        ("ask_weather", ("city", "city#from")),
        ("chitchat", ()),
        ("book", ("date",)),
        ("restart", ("city", "city#from", "date")),
        ("not_in_domain", ("city", "city#from", "colour", "date", "mood")),
    ],
)
def test_entities_are_filtered_by_the_intent(
    domain: Domain, intent: str, expected: tuple[str, ...]
) -> None:
    message = user(intent, DATE, CITY_FROM, MOOD, STRANGER, DATE)
    state = states_for([LISTEN, message], domain)[-1]
    assert state.user == UserSubState(intent=intent, entities=expected)


def test_used_entities_include_role_and_group_labels(domain: Domain) -> None:
    assert used_entities(domain, "inform") == frozenset({"city", "city#from", "city#to", "date"})
    assert used_entities(domain, "ask_weather") == frozenset({"city", "city#from", "city#to"})
    assert used_entities(domain, "chitchat") == frozenset()
    assert used_entities(domain, "not_in_domain") is None


def test_end_to_end_messages_are_featurized_by_text(domain: Domain) -> None:
    text_only = user(None, DATE, text="hello there")
    both = user("greet", DATE, text="hello there")
    assert states_for([LISTEN, text_only], domain)[-1].to_dict()["user"] == {"text": "hello there"}
    assert states_for([LISTEN, both], domain)[-1].to_dict()["user"] == {
        "text": "hello there",
        "intent": "greet",
        "entities": ("date",),
    }
    by_text = [LISTEN, both, DefinePrevUserUtteredFeaturization(use_text_for_featurization=True)]
    assert states_for(by_text, domain)[-1].to_dict()["user"] == {"text": "hello there"}


def test_user_texts_are_stripped_and_end_to_end_texts_are_those_without_intent(
    domain: Domain,
) -> None:
    typed = [LISTEN, user("greet", text="  hello there \n")]
    by_text = prediction_states(typed, domain, 1, use_text_for_last_user_input=True)
    assert by_text[-1].to_dict()["user"] == {"text": "hello there"}
    assert states_for([LISTEN, user(text=" \n")], domain)[-1].user is None
    e2e = states_for([LISTEN, user(text=" I had that yesterday ")], domain)
    both = states_for([LISTEN, user("greet", text="hi")], domain)
    assert end_to_end_texts([*e2e, *both]) == {"I had that yesterday"}


def test_active_loop_and_bot_text_actions(domain: Domain) -> None:
    events: list[Event] = [
        LISTEN,
        user("book"),
        action("booking_form"),
        ActiveLoop(name="booking_form"),
        ActionExecuted(action_text="Which name?"),
        ActiveLoop(name="should_not_be_set"),
    ]
    states = states_for(events, domain)
    assert states[2].to_dict() == {
        "user": {"intent": "book"},
        "prev_action": {"action_name": "booking_form"},
        "active_loop": {"name": "booking_form"},
        "slots": LANG,
    }
    assert states[3].to_dict() == {
        "user": {"intent": "book"},
        "prev_action": {"action_text": "Which name?"},
        "active_loop": {"name": "should_not_be_set"},
        "slots": LANG,
    }


def test_rule_turns_and_rule_only_features_are_hidden_from_ml_policies(domain: Domain) -> None:
    events: list[Event] = [
        LISTEN,
        user("greet"),
        action("utter_greet", hide_rule_turn=True),
        SlotSet(name="vip", value=True),
        LISTEN,
        user("inform"),
    ]
    rule_only = RuleOnlyData(slots=frozenset({"vip"}), loops=frozenset())
    full = states_for(events, domain)
    ml = states_for(events, domain, ignore_rule_only_turns=True, rule_only=rule_only)
    assert len(full) == 4
    # The state that led to the hidden rule action is dropped; the next one takes the user
    # input of the state before it (none) and the last ML action (action_listen).
    assert dicts(ml) == [
        {"slots": LANG},
        {"prev_action": {"action_name": "action_listen"}, "slots": LANG},
        {
            "user": {"intent": "inform"},
            "prev_action": {"action_name": "action_listen"},
            "slots": LANG,
        },
    ]


def test_prediction_states_use_the_intent_of_the_last_user_turn(domain: Domain) -> None:
    events: list[Event] = [LISTEN, user("greet", text="hi"), action("utter_greet"), LISTEN]
    events.append(user("inform", DATE, text="today"))
    by_intent = prediction_states(events, domain, 2)
    assert dicts(by_intent) == [
        {"user": {"intent": "greet"}, "prev_action": {"action_name": "utter_greet"}, "slots": LANG},
        {
            "user": {"intent": "inform", "entities": ("date",)},
            "prev_action": {"action_name": "action_listen"},
            "slots": LANG,
        },
    ]
    by_text = prediction_states(events, domain, 1, use_text_for_last_user_input=True)
    assert by_text[-1].to_dict()["user"] == {"text": "today"}


def test_states_are_hashable_and_round_trip_through_rasa_dicts() -> None:
    state = State(
        user=UserSubState(intent="inform", entities=("city",)),
        action_name="action_listen",
        active_loop="booking_form",
        slots=(("name", "should_not_be_set"), ("vip", (1.0, 0.0))),
    )
    assert State.from_dict(state.to_dict()) == state
    assert State.from_dict({"slots": {"vip": [1.0, 0.0]}}) == State(slots=(("vip", (1.0, 0.0)),))
    assert len({state, State.from_dict(state.to_dict()), State()}) == 2
    assert feature_key([State(), state]) == (
        "[{}, {active_loop: {name: booking_form}, prev_action: {action_name: action_listen}, "
        "slots: {name: should_not_be_set, vip: [1.0, 0.0]}, "
        "user: {entities: [city], intent: inform}}]"
    )
