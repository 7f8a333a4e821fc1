"""The dialogue tracker as a pure reducer over Rasa 3.x events.

``apply(state, event, history, slot_defaults)`` does what ``event.apply_to(tracker)`` does in
``rasa/shared/core/trackers.py`` and ``events.py``, without the side effects: no file is
written for ``export`` and nothing is scheduled for ``reminder``. ``current_state`` renders
the dict Rasa's ``DialogueStateTracker.current_state()`` returns.
"""

from __future__ import annotations

import copy
import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Self

from schemas.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActionReverted,
    ActiveLoop,
    AllSlotsReset,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    DefinePrevUserUtteredFeaturization,
    EntitiesAdded,
    Event,
    FollowupAction,
    LoopInterrupted,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUtteranceReverted,
    UserUttered,
)
from schemas.project.domain import REQUESTED_SLOT, Domain
from services.dialogue._replay import applied_events, events_after_latest_restart

__all__ = [
    "ACTION_LISTEN",
    "ACTION_SESSION_START",
    "STATE_VERSION",
    "TrackerState",
    "Verbosity",
    "applied_events",
    "apply",
    "current_state",
    "events_after_latest_restart",
    "initial_state",
    "replay",
    "slot_defaults",
]

logger = logging.getLogger(__name__)

ACTION_LISTEN = "action_listen"
ACTION_SESSION_START = "action_session_start"
# Rasa's placeholder loop name, which counts as no loop at all.
SHOULD_NOT_BE_SET = "should_not_be_set"
SESSION_START_METADATA_SLOT = "session_started_metadata"
KNOWLEDGE_BASE_ACTION = "action_query_knowledge_base"
KNOWLEDGE_BASE_SLOTS = (
    "knowledge_base_listed_objects",
    "knowledge_base_last_object",
    "knowledge_base_last_object_type",
)
STATE_VERSION = 1
"""Version of :meth:`TrackerState.to_json`'s layout; bump it when the layout changes."""


class Verbosity(enum.Enum):
    """Which events ``current_state`` includes (Rasa's ``EventVerbosity``)."""

    NONE = 1
    APPLIED = 2
    AFTER_RESTART = 3
    ALL = 4


@dataclass(frozen=True)
class TrackerState:
    """What a tracker knows after its events, kept beside the event list by a store.

    ``latest_message``, ``latest_action`` and ``latest_bot_utterance`` hold Rasa's "empty"
    shapes after a reset rather than None, as Rasa's tracker does.
    """

    slots: Mapping[str, Any]
    latest_message: dict[str, Any] | None
    latest_action: dict[str, Any] | None
    latest_bot_utterance: dict[str, Any] | None
    active_loop: dict[str, Any] | None
    followup_action: str | None
    paused: bool
    latest_input_channel: str | None
    latest_event_time: float | None
    # Rasa keeps this on the latest UserUttered object, outside its parse_data.
    use_text_for_featurization: bool | None = None

    @property
    def latest_action_name(self) -> str | None:
        """Name of the latest action, or its text for an end-to-end action."""
        if self.latest_action is None:
            return None
        name = self.latest_action.get("action_name") or self.latest_action.get("action_text")
        return name if isinstance(name, str) else None

    @property
    def active_loop_name(self) -> str | None:
        """Name of the active loop, or None when no loop is active."""
        if not self.active_loop or self.active_loop.get("name") == SHOULD_NOT_BE_SET:
            return None
        name = self.active_loop.get("name")
        return name if isinstance(name, str) else None

    @property
    def is_active_loop_rejected(self) -> bool:
        """Whether a loop is active and it rejected its last execution."""
        return self.active_loop is not None and bool(self.active_loop.get("rejected"))

    @property
    def is_active_loop_interrupted(self) -> bool:
        """Whether a loop is active and the conversation left its happy path."""
        return self.active_loop is not None and bool(self.active_loop.get("is_interrupted"))

    def get_slot(self, name: str) -> Any:
        """The slot's value, or None for a slot the domain does not have."""
        return self.slots.get(name)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for storage; :meth:`from_json` reads it back."""
        return {
            "version": STATE_VERSION,
            "slots": copy.deepcopy(dict(self.slots)),
            "latest_message": copy.deepcopy(self.latest_message),
            "latest_action": copy.deepcopy(self.latest_action),
            "latest_bot_utterance": copy.deepcopy(self.latest_bot_utterance),
            "active_loop": copy.deepcopy(self.active_loop),
            "followup_action": self.followup_action,
            "paused": self.paused,
            "latest_input_channel": self.latest_input_channel,
            "latest_event_time": self.latest_event_time,
            "use_text_for_featurization": self.use_text_for_featurization,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Read what :meth:`to_json` wrote; raise ``ValueError`` for another layout."""
        version = data.get("version")
        if version != STATE_VERSION:
            raise ValueError(f"unsupported tracker state version {version!r}")
        slots = data.get("slots")
        if not isinstance(slots, dict):
            raise ValueError("tracker state needs a 'slots' object")
        try:
            return cls(
                slots=copy.deepcopy(slots),
                latest_message=copy.deepcopy(data["latest_message"]),
                latest_action=copy.deepcopy(data["latest_action"]),
                latest_bot_utterance=copy.deepcopy(data["latest_bot_utterance"]),
                active_loop=copy.deepcopy(data["active_loop"]),
                followup_action=data["followup_action"],
                paused=bool(data["paused"]),
                latest_input_channel=data["latest_input_channel"],
                latest_event_time=data["latest_event_time"],
                use_text_for_featurization=data.get("use_text_for_featurization"),
            )
        except KeyError as exc:
            raise ValueError(f"tracker state lacks {exc.args[0]!r}") from exc


def slot_defaults(domain: Domain) -> dict[str, Any]:
    """Initial slot values, with the slots Rasa's domain adds on its own."""
    values = {name: copy.deepcopy(slot.initial_value) for name, slot in domain.slots.items()}
    if domain.forms:
        values.setdefault(REQUESTED_SLOT, None)
    if KNOWLEDGE_BASE_ACTION in domain.actions:
        for name in KNOWLEDGE_BASE_SLOTS:
            values.setdefault(name, None)
    values.setdefault(SESSION_START_METADATA_SLOT, None)
    return values


def initial_state(slot_defaults: Mapping[str, Any]) -> TrackerState:
    """The state of a tracker with no events."""
    blank = TrackerState(
        slots={},
        latest_message=None,
        latest_action=None,
        latest_bot_utterance=None,
        active_loop=None,
        followup_action=None,
        paused=False,
        latest_input_channel=None,
        latest_event_time=None,
    )
    return _reset(blank, slot_defaults)


def apply(
    state: TrackerState,
    event: Event,
    history: Sequence[Event],
    slot_defaults: Mapping[str, Any],
    initial: TrackerState | None = None,
) -> TrackerState:
    """The state after ``event``; ``history`` is every event before it — or, with
    ``initial``, the recent events after the point whose state ``initial`` is.

    Only ``rewind`` and ``undo`` read ``history``: like Rasa they reset the tracker and
    replay the events that still apply (from ``initial`` unless a restart or session start
    among them cuts it off).
    """
    if isinstance(event, UserUtteranceReverted | ActionReverted):
        cut = any(isinstance(e, Restarted | SessionStarted) for e in history)
        after = initial if initial is not None and not cut else _reset(state, slot_defaults)
        for applied in applied_events([*history, event]):
            after = _step(after, applied, slot_defaults, log=False)
        # Rasa reads the channel off every logged event, reverted ones included.
        after = replace(after, latest_input_channel=state.latest_input_channel)
    else:
        after = _step(state, event, slot_defaults, log=True)
    return replace(after, latest_event_time=event.timestamp)


def replay(events: Sequence[Event], slot_defaults: Mapping[str, Any]) -> TrackerState:
    """Fold :func:`apply` over ``events`` from the initial state."""
    state = initial_state(slot_defaults)
    for index, event in enumerate(events):
        state = apply(state, event, events[:index], slot_defaults)
    return state


def current_state(
    sender_id: str,
    state: TrackerState,
    events: Sequence[Event],
    verbosity: Verbosity = Verbosity.AFTER_RESTART,
) -> dict[str, Any]:
    """Rasa's ``DialogueStateTracker.current_state()``: the same keys, in the same shapes."""
    return {
        "sender_id": sender_id,
        "slots": copy.deepcopy(dict(state.slots)),
        "latest_message": copy.deepcopy(state.latest_message),
        "latest_event_time": state.latest_event_time,
        "followup_action": state.followup_action,
        "paused": state.paused,
        "events": _events_for(verbosity, events),
        "latest_input_channel": state.latest_input_channel,
        "active_loop": copy.deepcopy(state.active_loop) if state.active_loop else {},
        "latest_action": copy.deepcopy(state.latest_action),
        "latest_action_name": state.latest_action_name,
    }


def _events_for(verbosity: Verbosity, events: Sequence[Event]) -> list[dict[str, Any]] | None:
    if verbosity is Verbosity.ALL:
        chosen = list(events)
    elif verbosity is Verbosity.AFTER_RESTART:
        chosen = events_after_latest_restart(events)
    elif verbosity is Verbosity.APPLIED:
        chosen = applied_events(events)
    else:
        return None
    return [event.to_dict() for event in chosen]


def _empty_message() -> dict[str, Any]:
    # The parse_data of Rasa's UserUttered.empty().
    return {"intent": {}, "entities": [], "text": None, "message_id": None, "metadata": {}}


def _reset(state: TrackerState, slot_defaults: Mapping[str, Any]) -> TrackerState:
    """Rasa's ``tracker._reset()``; the input channel is read from all events, so it stays."""
    return replace(
        state,
        slots=copy.deepcopy(dict(slot_defaults)),
        paused=False,
        latest_action={},
        latest_message=_empty_message(),
        latest_bot_utterance={"text": None, "data": {}, "metadata": {}},
        followup_action=ACTION_LISTEN,
        active_loop=None,
        use_text_for_featurization=None,
    )


def _step(
    state: TrackerState, event: Event, slot_defaults: Mapping[str, Any], *, log: bool
) -> TrackerState:
    match event:
        case UserUttered():
            return _on_user_uttered(state, event)
        case BotUttered():
            bot = {"text": event.text, "data": event.data, "metadata": event.metadata}
            return replace(state, latest_bot_utterance=copy.deepcopy(bot))
        case ActionExecuted():
            return _on_action_executed(state, event)
        case SlotSet():
            return _on_slot_set(state, event, log=log)
        case ActiveLoop():
            return replace(state, active_loop=_new_loop(state, event.name))
        case LoopInterrupted():
            return _with_loop(state, is_interrupted=event.is_interrupted)
        case ActionExecutionRejected():
            if state.active_loop is not None and event.name == state.active_loop_name:
                return _with_loop(state, rejected=True)
            return state
        case Restarted():
            return replace(_reset(state, slot_defaults), followup_action=ACTION_SESSION_START)
        case SessionStarted():
            return _reset(state, slot_defaults)
        case AllSlotsReset():
            return replace(state, slots=copy.deepcopy(dict(slot_defaults)))
        case FollowupAction():
            return replace(state, followup_action=event.name)
        case ConversationPaused():
            return replace(state, paused=True)
        case ConversationResumed():
            return replace(state, paused=False)
        case EntitiesAdded():
            return _on_entities_added(state, event)
        case DefinePrevUserUtteredFeaturization():
            if state.latest_action_name != ACTION_LISTEN or state.latest_message is None:
                return state
            return replace(state, use_text_for_featurization=event.use_text_for_featurization)
        case _:
            # agent, reminder, cancel_reminder and export change nothing; their effects
            # (scheduling, files) belong to other workers or are not replicated.
            return state


def _on_user_uttered(state: TrackerState, event: UserUttered) -> TrackerState:
    message = copy.deepcopy(event.parse_data)
    # Rasa exposes the event's entity list, which is never None.
    message["entities"] = event.entities
    use_text: bool | None = None
    if event.text and not event.intent_name:
        use_text = True
    elif event.intent_name and not event.text:
        use_text = False
    return replace(
        state,
        latest_message=message,
        followup_action=None,
        latest_input_channel=event.input_channel,
        use_text_for_featurization=use_text,
    )


def _on_action_executed(state: TrackerState, event: ActionExecuted) -> TrackerState:
    action: dict[str, Any] = (
        {"action_name": event.name} if event.name else {"action_text": event.action_text}
    )
    after = replace(state, latest_action=action, followup_action=None)
    if state.active_loop is not None and state.active_loop_name:
        after = _with_loop(after, is_interrupted=False)
    if state.active_loop is not None and action.get("action_name") == state.active_loop_name:
        after = _with_loop(after, rejected=False)
    return after


def _on_slot_set(state: TrackerState, event: SlotSet, *, log: bool) -> TrackerState:
    if event.name not in state.slots:
        if log:
            logger.error(
                "Tried to set non existent slot '%s'. Make sure you added all your slots "
                "to your domain file.",
                event.name,
            )
        return state
    return replace(state, slots={**state.slots, event.name: copy.deepcopy(event.value)})


def _on_entities_added(state: TrackerState, event: EntitiesAdded) -> TrackerState:
    if state.latest_action_name != ACTION_LISTEN or state.latest_message is None:
        return state
    entities = list(state.latest_message.get("entities") or [])
    for entity in event.entities:
        if entity not in entities:
            entities.append(copy.deepcopy(entity))
    return replace(state, latest_message={**state.latest_message, "entities": entities})


def _new_loop(state: TrackerState, name: str | None) -> dict[str, Any] | None:
    if name is None:
        return None
    return {
        "name": name,
        "is_interrupted": False,
        "rejected": False,
        "trigger_message": copy.deepcopy(state.latest_message),
    }


def _with_loop(state: TrackerState, **changes: bool) -> TrackerState:
    if state.active_loop is None:
        return state
    return replace(state, active_loop={**state.active_loop, **changes})
