"""Human handoff as pure functions of the events: who holds a paused conversation, and which
timers its events start or cancel (see docs/handoff.md).

A handoff starts with Rasa's `pause` event carrying `{"handoff_reason": ...}` in its metadata
(a plain `pause` stays Rasa's plain pause: no timers), is claimed or assigned by an agent
(`agent_action`), and ends with `resume` (or a restart or a new session). `HandoffStatus` is
that state, kept in the conversation's snapshot; `timer_commands` folds a turn's events into
the `queue` and `agent_silence` timer requests the dialogue worker publishes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from schemas.events import (
    AgentAction,
    AgentUttered,
    ConversationPaused,
    ConversationResumed,
    Event,
    Restarted,
    SessionStarted,
)
from schemas.project.handoff import HandoffConfig
from services.dialogue.builtin_actions import HANDOFF_ACTION

__all__ = [
    "AGENT_SILENCE",
    "HANDOFF_ACTION",
    "HANDOFF_POLICY",
    "QUEUE",
    "REASON_KEY",
    "HandoffStatus",
    "TimerCommand",
    "advance",
    "reason_of",
    "stale_timer",
    "timer_commands",
    "with_reason",
]
HANDOFF_POLICY = "HandoffPolicy"
REASON_KEY = "handoff_reason"
QUEUE: Literal["queue"] = "queue"
AGENT_SILENCE: Literal["agent_silence"] = "agent_silence"
Timer = Literal["queue", "agent_silence"]


def reason_of(event: Event) -> str | None:
    """The handoff reason of a `pause` event, None for a plain pause or another event."""
    if not isinstance(event, ConversationPaused):
        return None
    reason = event.metadata.get(REASON_KEY)
    return reason if isinstance(reason, str) and reason else None


def with_reason(events: Sequence[Event], reason: str) -> list[Event]:
    """`events` with `reason` given to each plain `pause` among them."""
    return [
        e.model_copy(update={"metadata": {**e.metadata, REASON_KEY: reason}})
        if isinstance(e, ConversationPaused) and reason_of(e) is None
        else e
        for e in events
    ]


@dataclass(frozen=True)
class HandoffStatus:
    """A conversation handed to humans: why, since when, and who holds it."""

    reason: str
    paused_at: float
    claimed_by: str | None = None
    claimed_at: float | None = None
    agent_active_at: float | None = None  # the claim or the agent's latest reply

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> HandoffStatus | None:
        return None if data is None else cls(**data)


def advance(status: HandoffStatus | None, event: Event) -> HandoffStatus | None:
    """The status after `event`."""
    stamp = float(event.timestamp or 0.0)
    reason = reason_of(event)
    if reason is not None:
        return HandoffStatus(reason, stamp)
    match event:
        case ConversationResumed() | Restarted() | SessionStarted():
            return None
        case AgentAction(command="claim" | "assign") if status is not None:
            holder = event.assignee if event.command == "assign" else event.agent_id
            return replace(status, claimed_by=holder, claimed_at=stamp, agent_active_at=stamp)
        case AgentUttered() if status is not None and status.claimed_at is not None:
            return replace(status, agent_active_at=stamp)
    return status


@dataclass(frozen=True)
class TimerCommand:
    """One request for the scheduler, caused by the event at `index` of a turn's events."""

    index: int
    action: Literal["start", "cancel", "cancel_all"]
    timer: Timer | None
    started_at: float  # the causing event's timestamp (the trigger's `scheduled_at`)
    due_at: float | None = None
    reason: str | None = None


def timer_commands(
    before: HandoffStatus | None, events: Sequence[Event], config: HandoffConfig
) -> list[TimerCommand]:
    """The timer requests a turn's `events` cause, from the status `before` them: a pause with
    a reason starts `queue`; a claim or assignment cancels it and starts `agent_silence`; an
    agent's reply restarts `agent_silence`; the end of the handoff cancels both."""
    out: list[TimerCommand] = []
    status = before
    for index, event in enumerate(events):
        after = advance(status, event)
        stamp = float(event.timestamp or 0.0)
        reason = reason_of(event)
        if reason is not None:
            due = stamp + config.queue_timeout
            out.append(TimerCommand(index, "start", QUEUE, stamp, due, reason))
        elif status is not None and after is None:
            out.append(TimerCommand(index, "cancel_all", None, stamp))
        elif status is not None and after is not None and after != status:
            due = stamp + config.agent_silence_timeout
            if isinstance(event, AgentAction):
                out.append(TimerCommand(index, "cancel", QUEUE, stamp))
            out.append(TimerCommand(index, "start", AGENT_SILENCE, stamp, due, after.reason))
        status = after
    return out


def stale_timer(status: HandoffStatus | None, timer: str, started_at: float | None) -> str | None:
    """Why a fired timer no longer applies, or None when it does."""
    if status is None:
        return "the conversation is no longer handed off"
    if started_at is not None and status.paused_at > started_at:
        return "the conversation was handed off again after the timer started"
    if timer == QUEUE:
        if status.claimed_at is not None:
            return f"{status.claimed_by or 'an agent'} claimed the conversation"
        return None
    if timer == AGENT_SILENCE:
        if status.agent_active_at is None:
            return "no agent holds the conversation"
        if started_at is not None and status.agent_active_at > started_at:
            return "the agent acted after the timer started"
        return None
    return f"unknown handoff timer {timer!r}"
