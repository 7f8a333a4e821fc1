"""Rasa's `action_extract_slots` on formbot's slot mappings (../shared/examples/rasa/formbot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.events import ActionExecuted, ActiveLoop, Event, SlotSet, UserUttered
from schemas.project.domain import Domain
from schemas.project.loader import load_project
from services.dialogue.slot_extraction import extract
from services.dialogue.tracker import TrackerState, replay, slot_defaults


@pytest.fixture(scope="module")
def domain(shared_dir: Path) -> Domain:
    return load_project(shared_dir / "examples" / "rasa" / "formbot").domain


def user(intent: str, text: str = "x", **entities: Any) -> UserUttered:
    return UserUttered(
        timestamp=1.0,
        text=text,
        parse_data={
            "intent": {"name": intent, "confidence": 1.0},
            "entities": [
                {"entity": k, "value": v, "start": 0, "end": 1} for k, v in entities.items()
            ],
        },
    )


def state_of(domain: Domain, *events: Event) -> TrackerState:
    return replay(list(events), slot_defaults(domain))


def in_form(requested: str | None) -> list[Event]:
    return [
        ActionExecuted(timestamp=1.0, name="restaurant_form"),
        ActiveLoop(timestamp=1.0, name="restaurant_form"),
        SlotSet(timestamp=1.0, name="requested_slot", value=requested),
        ActionExecuted(timestamp=1.0, name="action_listen"),
    ]


def slots_set(domain: Domain, *events: Event) -> dict[str, Any]:
    result = extract(state_of(domain, *events), domain, timestamp=2.0)
    return {e.name: e.value for e in result.events}


def test_entities_fill_their_slots_outside_the_form(domain: Domain) -> None:
    assert slots_set(domain, user("inform", cuisine="greek", number=4)) == {
        "cuisine": "greek",
        "num_people": 4,
    }


def test_intent_restriction_of_a_mapping(domain: Domain) -> None:
    # num_people maps `number` only for inform and request_restaurant
    assert slots_set(domain, user("chitchat", number=4)) == {}


def test_conditional_mappings_need_the_form_and_the_requested_slot(domain: Domain) -> None:
    assert slots_set(domain, user("affirm")) == {}
    assert slots_set(domain, *in_form("outdoor_seating"), user("affirm")) == {
        "outdoor_seating": True
    }
    assert slots_set(domain, *in_form("outdoor_seating"), user("deny")) == {
        "outdoor_seating": False
    }
    assert slots_set(domain, *in_form("cuisine"), user("affirm")) == {}


def test_from_text_with_not_intent(domain: Domain) -> None:
    said = user("inform", text="by the window please")
    assert slots_set(domain, *in_form("preferences"), said) == {
        "preferences": "by the window please"
    }
    assert slots_set(domain, *in_form("preferences"), user("deny")) == {
        "preferences": "no additional preferences"
    }


def test_no_value_and_no_previous_value_sets_nothing(domain: Domain) -> None:
    result = extract(state_of(domain, user("greet")), domain, 2.0)
    assert result.events == []
    assert result.custom_actions == []


def test_events_are_stamped_and_in_domain_order(domain: Domain) -> None:
    result = extract(
        state_of(domain, user("inform", cuisine="thai", seating="outside")), domain, 7.5
    )
    assert [(e.name, e.value, e.timestamp) for e in result.events] == [
        ("cuisine", "thai", 7.5),
        ("outdoor_seating", "outside", 7.5),
    ]


TRIP_DOMAIN = """version: "3.1"
intents: [inform, chitchat, book, greet]
entities: [city, topping]
slots:
  origin:
    type: text
    mappings:
    - type: from_entity
      entity: city
  destination:
    type: text
    mappings:
    - type: from_entity
      entity: city
  toppings:
    type: list
    mappings:
    - type: from_entity
      entity: topping
  started:
    type: bool
    mappings:
    - type: from_trigger_intent
      intent: book
      value: true
      conditions:
      - active_loop: trip_form
  mood:
    type: text
    mappings:
    - type: custom
      action: action_guess_mood
forms:
  trip_form:
    ignored_intents: [chitchat]
    required_slots: [origin, destination]
actions: [action_guess_mood, action_validate_slot_mappings]
"""


@pytest.fixture(scope="module")
def trip(tmp_path_factory: pytest.TempPathFactory) -> Domain:
    root = tmp_path_factory.mktemp("trip")
    (root / "domain.yml").write_text(TRIP_DOMAIN)
    (root / "config.yml").write_text("language: en\n")
    return load_project(root).domain


def trip_form(requested: str) -> list[Event]:
    return [
        ActionExecuted(timestamp=1.0, name="trip_form"),
        ActiveLoop(timestamp=1.0, name="trip_form"),
        SlotSet(timestamp=1.0, name="requested_slot", value=requested),
        ActionExecuted(timestamp=1.0, name="action_listen"),
    ]


def test_shared_entity_mapping_fills_only_the_requested_slot_in_a_form(trip: Domain) -> None:
    outside = extract(state_of(trip, user("inform", city="Oslo")), trip, 2.0)
    assert {e.name for e in outside.events} == {"origin", "destination"}
    inside = extract(
        state_of(trip, *trip_form("destination"), user("inform", city="Oslo")), trip, 2.0
    )
    assert [(e.name, e.value) for e in inside.events] == [("destination", "Oslo")]


def test_list_slot_takes_every_value_and_custom_mappings_are_returned(trip: Domain) -> None:
    said = UserUttered(
        timestamp=1.0,
        text="x",
        parse_data={
            "intent": {"name": "inform", "confidence": 1.0},
            "entities": [
                {"entity": "topping", "value": "olives"},
                {"entity": "topping", "value": "capers"},
            ],
        },
    )
    result = extract(state_of(trip, said), trip, 2.0)
    assert [(e.name, e.value) for e in result.events] == [("toppings", ["olives", "capers"])]
    assert result.custom_actions == ["action_guess_mood", "action_validate_slot_mappings"]


def test_trigger_intent_needs_the_loop_and_ignored_intents_block(trip: Domain) -> None:
    assert slots_set(trip, user("book")) == {}
    assert slots_set(trip, *trip_form("origin"), user("book")) == {"started": True}
    # chitchat is ignored while trip_form is active: its entities fill nothing
    assert slots_set(trip, *trip_form("origin"), user("chitchat", city="Rome")) == {}


def test_a_rejected_form_does_not_refill_the_requested_slot(trip: Domain) -> None:
    from schemas.events import ActionExecutionRejected

    events = [*trip_form("origin"), ActionExecutionRejected(timestamp=1.0, name="trip_form")]
    # origin's mapping has no conditions, so the rejection does not block it (Rasa checks
    # rejection only for conditional mappings)
    assert slots_set(trip, *events, user("inform", city="Rome")) == {"origin": "Rome"}
