"""Rasa 3.x's `action_extract_slots`: slot values from the latest user message, by mappings.

It runs after every user message, before the next prediction, and records no
`ActionExecuted` (as in Rasa's processor). For each slot of the domain (not Rasa's own slots),
its mappings are tried in order; the first that yields a value sets the slot:

- the mapping must be valid (`from_entity` names a domain entity);
- the intent must be desired: in `intent` if given, else not in `not_intent` (plus, while a
  form is active and the mapping's conditions name it or there are none, the form's
  `ignored_intents`);
- its `conditions` (except for `from_trigger_intent`) must hold: an `active_loop` equal to the
  active form (and `requested_slot` equal when given), or `active_loop: null` with no active
  loop; never while the form rejected its last run and this slot is the one requested;
- a `from_entity` mapping of a form's required slot that is not requested is skipped when
  another required slot of that form has the same mapping (it is not unique);
- values: `from_entity` the latest entity values with that type, role and group;
  `from_intent` / `from_trigger_intent` (the latter only while a form the conditions allow is
  active) the mapping's `value`; `from_text` the message text. A list slot takes all entity
  values, other slots the last one.

`custom` mappings name an action to run (once per turn); `extract` returns those names so the
caller can run them (they are custom actions), with `action_validate_slot_mappings` after.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.events import SlotSet
from schemas.project.domain import REQUESTED_SLOT, Domain, Slot, SlotMapping
from services.dialogue.tracker import TrackerState

# Slots Rasa adds itself (`DEFAULT_SLOT_NAMES`): never extracted.
RASA_SLOTS = frozenset(
    {
        REQUESTED_SLOT,
        "session_started_metadata",
        "knowledge_base_listed_objects",
        "knowledge_base_last_object",
        "knowledge_base_last_object_type",
    }
)
VALIDATE_SLOT_MAPPINGS = "action_validate_slot_mappings"


@dataclass(frozen=True)
class Extraction:
    """What `action_extract_slots` found: slot events, and custom actions still to run."""

    events: list[SlotSet] = field(default_factory=list)
    custom_actions: list[str] = field(default_factory=list)


def _intent(state: TrackerState) -> str | None:
    intent = (state.latest_message or {}).get("intent") or {}
    name = intent.get("name")
    return name if isinstance(name, str) else None


def _entities(state: TrackerState) -> list[Mapping[str, Any]]:
    entities = (state.latest_message or {}).get("entities") or []
    return [e for e in entities if isinstance(e, Mapping)]


def entity_values(
    state: TrackerState, entity: str | None, role: str | None = None, group: str | None = None
) -> list[Any]:
    """Values of the latest message's entities of this type, role and group (Rasa's
    `get_latest_entity_values`)."""
    return [
        e.get("value")
        for e in _entities(state)
        if e.get("entity") == entity and e.get("role") == role and e.get("group") == group
    ]


def intent_is_desired(mapping: SlotMapping, state: TrackerState, domain: Domain) -> bool:
    not_intents = set(mapping.not_intent)
    loop = state.active_loop_name
    if loop is not None and loop in domain.forms:
        names = [c.active_loop for c in mapping.conditions]
        if not names or loop in names:
            not_intents |= set(domain.forms[loop].ignored_intents)
    intent = _intent(state)
    if mapping.intent:
        return intent in mapping.intent
    return intent not in not_intents


def conditions_hold(mapping: SlotMapping, state: TrackerState, slot: str) -> bool:
    if not mapping.conditions or mapping.type == "from_trigger_intent":
        return True
    if state.is_active_loop_rejected and state.get_slot(REQUESTED_SLOT) == slot:
        return False
    loop = state.active_loop_name
    for condition in mapping.conditions:
        if condition.active_loop and condition.active_loop == loop:
            wanted = condition.requested_slot
            if not wanted or wanted == state.get_slot(REQUESTED_SLOT):
                return True
        if condition.active_loop is None and loop is None:
            return True
    return False


def _mapping_key(mapping: SlotMapping) -> tuple[Any, ...]:
    return (mapping.type, mapping.entity, mapping.role, mapping.group, mapping.intent,
            mapping.not_intent, repr(mapping.value), mapping.conditions)  # fmt: skip


def _not_unique(slot: Slot, mapping: SlotMapping, state: TrackerState, domain: Domain) -> bool:
    """A form's required, not requested slot whose entity mapping another required slot shares."""
    loop = state.active_loop_name
    if mapping.type != "from_entity" or loop is None or loop not in domain.forms:
        return False
    if state.get_slot(REQUESTED_SLOT) == slot.name:
        return False
    required = domain.forms[loop].required_slots
    if slot.name not in required:
        return False
    key = _mapping_key(mapping)
    sharing = [
        name
        for name in required
        if name in domain.slots and any(_mapping_key(m) == key for m in domain.slots[name].mappings)
    ]
    return len(sharing) > 1


def _values(mapping: SlotMapping, state: TrackerState) -> list[Any]:
    if mapping.type == "from_entity":
        return entity_values(state, mapping.entity, mapping.role, mapping.group)
    if mapping.type == "from_intent":
        return [mapping.value]
    if mapping.type == "from_trigger_intent":
        loop = state.active_loop_name
        names = [c.active_loop for c in mapping.conditions]
        if loop is None or (names and loop not in names):
            return []
        return [mapping.value]
    if mapping.type == "from_text":
        return [(state.latest_message or {}).get("text")]
    return []


def extract(state: TrackerState, domain: Domain, timestamp: float) -> Extraction:
    """Slot events from the latest user message (see the module docstring)."""
    events: list[SlotSet] = []
    custom: list[str] = []
    for slot in domain.slots.values():
        if slot.name in RASA_SLOTS:
            continue
        for mapping in slot.mappings:
            if mapping.type == "from_entity" and mapping.entity not in domain.entities:
                continue
            if not intent_is_desired(mapping, state, domain):
                continue
            if not conditions_hold(mapping, state, slot.name):
                continue
            if _not_unique(slot, mapping, state, domain):
                continue
            values = _values(mapping, state)
            if values:
                value: Any = values if slot.type == "list" else values[-1]
                if value is not None or state.get_slot(slot.name) is not None:
                    events.append(SlotSet(timestamp=timestamp, name=slot.name, value=value))
                    break
            if mapping.type == "custom" and mapping.action and mapping.action not in custom:
                custom.append(mapping.action)
    if events and VALIDATE_SLOT_MAPPINGS in domain.actions:
        custom.append(VALIDATE_SLOT_MAPPINGS)
    return Extraction(events, custom)
