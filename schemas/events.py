"""Tracker events, byte-compatible with the JSON Rasa 3.x writes for them.

Every event class knows the keys Rasa's ``Event.as_dict()`` writes for it and in
which order, so ``parse_event(d).to_dict()`` reproduces a Rasa-written dict
exactly, key order included.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from schemas._base import JsonDict, Number, WireModel
from schemas._event_codec import (
    EventValidationError,
    describe,
    number_or_none,
    translate_legacy,
    wire_value,
)

__all__ = [
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "PARLEY_EVENTS",
    "ActionExecuted",
    "ActionExecutionRejected",
    "ActionFailed",
    "ActionReverted",
    "ActiveLoop",
    "AgentAction",
    "AgentUttered",
    "AllSlotsReset",
    "AnyEvent",
    "BotUttered",
    "ConversationPaused",
    "ConversationResumed",
    "DefinePrevUserUtteredFeaturization",
    "EntitiesAdded",
    "Event",
    "EventValidationError",
    "FollowupAction",
    "LoopInterrupted",
    "ReminderCancelled",
    "ReminderScheduled",
    "Restarted",
    "SessionStarted",
    "SlotSet",
    "StoryExported",
    "UserFeedback",
    "UserUtteranceReverted",
    "UserUttered",
    "event_record",
    "parse_event",
    "parse_event_record",
    "parse_events",
]

# Reminder entities: a list of entity dicts, or the SDK's {entity: value} shorthand.
ReminderEntities = list[JsonDict] | JsonDict | None


class Event(WireModel):
    """Base of every tracker event; use a subclass or :func:`parse_event`."""

    event: str
    timestamp: Number | None = None
    metadata: JsonDict = {}

    # Keys the subclass's ``as_dict`` adds after ``event``/``timestamp``, in order.
    WIRE_FIELDS: ClassVar[tuple[str, ...]] = ()
    # Whether Rasa writes ``metadata`` even when it is empty.
    ALWAYS_WRITES_METADATA: ClassVar[bool] = False
    # Wire fields left out while None, because Rasa never writes them.
    OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _reject_base(cls, data: Any) -> Any:
        if cls is Event:
            raise TypeError("Event is abstract: build a subclass or call parse_event()")
        return data

    @field_validator("timestamp", mode="before")
    @classmethod
    def _check_timestamp(cls, value: Any) -> Any:
        return number_or_none(value)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    def to_dict(self) -> dict[str, Any]:
        """The event as Rasa's ``as_dict()`` writes it, key order included."""
        out: dict[str, Any] = {"event": self.event, "timestamp": self.timestamp}
        if self.metadata:
            out["metadata"] = copy.deepcopy(self.metadata)
        for name in self.WIRE_FIELDS:
            value = getattr(self, name)
            if value is not None or name not in self.OMITTED_WHEN_NONE:
                out[name] = wire_value(value)
        if self.ALWAYS_WRITES_METADATA:
            # Assigning an existing key keeps its place right after the timestamp.
            out["metadata"] = copy.deepcopy(self.metadata)
        return out

    def to_json(self) -> str:
        """``json.dumps`` of :meth:`to_dict`."""
        return json.dumps(self.to_dict())

    def stamped(self, ts: float) -> Self:
        """A copy of this event with ``timestamp`` set to ``ts``."""
        if isinstance(ts, bool) or not isinstance(ts, int | float):
            raise TypeError(f"timestamp must be a number, not {type(ts).__name__}")
        return self.model_copy(update={"timestamp": ts})


class UserUttered(Event):
    """The user said something (``user``)."""

    event: Literal["user"] = "user"
    text: str | None = None
    parse_data: JsonDict = {}
    input_channel: str | None = None
    message_id: str | None = None

    WIRE_FIELDS = ("text", "parse_data", "input_channel", "message_id")
    ALWAYS_WRITES_METADATA = True

    @model_validator(mode="before")
    @classmethod
    def _normalise_parse_data(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        given = data.get("parse_data")
        if given is not None and not isinstance(given, dict):
            return data
        given = given or {}
        # Same construction as Rasa's UserUttered.__init__, so key order matches.
        parse_data: JsonDict = {
            "intent": given.get("intent") or {},
            "entities": given.get("entities") or [],
            "text": data.get("text"),
            "message_id": data.get("message_id"),
            "metadata": data.get("metadata") or {},
        }
        parse_data.update(given)
        return {**data, "parse_data": parse_data}

    @property
    def intent_name(self) -> str | None:
        """Name of the predicted intent, if any."""
        intent = self.parse_data.get("intent")
        name = intent.get("name") if isinstance(intent, dict) else None
        return name if isinstance(name, str) else None

    @property
    def entities(self) -> list[dict[str, Any]]:
        """A copy of the extracted entities."""
        entities = self.parse_data.get("entities")
        if not isinstance(entities, list):
            return []
        return [copy.deepcopy(e) for e in entities if isinstance(e, dict)]

    @property
    def is_external(self) -> bool:
        """Whether the message was triggered externally (e.g. by a reminder)."""
        return bool(self.metadata.get("is_external", False))


class BotUttered(Event):
    """The bot said something (``bot``)."""

    event: Literal["bot"] = "bot"
    text: str | None = None
    data: JsonDict = {}

    WIRE_FIELDS = ("text", "data")
    ALWAYS_WRITES_METADATA = True

    @field_validator("data", mode="before")
    @classmethod
    def _data_none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class ActionExecuted(Event):
    """An action ran (``action``)."""

    event: Literal["action"] = "action"
    name: str | None = None
    policy: str | None = None
    confidence: Number | None = None
    action_text: str | None = None
    hide_rule_turn: bool = False

    WIRE_FIELDS = ("name", "policy", "confidence", "action_text", "hide_rule_turn")

    @field_validator("confidence", mode="before")
    @classmethod
    def _check_confidence(cls, value: Any) -> Any:
        return number_or_none(value)


class SlotSet(Event):
    """A slot was set (``slot``)."""

    event: Literal["slot"] = "slot"
    name: str
    value: Any = None

    WIRE_FIELDS = ("name", "value")


class ActiveLoop(Event):
    """A loop (form) was activated, or deactivated when ``name`` is None (``active_loop``)."""

    event: Literal["active_loop"] = "active_loop"
    name: str | None = None

    WIRE_FIELDS = ("name",)


class LoopInterrupted(Event):
    """Whether the active loop was interrupted (``loop_interrupted``)."""

    event: Literal["loop_interrupted"] = "loop_interrupted"
    is_interrupted: bool

    WIRE_FIELDS = ("is_interrupted",)


class ActionExecutionRejected(Event):
    """An action refused to run (``action_execution_rejected``)."""

    event: Literal["action_execution_rejected"] = "action_execution_rejected"
    name: str
    policy: str | None = None
    confidence: Number | None = None

    WIRE_FIELDS = ("name", "policy", "confidence")

    @field_validator("confidence", mode="before")
    @classmethod
    def _check_confidence(cls, value: Any) -> Any:
        return number_or_none(value)


class Restarted(Event):
    """The conversation restarts (``restart``)."""

    event: Literal["restart"] = "restart"


class AllSlotsReset(Event):
    """All slots go back to their initial values (``reset_slots``)."""

    event: Literal["reset_slots"] = "reset_slots"


class UserUtteranceReverted(Event):
    """Revert to before the latest user message (``rewind``)."""

    event: Literal["rewind"] = "rewind"


class ActionReverted(Event):
    """Revert the latest action (``undo``)."""

    event: Literal["undo"] = "undo"


class ReminderScheduled(Event):
    """Trigger ``intent`` at ``date_time`` (``reminder``)."""

    event: Literal["reminder"] = "reminder"
    intent: str
    date_time: datetime
    entities: ReminderEntities = None
    name: str = Field(default_factory=lambda: str(uuid.uuid1()))
    kill_on_user_msg: bool = True

    WIRE_FIELDS = ("intent", "date_time", "entities", "name", "kill_on_user_msg")

    @field_validator("date_time", mode="before")
    @classmethod
    def _parse_date_time(cls, value: Any) -> Any:
        if isinstance(value, str):
            return datetime.fromisoformat(value)
        return value

    @field_validator("name", mode="before")
    @classmethod
    def _name_none_is_generated(cls, value: Any) -> Any:
        # Rasa names an unnamed reminder with a fresh uuid1 too.
        return str(uuid.uuid1()) if value is None else value


class ReminderCancelled(Event):
    """Cancel the reminders matching the given fields, or all (``cancel_reminder``)."""

    event: Literal["cancel_reminder"] = "cancel_reminder"
    intent: str | None = None
    entities: ReminderEntities = None
    name: str | None = None

    WIRE_FIELDS = ("intent", "entities", "name")


class FollowupAction(Event):
    """Run the action ``name`` next (``followup``)."""

    event: Literal["followup"] = "followup"
    name: str

    WIRE_FIELDS = ("name",)


class ConversationPaused(Event):
    """Ignore the user until resumed (``pause``)."""

    event: Literal["pause"] = "pause"


class ConversationResumed(Event):
    """The bot takes over again (``resume``)."""

    event: Literal["resume"] = "resume"


class SessionStarted(Event):
    """A new conversation session begins (``session_started``)."""

    event: Literal["session_started"] = "session_started"


class EntitiesAdded(Event):
    """Entities added to the latest user message (``entities``)."""

    event: Literal["entities"] = "entities"
    entities: list[JsonDict]

    WIRE_FIELDS = ("entities",)


class DefinePrevUserUtteredFeaturization(Event):
    """Whether the previous user message was featurized by text (``user_featurization``)."""

    event: Literal["user_featurization"] = "user_featurization"
    use_text_for_featurization: bool

    WIRE_FIELDS = ("use_text_for_featurization",)


class AgentUttered(Event):
    """A human agent said something (``agent``)."""

    event: Literal["agent"] = "agent"
    text: str | None = None
    data: Any = None

    WIRE_FIELDS = ("text", "data")


class StoryExported(Event):
    """Rasa would export the story to ``path``; Parley only records it (``export``)."""

    event: Literal["export"] = "export"
    path: str | None = None

    WIRE_FIELDS = ("path",)
    # Rasa's StoryExported has no as_dict of its own: it never writes `path`, and
    # the SDK sends none, so a missing path must stay missing to round-trip.
    OMITTED_WHEN_NONE = frozenset({"path"})


class ActionFailed(Event):
    """A custom action failed, timed out or was not found (``action_failed``).

    A Parley event, not one of Rasa's: Rasa records `action` for a failed action and loses
    what it returned (#7630); Parley records no `action` and this event instead, so the
    failure is explicit. No tracker effect. Rasa's own tools do not know it (see
    docs/ARCHITECTURE.md: Parley events).
    """

    event: Literal["action_failed"] = "action_failed"
    name: str
    reason: Literal["failed", "timeout", "not_found"]
    error: str | None = None

    WIRE_FIELDS = ("name", "reason", "error")


class AgentAction(Event):
    """A human agent's console command during a handoff (``agent_action``).

    A Parley event: who claimed, assigned, noted, handed back or resolved the conversation,
    with the note's text or the assignee. No tracker effect (a hand-back's or resolve's
    `resume` is its own event); agents' replies stay Rasa's `agent` event.
    """

    event: Literal["agent_action"] = "agent_action"
    command: Literal["claim", "assign", "note", "hand_back", "resolve"]
    agent_id: str
    text: str | None = None
    assignee: str | None = None

    WIRE_FIELDS = ("command", "agent_id", "text", "assignee")
    OMITTED_WHEN_NONE = frozenset({"text", "assignee"})


class UserFeedback(Event):
    """The user's rating of a bot message (``user_feedback``): the design's
    UserFeedbackReceived.

    A Parley event: `rating` is 1 or -1 on the `thumbs` scale, 1 to 5 on `stars`; `comment`
    is optional; the bot message it rates is named by its event's timestamp and text (Rasa's
    bot events carry no id). No tracker effect. Rasa's tools do not know it: Rasa-format
    consumers of `parley.events` skip event names they do not know (docs/feedback.md).
    """

    event: Literal["user_feedback"] = "user_feedback"
    rating: int
    scale: Literal["thumbs", "stars"] = "thumbs"
    comment: str | None = None
    message_timestamp: float | None = None
    message_text: str | None = None
    input_channel: str | None = None

    WIRE_FIELDS = (
        "rating",
        "scale",
        "comment",
        "message_timestamp",
        "message_text",
        "input_channel",
    )
    OMITTED_WHEN_NONE = frozenset({"comment", "message_timestamp", "message_text", "input_channel"})

    @model_validator(mode="after")
    def _rating_on_its_scale(self) -> UserFeedback:
        allowed = {-1, 1} if self.scale == "thumbs" else set(range(1, 6))
        if self.rating not in allowed:
            raise ValueError(
                f"rating {self.rating} is not on the {self.scale} scale "
                f"({', '.join(str(r) for r in sorted(allowed))})"
            )
        return self


def is_negative(feedback: UserFeedback) -> bool:
    """Thumbs down, or one or two stars."""
    return feedback.rating < 0 if feedback.scale == "thumbs" else feedback.rating <= 2


PARLEY_EVENTS = frozenset({"action_failed", "agent_action", "user_feedback"})
"""Event names Parley adds to Rasa's; Rasa-format consumers should skip them."""


AnyEvent = Annotated[
    UserUttered
    | BotUttered
    | ActionExecuted
    | SlotSet
    | ActiveLoop
    | LoopInterrupted
    | ActionExecutionRejected
    | Restarted
    | AllSlotsReset
    | UserUtteranceReverted
    | ActionReverted
    | ReminderScheduled
    | ReminderCancelled
    | FollowupAction
    | ConversationPaused
    | ConversationResumed
    | SessionStarted
    | EntitiesAdded
    | DefinePrevUserUtteredFeaturization
    | AgentUttered
    | StoryExported
    | ActionFailed
    | AgentAction
    | UserFeedback,
    Field(discriminator="event"),
]
"""Any concrete event, discriminated by its ``event`` key."""

EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)
"""Validates a dict (or JSON with ``validate_json``) into the matching event class."""

EVENT_TYPES: dict[str, type[Event]] = {
    cls.model_fields["event"].default: cls for cls in get_args(get_args(AnyEvent)[0])
}
"""Event name on the wire -> event class (current names only, not legacy ones)."""


def parse_event(data: dict[str, Any]) -> Event:
    """Parse one Rasa event dict; raise ``ValueError`` if it is not a valid event."""
    if not isinstance(data, dict):
        raise ValueError(f"an event must be a JSON object, not {type(data).__name__}")
    if "event" not in data:
        raise ValueError("event dict has no 'event' key")
    name = data["event"]
    if not isinstance(name, str):
        raise ValueError(f"event name must be a string, not {name!r}")
    data = translate_legacy(name, data)
    cls = EVENT_TYPES.get(data["event"])
    if cls is None:
        known = ", ".join(sorted(EVENT_TYPES))
        raise ValueError(f"unknown event type {name!r}; known types: {known}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise EventValidationError(f"invalid {name!r} event: {describe(exc)}") from exc


def parse_events(items: list[Any]) -> list[Event]:
    """Parse a list of event dicts the way Rasa's ``deserialise_events`` does.

    Dicts without an ``event`` key (or with a null one) and legacy ``topic``
    events are skipped; anything else must be a valid event.
    """
    events: list[Event] = []
    for item in items:
        if isinstance(item, dict) and item.get("event") in (None, "topic"):
            continue
        events.append(parse_event(item))
    return events


def event_record(sender_id: str, event: Event) -> dict[str, Any]:
    """The body Rasa's event brokers publish: ``sender_id`` plus the event dict."""
    return {"sender_id": sender_id, **event.to_dict()}


def parse_event_record(data: dict[str, Any]) -> tuple[str, Event]:
    """Inverse of :func:`event_record`: ``(sender_id, event)``."""
    if not isinstance(data, dict):
        raise ValueError(f"an event record must be a JSON object, not {type(data).__name__}")
    sender_id = data.get("sender_id")
    if not isinstance(sender_id, str):
        raise ValueError("event record needs a string 'sender_id'")
    return sender_id, parse_event({k: v for k, v in data.items() if k != "sender_id"})
