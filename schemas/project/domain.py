"""The domain of a bot: intents, entities, slots, responses, forms, actions, session config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.project.problems import Source

SlotType = Literal["text", "bool", "categorical", "float", "list", "any"]
SLOT_TYPES: tuple[str, ...] = ("text", "bool", "categorical", "float", "list", "any")
MappingType = Literal["from_entity", "from_text", "from_intent", "from_trigger_intent", "custom"]
MAPPING_TYPES: tuple[str, ...] = (
    "from_entity",
    "from_text",
    "from_intent",
    "from_trigger_intent",
    "custom",
)
RESPONSE_KEYS = (
    "text",
    "image",
    "buttons",
    "quick_replies",
    "attachment",
    "custom",
    "elements",
    "channel",
    "condition",
    "metadata",
    "id",
)


@dataclass(frozen=True, slots=True)
class Intent:
    """An intent; `use_entities` is True (all), or the explicit list of entities it uses."""

    name: str
    source: Source
    use_entities: bool | tuple[str, ...] = True
    ignore_entities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Entity:
    """An entity type with the roles and groups its annotations may use."""

    name: str
    source: Source
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    influence_conversation: bool = True


@dataclass(frozen=True, slots=True)
class MappingCondition:
    """A slot mapping applies only while this loop is active (and this slot requested)."""

    active_loop: str | None
    requested_slot: str | None = None


@dataclass(frozen=True, slots=True)
class SlotMapping:
    """How a slot is filled from a user message (or by a custom action)."""

    type: MappingType
    source: Source
    entity: str | None = None
    role: str | None = None
    group: str | None = None
    intent: tuple[str, ...] = ()
    not_intent: tuple[str, ...] = ()
    value: Any = None
    action: str | None = None
    conditions: tuple[MappingCondition, ...] = ()


@dataclass(frozen=True, slots=True)
class Slot:
    """A slot with its type, initial value, and mappings."""

    name: str
    type: SlotType
    source: Source
    influence_conversation: bool = True
    initial_value: Any = None
    values: tuple[str, ...] = ()
    min_value: float = 0.0
    max_value: float = 1.0
    mappings: tuple[SlotMapping, ...] = ()


@dataclass(frozen=True, slots=True)
class SlotCondition:
    """A response variation applies only when this slot has this value."""

    name: str
    value: Any


@dataclass(frozen=True, slots=True)
class ResponseVariation:
    """One variation of a response: text with `{slot}` templates, buttons, image, custom..."""

    source: Source
    text: str | None = None
    image: str | None = None
    buttons: tuple[dict[str, Any], ...] = ()
    quick_replies: tuple[dict[str, Any], ...] = ()
    attachment: Any = None
    custom: Any = None
    elements: tuple[Any, ...] = ()
    channel: str | None = None
    condition: tuple[SlotCondition, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """A named response (`utter_*`), chosen among its variations."""

    name: str
    source: Source
    variations: tuple[ResponseVariation, ...]


@dataclass(frozen=True, slots=True)
class Form:
    """A form: the slots it asks for, in order, and the intents it ignores."""

    name: str
    source: Source
    required_slots: tuple[str, ...]
    ignored_intents: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Action:
    """A custom action named in the domain."""

    name: str
    source: Source
    send_domain: bool = False


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """When a conversation session expires, and whether slots carry over."""

    session_expiration_time: float = 60.0
    carry_over_slots_to_new_session: bool = True


@dataclass(frozen=True)
class Domain:
    """The merged domain of a project."""

    intents: dict[str, Intent] = field(default_factory=dict)
    entities: dict[str, Entity] = field(default_factory=dict)
    slots: dict[str, Slot] = field(default_factory=dict)
    responses: dict[str, Response] = field(default_factory=dict)
    forms: dict[str, Form] = field(default_factory=dict)
    actions: dict[str, Action] = field(default_factory=dict)
    session_config: SessionConfig = field(default_factory=SessionConfig)
    store_entities_as_slots: bool = True
    files: tuple[Source, ...] = ()

    def is_known_action(self, name: str) -> bool:
        """A custom action, a response, a form, or a Rasa built-in action."""
        return (
            name in self.actions
            or name in self.responses
            or name in self.forms
            or name in DEFAULT_ACTIONS
            or self.is_retrieval_action(name)
        )

    def is_retrieval_action(self, name: str) -> bool:
        """`utter_faq` answers retrieval intent `faq` when `utter_faq/<sub>` responses exist."""
        prefix = name + "/"
        return name.startswith("utter_") and any(r.startswith(prefix) for r in self.responses)

    def is_known_slot(self, name: str) -> bool:
        """A domain slot, or `requested_slot`, which Rasa adds when there are forms."""
        return name in self.slots or (name == REQUESTED_SLOT and bool(self.forms))

    def is_known_loop(self, name: str) -> bool:
        """A form, or a built-in action that runs as a loop (two-stage fallback)."""
        return name in self.forms or name in LOOP_ACTIONS


# Rasa's built-in actions (rasa/shared/core/constants.py DEFAULT_ACTION_NAMES).
DEFAULT_ACTIONS = frozenset(
    {
        "action_listen",
        "action_restart",
        "action_session_start",
        "action_default_fallback",
        "action_deactivate_loop",
        "action_revert_fallback_events",
        "action_default_ask_affirmation",
        "action_default_ask_rephrase",
        "action_two_stage_fallback",
        "action_unlikely_intent",
        "action_back",
        "action_extract_slots",
    }
)

REQUESTED_SLOT = "requested_slot"
LOOP_ACTIONS = frozenset({"action_two_stage_fallback"})

# Rasa's built-in intents (rasa/shared/core/constants.py DEFAULT_INTENTS).
DEFAULT_INTENTS = frozenset({"restart", "back", "out_of_scope", "session_start", "nlu_fallback"})
