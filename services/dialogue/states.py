"""Dialogue states: what Rasa 3.x policies see of a conversation before each action.

``states_for`` is Rasa's ``tracker.past_states(domain)``: the tracker is replayed over its applied
events and one state is taken before every ``ActionExecuted`` and one after the last event
(``Domain.get_active_state``: the latest user message with its entities filtered by the intent's
``use_entities``/``ignore_entities``, the featurized slots that influence the conversation, the
previous action and the active loop). The rest of the module is the ``MaxHistoryTrackerFeaturizer``
around it: training examples, prediction states, and the lookup key memoization uses.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from schemas.events import (
    ActionExecuted,
    AllSlotsReset,
    Event,
    Restarted,
    SessionStarted,
    SlotSet,
)
from schemas.project.domain import DEFAULT_INTENTS, Domain, Slot
from services.dialogue.tracker import (
    ACTION_LISTEN,
    TrackerState,
    applied_events,
    apply,
    initial_state,
    slot_defaults,
)

__all__ = [
    "ACTION_UNLIKELY_INTENT",
    "SHOULD_NOT_BE_SET",
    "RuleOnlyData",
    "SlotFeature",
    "State",
    "UserSubState",
    "choose_last_user_input",
    "end_to_end_texts",
    "feature_key",
    "prediction_states",
    "slice_states",
    "slot_features",
    "states_for",
    "strip_user_text_if_intent",
    "training_examples",
    "used_entities",
]

SHOULD_NOT_BE_SET = "should_not_be_set"
ACTION_UNLIKELY_INTENT = "action_unlikely_intent"
ENTITY_LABEL_SEPARATOR = "#"
DEFAULT_CATEGORICAL_VALUE = "__other__"

SlotFeature = tuple[float, ...] | str
"""A slot's features, or ``"should_not_be_set"`` (a rule's "this slot is not set")."""


@dataclass(frozen=True, slots=True)
class UserSubState:
    """The latest user message as a state sees it; entities are sorted entity labels."""

    intent: str | None = None
    text: str | None = None
    entities: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.text is not None:
            out["text"] = self.text
        if self.intent is not None:
            out["intent"] = self.intent
        if self.entities:
            out["entities"] = self.entities
        return out


@dataclass(frozen=True, slots=True)
class State:
    """One dialogue state, hashable; :meth:`to_dict` gives Rasa's dict shape.

    ``user`` is None when the state has no user part; an empty ``UserSubState`` is the
    ``"user": {}`` the featurizer leaves when it strips the last user input.
    """

    user: UserSubState | None = None
    action_name: str | None = None
    action_text: str | None = None
    active_loop: str | None = None
    slots: tuple[tuple[str, SlotFeature], ...] = ()

    @property
    def is_prev_action_listen(self) -> bool:
        return self.action_name == ACTION_LISTEN

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{"user": ..., "prev_action": ..., "active_loop": ..., "slots": ...}`` as Rasa."""
        out: dict[str, dict[str, Any]] = {}
        if self.user is not None:
            out["user"] = self.user.to_dict()
        if self.action_name is not None:
            out["prev_action"] = {"action_name": self.action_name}
        elif self.action_text is not None:
            out["prev_action"] = {"action_text": self.action_text}
        if self.active_loop:
            out["active_loop"] = {"name": self.active_loop}
        if self.slots:
            out["slots"] = dict(self.slots)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> State:
        """Read a Rasa-shaped state (lists are accepted where Rasa has tuples)."""
        user = data.get("user")
        action = data.get("prev_action") or {}
        slots = data.get("slots") or {}
        return cls(
            user=None
            if user is None
            else UserSubState(
                user.get("intent"), user.get("text"), tuple(user.get("entities", ()))
            ),
            action_name=action.get("action_name"),
            action_text=action.get("action_text"),
            active_loop=(data.get("active_loop") or {}).get("name"),
            slots=tuple(
                sorted((k, v if isinstance(v, str) else tuple(v)) for k, v in slots.items())
            ),
        )


@dataclass(frozen=True, slots=True)
class RuleOnlyData:
    """Slots and loops that appear only in rules: ML policies leave them out of their states."""

    slots: frozenset[str] = frozenset()
    loops: frozenset[str] = frozenset()


def slot_features(slot: Slot, value: Any) -> tuple[float, ...]:
    """Rasa's ``slot.as_feature()``: empty for a slot that does not influence the dialogue."""
    if not slot.influence_conversation or slot.type == "any":
        return ()
    if slot.type == "text":
        return (0.0 if value is None else 1.0,)
    if slot.type == "bool":
        try:
            return (0.0, 0.0) if value is None else (1.0, float(_bool_from_any(value)))
        except (TypeError, ValueError):
            return (0.0, 0.0)
    if slot.type == "float":
        try:
            number = float(value)
        except (TypeError, ValueError):
            return (0.0, 0.0)
        low, high = float(slot.min_value), float(slot.max_value)
        covered = abs(high - low) if abs(high - low) > 0 else 1.0
        return (1.0, (max(low, min(high, number)) - low) / covered)
    if slot.type == "list":
        try:
            return (1.0,) if value is not None and len(value) > 0 else (0.0,)
        except TypeError:
            return (0.0,)
    values = [str(v).lower() for v in slot.values]
    if DEFAULT_CATEGORICAL_VALUE not in values:
        values.append(DEFAULT_CATEGORICAL_VALUE)
    features = [0.0] * len(values)
    if value is not None:
        wanted = str(value).lower()
        index = values.index(wanted if wanted in values else DEFAULT_CATEGORICAL_VALUE)
        features[index] = 1.0
    return tuple(features)


def _bool_from_any(value: Any) -> bool:
    if isinstance(value, bool | int | float):
        return value == 1.0
    if not isinstance(value, str):
        raise TypeError(f"cannot convert {type(value).__name__} to bool")
    if value.isnumeric():
        return float(value) == 1.0
    if value.strip().lower() not in ("true", "false"):
        raise ValueError(f"cannot convert {value!r} to bool")
    return value.strip().lower() == "true"


def used_entities(domain: Domain, intent_name: str | None) -> frozenset[str] | None:
    """Entity labels (``city``, ``city#from``) the intent lets into a state; None = any."""
    intent = domain.intents.get(intent_name or "")
    if intent is None and intent_name not in DEFAULT_INTENTS:
        return None
    entities = domain.entities.values()
    ignored_by_default = {e.name for e in entities if not e.influence_conversation}
    labels = {
        e.name: {f"{e.name}{ENTITY_LABEL_SEPARATOR}{sub}" for sub in (*e.roles, *e.groups)}
        for e in entities
    }
    use = True if intent is None else intent.use_entities
    included: set[str]
    if use is True:
        included = {e.name for e in entities} - ignored_by_default
        included.update(label for sub in labels.values() for label in sub)
    else:
        included = set(use or ())
        included.update(label for name in list(included) for label in labels.get(name, ()))
    # An intent without `ignore_entities` ignores the entities that do not influence anything.
    ignore = intent.ignore_entities if intent is not None and intent.ignore_entities else ()
    excluded = set(ignore or ignored_by_default)
    excluded.update(label for name in list(excluded) for label in labels.get(name, ()))
    return frozenset(included - excluded)


def states_for(
    events: Sequence[Event],
    domain: Domain,
    *,
    omit_unset_slots: bool = False,
    ignore_rule_only_turns: bool = False,
    rule_only: RuleOnlyData | None = None,
    initial: TrackerState | None = None,
) -> list[State]:
    """One state before each applied ``ActionExecuted`` and one at the end (``past_states``).

    With ``ignore_rule_only_turns`` (what ML policies ask for at prediction time), turns that a
    rule hid (``hide_rule_turn``) are skipped and ``rule_only`` slots and loops left out.
    ``initial`` is the tracker before ``events`` when they are the recent part of a longer
    conversation (its slots count); a restart or session start among them cuts it off.
    """
    applied = applied_events(events)
    if initial is not None and _cuts_history(events):
        initial = None
    return _states_over(
        applied, domain, omit_unset_slots, ignore_rule_only_turns, rule_only, initial
    )


def _cuts_history(events: Sequence[Event]) -> bool:
    return any(isinstance(e, Restarted | SessionStarted) for e in events)


def _states_over(
    applied: Sequence[Event],
    domain: Domain,
    omit_unset_slots: bool,
    ignore_rule_only_turns: bool,
    rule_only: RuleOnlyData | None,
    initial: TrackerState | None = None,
) -> list[State]:
    defaults = slot_defaults(domain)
    tracker = initial if initial is not None else initial_state(defaults)
    was_set: set[str] = {k for k, v in tracker.slots.items() if v != defaults.get(k)}
    allowed: dict[str | None, frozenset[str] | None] = {}
    states: list[State] = []
    last_ml_action: tuple[str | None, str | None] = (None, None)
    turn_was_hidden = False
    for event in [*applied, None]:
        if event is None or isinstance(event, ActionExecuted):
            state = _active_state(tracker, domain, was_set, omit_unset_slots, allowed)
            if not ignore_rule_only_turns:
                states.append(state)
            else:
                if not turn_was_hidden:
                    last_ml_action = (state.action_name, state.action_text)
                # A follow-up action or the loop's own happy-path turn keeps the hidden flag.
                if not tracker.followup_action and (
                    tracker.latest_action_name != tracker.active_loop_name
                ):
                    turn_was_hidden = event is not None and event.hide_rule_turn
                if not turn_was_hidden:
                    states.append(_ml_state(state, states, last_ml_action, rule_only))
        if event is not None:
            tracker = apply(tracker, event, (), defaults)
            if isinstance(event, SlotSet) and event.name in tracker.slots:
                was_set.add(event.name)
            elif isinstance(event, AllSlotsReset):
                was_set.clear()
    return states


def _ml_state(
    state: State,
    previous: Sequence[State],
    last_ml_action: tuple[str | None, str | None],
    rule_only: RuleOnlyData | None,
) -> State:
    if rule_only is not None:
        state = replace(
            state,
            slots=tuple(s for s in state.slots if s[0] not in rule_only.slots),
            active_loop=None if state.active_loop in rule_only.loops else state.active_loop,
        )
    # After a hidden rule turn the user input and previous action are those of the ML turn.
    if previous and not state.is_prev_action_listen:
        state = replace(state, user=previous[-1].user)
    if last_ml_action != (None, None):
        state = replace(state, action_name=last_ml_action[0], action_text=last_ml_action[1])
    return state


def _active_state(
    tracker: TrackerState,
    domain: Domain,
    was_set: Collection[str],
    omit_unset_slots: bool,
    allowed: dict[str | None, frozenset[str] | None],
) -> State:
    slots: list[tuple[str, SlotFeature]] = []
    for name, slot in domain.slots.items():
        value = tracker.slots.get(name)
        features = slot_features(slot, value)
        if not features or (omit_unset_slots and name not in was_set):
            continue
        if isinstance(value, str) and value == SHOULD_NOT_BE_SET:
            slots.append((name, SHOULD_NOT_BE_SET))
        elif any(features):
            slots.append((name, features))
    latest = tracker.latest_action or {}
    loop = (tracker.active_loop or {}).get("name")
    return State(
        user=_user_sub_state(tracker, domain, allowed),
        action_name=latest.get("action_name"),
        action_text=None if latest.get("action_name") else latest.get("action_text"),
        active_loop=loop if isinstance(loop, str) and loop else None,
        slots=tuple(sorted(slots)),
    )


def _user_sub_state(
    tracker: TrackerState, domain: Domain, allowed: dict[str | None, frozenset[str] | None]
) -> UserSubState | None:
    message = tracker.latest_message or {}
    text = message.get("text")
    intent_data = message.get("intent")
    intent = intent_data.get("name") if isinstance(intent_data, dict) else None
    entities = [e for e in message.get("entities") or [] if isinstance(e, dict)]
    if not text and not intent and not entities:
        return None
    use_text = tracker.use_text_for_featurization
    labels: set[str] = set()
    if not use_text:
        for entity in (e for e in entities if "entity" in e):
            labels.add(str(entity["entity"]))
            labels.update(
                f"{entity['entity']}{ENTITY_LABEL_SEPARATOR}{entity[k]}"
                for k in ("role", "group")
                if k in entity
            )
        if intent not in allowed:
            allowed[intent] = used_entities(domain, intent)
        wanted = allowed[intent]
        if wanted is not None:
            labels &= wanted
    # Texts count stripped, as the story reader reads them, so typed spaces do not matter.
    text = text.strip() if isinstance(text, str) else None
    sub = UserSubState(
        intent=intent if intent and not use_text else None,
        text=text if text and (use_text or use_text is None) else None,
        entities=tuple(sorted(labels)),
    )
    return None if sub == UserSubState() else sub


def slice_states(states: Sequence[State], max_history: int | None) -> list[State]:
    """The last ``max_history`` states (all of them for None or 0)."""
    return list(states[-max_history:]) if max_history else list(states)


def strip_user_text_if_intent(states: Sequence[State]) -> list[State]:
    """Drop the user text wherever the intent is known (Rasa's ``_remove_user_text_if_intent``)."""
    return [
        replace(s, user=replace(s.user, text=None))
        if s.user and s.user.intent and s.user.text
        else s
        for s in states
    ]


def choose_last_user_input(states: Sequence[State], use_text: bool) -> list[State]:
    """Featurize the last user turn by text or by intent, then drop text where intent is known."""
    out = list(states)
    if out and out[-1].is_prev_action_listen and out[-1].user is not None:
        user = out[-1].user
        user = replace(user, intent=None, entities=()) if use_text else replace(user, text=None)
        out[-1] = replace(out[-1], user=user)
    return strip_user_text_if_intent(out)


def prediction_states(
    events: Sequence[Event],
    domain: Domain,
    max_history: int | None,
    *,
    use_text_for_last_user_input: bool = False,
    ignore_rule_only_turns: bool = True,
    rule_only: RuleOnlyData | None = None,
    initial: TrackerState | None = None,
) -> list[State]:
    """What a max-history policy looks at to predict the next action."""
    states = states_for(
        events,
        domain,
        ignore_rule_only_turns=ignore_rule_only_turns,
        rule_only=rule_only,
        initial=initial,
    )
    states = [s for s in states if s.action_name != ACTION_UNLIKELY_INTENT]
    return choose_last_user_input(slice_states(states, max_history), use_text_for_last_user_input)


def training_examples(
    events: Sequence[Event],
    domain: Domain,
    max_history: int | None,
    *,
    unpredictable: Collection[int] = (),
) -> Iterator[tuple[list[State], str]]:
    """(last ``max_history`` states, next action) for every action of a training tracker.

    ``unpredictable`` holds indices into ``events`` of actions that are not labels (a story's
    first action before any user turn). The user text is dropped where the intent is known.
    """
    applied = applied_events(events)
    skipped = {id(events[i]) for i in unpredictable}
    states = [
        s
        for s in _states_over(applied, domain, False, False, None)
        if s.action_name != ACTION_UNLIKELY_INTENT
    ]
    label_index = 0
    for event in applied:
        if not isinstance(event, ActionExecuted) or event.name == ACTION_UNLIKELY_INTENT:
            continue
        label_index += 1
        label = event.name or event.action_text
        if id(event) in skipped or label is None:
            continue
        yield strip_user_text_if_intent(slice_states(states[:label_index], max_history)), label


def end_to_end_texts(states: Sequence[State]) -> set[str]:
    """The user texts of training states whose user turn has no intent (end-to-end steps)."""
    return {s.user.text for s in states if s.user and s.user.text and not s.user.intent}


def feature_key(states: Sequence[State]) -> str:
    """Memoization's lookup key: Rasa's sorted JSON of the states with quotes removed."""
    return json.dumps([s.to_dict() for s in states], sort_keys=True).replace('"', "")
