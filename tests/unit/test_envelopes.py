"""Topic envelopes: JSON round trips, discriminated inboxes, validation that says why."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.envelopes import (
    ENVELOPE_TYPES,
    ActionRequest,
    ActionResult,
    AppendEvents,
    BotMessage,
    ConsoleCommand,
    DeadLetter,
    DialogueInput,
    Envelope,
    ExternalTrigger,
    HandoffTimerRequest,
    OutboundMessage,
    ParsedUserMessage,
    ReminderCancelRequest,
    ReminderRequest,
    SchedulerInput,
    UserMessage,
)
from schemas.events import ReminderCancelled, ReminderScheduled, SlotSet, UserUttered
from services.common import codec
from services.common.errors import DecodeError

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
COMMON: dict[str, Any] = {"conversation_id": "conv-1", "sent_at": NOW, "correlation_id": "m0"}


def examples() -> list[Envelope]:
    return [
        UserMessage(**COMMON, text="hello ✓ привет", input_channel="websocket", metadata={"a": 1}),
        ParsedUserMessage(
            **COMMON,
            event=UserUttered(
                text="hi", parse_data={"intent": {"name": "greet", "confidence": 0.9}}
            ),
        ),
        ActionResult(
            **COMMON,
            request_id="r1",
            action_name="action_check",
            status="success",
            events=[SlotSet(name="city", value="Berlin")],
            responses=[{"text": "done"}],
        ),
        ExternalTrigger(**COMMON, source="reminder", intent="EXTERNAL_remind", entities={"x": 1}),
        ConsoleCommand(**COMMON, command="reply", agent_id="agent-7", text="Hi, I'm Ana"),
        AppendEvents(
            **COMMON, events=[SlotSet(name="city", value="Oslo")], execute_side_effects=True
        ),
        ActionRequest(
            **COMMON,
            next_action="action_x",
            tracker={"sender_id": "conv-1"},
            domain={"intents": []},
            version="3.6.21",
        ),
        ReminderRequest(
            **COMMON,
            event=ReminderScheduled(intent="EXTERNAL_remind", date_time=NOW, name="call"),
        ),
        ReminderCancelRequest(**COMMON, event=ReminderCancelled(name="call")),
        HandoffTimerRequest(
            **COMMON,
            action="start",
            timer="queue",
            due_at=NOW + timedelta(minutes=5),
            reason="asked for a human",
        ),
        OutboundMessage(**COMMON, messages=[BotMessage(text="Hi!", buttons=[{"title": "ok"}])]),
        DeadLetter(
            **COMMON,
            reason="bad",
            error_type="DecodeError",
            source_topic="parley.nlu",
            partition=2,
            offset=41,
            consumer_group="nlu",
            original_b64=base64.b64encode(b"\xff").decode(),
        ),
    ]


def test_every_envelope_type_has_an_example() -> None:
    assert {type(e) for e in examples()} == set(ENVELOPE_TYPES)


@pytest.mark.parametrize("envelope", examples(), ids=lambda e: type(e).__name__)
def test_json_round_trip(envelope: Envelope) -> None:
    data = codec.encode(envelope)
    assert codec.decode(data, type(envelope)) == envelope
    assert envelope.schema_version == 1
    assert envelope.key == b"conv-1"


def test_inboxes_dispatch_on_kind() -> None:
    dialogue = (ParsedUserMessage, ActionResult, ExternalTrigger, ConsoleCommand, AppendEvents)
    scheduler = (ReminderRequest, ReminderCancelRequest, HandoffTimerRequest)
    checked = 0
    for envelope in examples():
        data = codec.encode(envelope)
        if isinstance(envelope, dialogue):
            assert codec.decode(data, DialogueInput) == envelope
            checked += 1
        if isinstance(envelope, scheduler):
            assert codec.decode(data, SchedulerInput) == envelope
            checked += 1
    assert checked == len(dialogue) + len(scheduler)


def test_a_message_for_another_inbox_is_a_decode_error_naming_the_kinds() -> None:
    data = codec.encode(examples()[0])  # a user_message is not a dialogue input
    with pytest.raises(DecodeError, match="does not match any of the expected tags"):
        codec.decode(data, DialogueInput)


def test_unknown_schema_version_is_rejected() -> None:
    data = codec.encode(examples()[0]).replace(b'"schema_version":1', b'"schema_version":2')
    with pytest.raises(DecodeError, match="schema_version: Input should be 1"):
        codec.decode(data, UserMessage)


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        UserMessage(conversation_id="c", text="x", sent_at=datetime(2026, 1, 1))  # noqa: DTZ001


def test_empty_conversation_id_is_rejected() -> None:
    with pytest.raises(ValidationError, match="conversation_id"):
        UserMessage(conversation_id="", text="x", sent_at=NOW)


def test_message_ids_are_unique_by_default() -> None:
    ids = {UserMessage(conversation_id="c", text="x", sent_at=NOW).message_id for _ in range(100)}
    assert len(ids) == 100


def test_handoff_timer_start_needs_its_timer_and_due_time() -> None:
    with pytest.raises(ValidationError, match="needs 'timer' and 'due_at'"):
        HandoffTimerRequest(**COMMON, action="start")
    assert HandoffTimerRequest(**COMMON, action="cancel_all").timer is None


def test_action_request_gives_rasas_webhook_body() -> None:
    request = next(e for e in examples() if isinstance(e, ActionRequest))
    assert request.webhook_payload() == {
        "next_action": "action_x",
        "sender_id": "conv-1",
        "tracker": {"sender_id": "conv-1"},
        "domain": {"intents": []},
        "version": "3.6.21",
    }


def test_bot_message_answers_like_rasas_rest_channel() -> None:
    message = BotMessage(text="Hi!", image="https://example.test/a.png")
    assert message.to_rest("u1") == {
        "recipient_id": "u1",
        "text": "Hi!",
        "image": "https://example.test/a.png",
    }


def test_action_result_events_are_typed() -> None:
    result = next(e for e in examples() if isinstance(e, ActionResult))
    decoded = codec.decode(codec.encode(result), ActionResult)
    assert isinstance(decoded.events[0], SlotSet)
    assert decoded.events[0].to_dict()["event"] == "slot"


def test_dead_letter_keeps_the_original_bytes() -> None:
    letter = next(e for e in examples() if isinstance(e, DeadLetter))
    assert letter.original == b"\xff"


def test_envelopes_are_frozen() -> None:
    message = UserMessage(conversation_id="c", text="x", sent_at=NOW)
    with pytest.raises(ValidationError):
        message.text = "changed"  # type: ignore[misc]


def test_adapters_build_for_every_inbox() -> None:
    for payload in (DialogueInput, SchedulerInput):
        assert "oneOf" in str(TypeAdapter(payload).json_schema())
