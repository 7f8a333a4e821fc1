"""Scheduler requests for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from schemas.envelopes import HandoffTimerRequest, ReminderCancelRequest, ReminderRequest
from schemas.events import ReminderCancelled, ReminderScheduled
from services.scheduler import jobs

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def reminder(
    conversation: str = "alice",
    name: str = "r1",
    due: datetime = NOW + timedelta(minutes=5),
    intent: str = "EXTERNAL_remind",
    entities: jobs.Entities = None,
    message_id: str | None = None,
    sent_at: datetime = NOW,
) -> ReminderRequest:
    event = ReminderScheduled(
        intent=intent, date_time=due, entities=entities, name=name, timestamp=1_700_000_000
    )
    request = ReminderRequest(
        conversation_id=conversation,
        correlation_id="corr",
        sent_at=sent_at,
        event=event,
        output_channel="socketio",
    )
    return request.model_copy(update={"message_id": message_id}) if message_id else request


def cancel(
    conversation: str = "alice",
    name: str | None = None,
    intent: str | None = None,
    entities: jobs.Entities = None,
) -> ReminderCancelRequest:
    return ReminderCancelRequest(
        conversation_id=conversation,
        sent_at=NOW,
        event=ReminderCancelled(name=name, intent=intent, entities=entities),
    )


def handoff(
    action: Literal["start", "cancel", "cancel_all"],
    timer: Literal["queue", "agent_silence"] | None = None,
    due: datetime | None = None,
    conversation: str = "alice",
    reason: str | None = None,
) -> HandoffTimerRequest:
    return HandoffTimerRequest(
        conversation_id=conversation,
        sent_at=NOW,
        action=action,
        timer=timer,
        due_at=due,
        reason=reason,
    )
