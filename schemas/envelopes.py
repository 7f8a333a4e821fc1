"""Topic envelopes: what the services send each other over the bus.

Every envelope carries `schema_version`, a `kind` discriminator, the `conversation_id`
it belongs to (the Kafka key), a unique `message_id` (the idempotency key of the
consumer) and the `correlation_id` of the user message that started the work.
"""

from __future__ import annotations

import base64
import uuid
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, model_validator

from schemas._base import JsonDict, WireModel
from schemas.events import AnyEvent, ReminderCancelled, ReminderScheduled, UserUttered

SCHEMA_VERSION: Literal[1] = 1


def new_message_id() -> str:
    """A fresh, unique message id."""
    return uuid.uuid4().hex


class Envelope(WireModel):
    """Fields shared by every topic envelope."""

    schema_version: Literal[1] = SCHEMA_VERSION
    conversation_id: Annotated[str, Field(min_length=1, max_length=512)]
    message_id: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        default_factory=new_message_id
    )
    correlation_id: str | None = None
    sent_at: AwareDatetime

    @property
    def key(self) -> bytes:
        """The Kafka message key: the conversation id, so one consumer owns a conversation."""
        return self.conversation_id.encode()


# --- parley.nlu ---------------------------------------------------------------------------------


class UserMessage(Envelope):
    """A user's raw message from a channel, before NLU (`parley.nlu`)."""

    kind: Literal["user_message"] = "user_message"
    text: Annotated[str, Field(max_length=1_000_000)]
    input_channel: str = "rest"
    metadata: JsonDict = Field(default_factory=dict)


# --- parley.dialogue ----------------------------------------------------------------------------


class ParsedUserMessage(Envelope):
    """The user's message with Rasa-format parse data, from the NLU worker (`parley.dialogue`)."""

    kind: Literal["user_parsed"] = "user_parsed"
    event: UserUttered


class ActionResult(Envelope):
    """The outcome of a custom action request (`parley.dialogue`).

    `request_id` is the `message_id` of the `ActionRequest` it answers.
    """

    kind: Literal["action_result"] = "action_result"
    request_id: str
    action_name: str
    status: Literal["success", "rejected", "failed", "not_found", "timeout"]
    events: list[AnyEvent] = Field(default_factory=list)
    responses: list[JsonDict] = Field(default_factory=list)
    error: str | None = None


class ExternalTrigger(Envelope):
    """An intent triggered from outside the user's messages (`parley.dialogue`).

    Fired reminders, `trigger_intent` API calls and handoff timers use it; the dialogue
    worker applies Rasa's `EXTERNAL: <intent>` semantics.
    """

    kind: Literal["external_trigger"] = "external_trigger"
    source: Literal["reminder", "api", "handoff_timer"]
    intent: str
    entities: list[JsonDict] | JsonDict = Field(default_factory=list)
    reminder_name: str | None = None
    kill_on_user_msg: bool = False
    scheduled_at: float | None = None
    output_channel: str | None = None


class ConsoleCommand(Envelope):
    """A human agent's action in the handoff console (`parley.dialogue`)."""

    kind: Literal["console_command"] = "console_command"
    command: Literal["claim", "assign", "reply", "note", "hand_back", "resolve"]
    agent_id: Annotated[str, Field(min_length=1)]
    text: str | None = None
    assignee: str | None = None
    followup_action: str | None = None


class AppendEvents(Envelope):
    """Events added to a conversation through the HTTP API (`parley.dialogue`): Rasa's
    `POST /conversations/{id}/tracker/events` and `POST /conversations/{id}/messages`.

    They are recorded as they are, nothing is predicted. Without `execute_side_effects` (Rasa's
    query parameter) their bot messages are not sent to the user and their reminders are not
    scheduled; with it they are, on `output_channel` (default: the latest input channel).
    """

    kind: Literal["append_events"] = "append_events"
    events: Annotated[list[AnyEvent], Field(min_length=1)]
    execute_side_effects: bool = False
    output_channel: str | None = None


DialogueInput = Annotated[
    ParsedUserMessage | ActionResult | ExternalTrigger | ConsoleCommand | AppendEvents,
    Field(discriminator="kind"),
]


# --- parley.actions -----------------------------------------------------------------------------


class ActionRequest(Envelope):
    """A request to run a custom action, carrying Rasa's webhook payload (`parley.actions`)."""

    kind: Literal["action_request"] = "action_request"
    next_action: str
    tracker: JsonDict
    domain: JsonDict
    version: str

    def webhook_payload(self) -> dict[str, Any]:
        """The body rasa-sdk's `POST /webhook` expects."""
        return {
            "next_action": self.next_action,
            "sender_id": self.conversation_id,
            "tracker": self.tracker,
            "domain": self.domain,
            "version": self.version,
        }


# --- parley.scheduler ---------------------------------------------------------------------------


class ReminderRequest(Envelope):
    """Schedule (or replace) a reminder; its identity is (conversation, name)."""

    kind: Literal["reminder_schedule"] = "reminder_schedule"
    event: ReminderScheduled
    output_channel: str | None = None


class ReminderCancelRequest(Envelope):
    """Cancel reminders by name, by intent (and entities), or all of a conversation's."""

    kind: Literal["reminder_cancel"] = "reminder_cancel"
    event: ReminderCancelled


class HandoffTimerRequest(Envelope):
    """Start or cancel a human-handoff timer of a conversation."""

    kind: Literal["handoff_timer"] = "handoff_timer"
    action: Literal["start", "cancel", "cancel_all"]
    timer: Literal["queue", "agent_silence"] | None = None
    due_at: AwareDatetime | None = None
    reason: str | None = None

    @model_validator(mode="after")
    def _start_needs_timer_and_due(self) -> HandoffTimerRequest:
        if self.action == "start" and (self.timer is None or self.due_at is None):
            raise ValueError("a 'start' handoff timer needs 'timer' and 'due_at'")
        return self


SchedulerInput = Annotated[
    ReminderRequest | ReminderCancelRequest | HandoffTimerRequest,
    Field(discriminator="kind"),
]


# --- parley.outbound ----------------------------------------------------------------------------


class BotMessage(WireModel):
    """One message for the user, in the keys Rasa's REST channel answers with."""

    text: str | None = None
    image: str | None = None
    buttons: list[JsonDict] | None = None
    attachment: JsonDict | str | None = None
    custom: JsonDict | None = None
    quick_replies: list[JsonDict] | None = None
    elements: list[JsonDict] | None = None

    def to_rest(self, recipient_id: str) -> dict[str, Any]:
        """Rasa's REST answer item: `recipient_id` plus the keys that are set."""
        body = {"recipient_id": recipient_id}
        body.update(self.model_dump(exclude_none=True))
        return body


class OutboundMessage(Envelope):
    """Messages for the user's channel (`parley.outbound`).

    `turn_complete` marks the last batch of a turn, so synchronous channels (REST) know
    when to answer; `in_reply_to` is the user message's id.
    """

    kind: Literal["outbound_message"] = "outbound_message"
    source: Literal["bot", "agent", "system"] = "bot"
    messages: list[BotMessage] = Field(default_factory=list)
    in_reply_to: str | None = None
    turn_complete: bool = True
    input_channel: str | None = None


# --- parley.dead-letters ------------------------------------------------------------------------


class DeadLetter(Envelope):
    """A message a consumer could not handle, with the reason and the original bytes.

    `conversation_id` is the original key when it was valid UTF-8, else `"<unknown>"`.
    """

    kind: Literal["dead_letter"] = "dead_letter"
    reason: str
    error_type: str
    source_topic: str
    partition: int
    offset: int
    consumer_group: str
    attempts: int = 1
    key_b64: str | None = None
    original_b64: str

    @property
    def original(self) -> bytes:
        """The original message bytes."""
        return base64.b64decode(self.original_b64)


ENVELOPE_TYPES: tuple[type[Envelope], ...] = (
    UserMessage,
    ParsedUserMessage,
    ActionResult,
    ExternalTrigger,
    ConsoleCommand,
    AppendEvents,
    ActionRequest,
    ReminderRequest,
    ReminderCancelRequest,
    HandoffTimerRequest,
    OutboundMessage,
    DeadLetter,
)
