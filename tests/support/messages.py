"""User turns as the NLU worker would publish them: a `ParsedUserMessage` with a hand-set
intent and entities (integration tests that play conversations without NLU)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from schemas.envelopes import ParsedUserMessage
from schemas.events import UserUttered


def said(
    conversation: str, intent: str, text: str | None = None, **entities: Any
) -> ParsedUserMessage:
    """A REST user message with this intent (confidence 1.0), text (default: the intent's
    name) and entities, under a fresh message id."""
    now = datetime.now(UTC)
    message_id = uuid.uuid4().hex
    said_text = intent if text is None else text
    event = UserUttered(
        timestamp=now.timestamp(),
        text=said_text,
        input_channel="rest",
        message_id=message_id,
        parse_data={
            "intent": {"name": intent, "confidence": 1.0},
            "entities": [{"entity": k, "value": v} for k, v in entities.items()],
            "text": said_text,
        },
    )
    return ParsedUserMessage(
        conversation_id=conversation, message_id=message_id, sent_at=now, event=event
    )
