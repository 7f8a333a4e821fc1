"""The domain as Rasa 3.x's `Domain.as_dict()` writes it: what action servers receive.

rasa-sdk reads `slots` (names, `mappings`: `FormValidationAction` extracts custom slots with
them), `forms` (`required_slots`), `responses` and `intents`; the shape follows Rasa's so
actions written for Rasa read it unchanged.
"""

from __future__ import annotations

from typing import Any

from schemas.project.domain import Domain, Entity, Intent, ResponseVariation, Slot, SlotMapping

SLOT_CLASSES = {
    "text": "rasa.shared.core.slots.TextSlot",
    "bool": "rasa.shared.core.slots.BooleanSlot",
    "categorical": "rasa.shared.core.slots.CategoricalSlot",
    "float": "rasa.shared.core.slots.FloatSlot",
    "list": "rasa.shared.core.slots.ListSlot",
    "any": "rasa.shared.core.slots.AnySlot",
}


def _intent(intent: Intent) -> str | dict[str, Any]:
    options: dict[str, Any] = {}
    if intent.use_entities is not True:
        options["use_entities"] = list(intent.use_entities) if intent.use_entities else []
    if intent.ignore_entities:
        options["ignore_entities"] = list(intent.ignore_entities)
    return {intent.name: options} if options else intent.name


def _entity(entity: Entity) -> str | dict[str, Any]:
    options: dict[str, Any] = {}
    if entity.roles:
        options["roles"] = list(entity.roles)
    if entity.groups:
        options["groups"] = list(entity.groups)
    if not entity.influence_conversation:
        options["influence_conversation"] = False
    return {entity.name: options} if options else entity.name


def _mapping(mapping: SlotMapping) -> dict[str, Any]:
    out: dict[str, Any] = {"type": mapping.type}
    for key in ("entity", "role", "group", "action"):
        value = getattr(mapping, key)
        if value is not None:
            out[key] = value
    if mapping.intent:
        out["intent"] = list(mapping.intent)
    if mapping.not_intent:
        out["not_intent"] = list(mapping.not_intent)
    if mapping.type in ("from_intent", "from_trigger_intent"):
        out["value"] = mapping.value
    if mapping.conditions:
        out["conditions"] = [
            {"active_loop": c.active_loop, "requested_slot": c.requested_slot}
            if c.requested_slot
            else {"active_loop": c.active_loop}
            for c in mapping.conditions
        ]
    return out


def _slot(slot: Slot) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": SLOT_CLASSES[slot.type],
        "initial_value": slot.initial_value,
        "influence_conversation": slot.influence_conversation,
        "mappings": [_mapping(m) for m in slot.mappings],
    }
    if slot.type == "categorical":
        out["values"] = list(slot.values)
    if slot.type == "float":
        out["max_value"] = slot.max_value
        out["min_value"] = slot.min_value
    return out


def _variation(variation: ResponseVariation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("text", "image", "attachment", "custom", "channel", "id"):
        value = getattr(variation, key)
        if value is not None:
            out[key] = value
    for key in ("buttons", "quick_replies", "elements"):
        value = getattr(variation, key)
        if value:
            out[key] = list(value)
    if variation.condition:
        out["condition"] = [
            {"type": "slot", "name": c.name, "value": c.value} for c in variation.condition
        ]
    if variation.metadata:
        out["metadata"] = dict(variation.metadata)
    return out


def domain_as_dict(domain: Domain) -> dict[str, Any]:
    """Rasa's `Domain.as_dict()` of `domain`."""
    return {
        "version": "3.1",
        "config": {"store_entities_as_slots": domain.store_entities_as_slots},
        "session_config": {
            "session_expiration_time": domain.session_config.session_expiration_time,
            "carry_over_slots_to_new_session": (
                domain.session_config.carry_over_slots_to_new_session
            ),
        },
        "intents": [_intent(i) for i in domain.intents.values()],
        "entities": [_entity(e) for e in domain.entities.values()],
        "slots": {name: _slot(slot) for name, slot in domain.slots.items()},
        "responses": {
            name: [_variation(v) for v in response.variations]
            for name, response in domain.responses.items()
        },
        "actions": list(domain.actions),
        "forms": {
            name: {"required_slots": list(form.required_slots)}
            | ({"ignored_intents": list(form.ignored_intents)} if form.ignored_intents else {})
            for name, form in domain.forms.items()
        },
        "e2e_actions": [],
    }
