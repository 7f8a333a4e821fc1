"""The domain as Rasa's `Domain.as_dict()`, read by rasa-sdk's own `Tracker`/form helpers."""

from __future__ import annotations

from pathlib import Path

from schemas.project.loader import load_project
from services.dialogue.domain_dict import domain_as_dict


def test_formbot_domain_has_rasas_shape(shared_dir: Path) -> None:
    domain = load_project(shared_dir / "examples" / "rasa" / "formbot").domain
    data = domain_as_dict(domain)
    assert data["forms"]["restaurant_form"]["required_slots"][:2] == ["cuisine", "num_people"]
    assert data["slots"]["num_people"] == {
        "type": "rasa.shared.core.slots.FloatSlot",
        "initial_value": None,
        "influence_conversation": False,
        "mappings": [
            {"type": "from_entity", "entity": "number", "intent": ["inform", "request_restaurant"]}
        ],
        "max_value": 1.0,
        "min_value": 0.0,
    }
    seating = data["slots"]["outdoor_seating"]["mappings"][1]
    assert seating == {
        "type": "from_intent",
        "intent": ["affirm"],
        "value": True,
        "conditions": [{"active_loop": "restaurant_form", "requested_slot": "outdoor_seating"}],
    }
    assert {"request_restaurant": {"use_entities": []}} in data["intents"]
    assert "validate_restaurant_form" in data["actions"]
    assert data["responses"]["utter_ask_cuisine"][0]["text"]


def test_rasa_sdk_reads_required_slots_from_it(shared_dir: Path) -> None:
    from rasa_sdk.forms import FormValidationAction

    domain = load_project(shared_dir / "examples" / "rasa" / "formbot").domain

    class Validate(FormValidationAction):  # type: ignore[misc]
        def name(self) -> str:
            return "validate_restaurant_form"

    slots = Validate().domain_slots(domain_as_dict(domain))
    assert slots[0] == "cuisine"
    assert "outdoor_seating" in slots
