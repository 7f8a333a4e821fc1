"""What a scheduled job is, as plain data, and the pure maths around it (no clock, no I/O).

- A reminder's identity is (conversation, name), a handoff timer's (conversation, timer kind):
  the job id hashes both, so two conversations never collide and rescheduling replaces.
- Job ids share a per-conversation prefix, so "all of a conversation's reminders" is a prefix.
- A job fires at most once per (job id, scheduling request, due time): that triple hashes to the
  `fire_id`, the key of the fired ledger and the `message_id` of the published trigger.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from schemas.envelopes import ExternalTrigger, HandoffTimerRequest, ReminderRequest
from schemas.events import ReminderCancelled

PAYLOAD_VERSION = 1
REMINDER = "reminder"
HANDOFF = "handoff"
# The job's target as APScheduler stores it: a textual reference, never a live object.
FUNC_REF = "services.scheduler.jobs:due"

Source = Literal["reminder", "handoff_timer"]
Entities = list[dict[str, Any]] | dict[str, Any] | None


def due(**payload: Any) -> None:
    """The function every job names. It is never called: a replica claims due jobs in the job
    store and publishes them (see the README), so APScheduler never runs a job itself."""
    raise RuntimeError("scheduler jobs are claimed and published, not executed")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def conversation_prefix(kind: str, conversation_id: str) -> str:
    """The job-id prefix of one conversation's jobs of a kind (reminder or handoff)."""
    return f"{kind}:{_digest(conversation_id)}:"


def reminder_job_id(conversation_id: str, name: str) -> str:
    return conversation_prefix(REMINDER, conversation_id) + _digest(name)


def handoff_job_id(conversation_id: str, timer: str) -> str:
    return conversation_prefix(HANDOFF, conversation_id) + timer


def as_utc(moment: datetime) -> datetime:
    """Aware in UTC; a naive datetime is taken to be UTC already (as Rasa's reminders are)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def lateness(due_at: datetime, now: datetime) -> timedelta:
    return as_utc(now) - as_utc(due_at)


def is_missed(due_at: datetime, now: datetime, grace_s: float) -> bool:
    """True when a job fires later than the misfire grace time allows."""
    return lateness(due_at, now) > timedelta(seconds=grace_s)


@dataclass(frozen=True)
class JobSpec:
    """A scheduled job as plain data: what the job store holds and the trigger is built from."""

    job_id: str
    due_at: datetime
    conversation_id: str
    source: Source
    intent: str
    entities: Entities
    name: str | None
    kill_on_user_msg: bool
    scheduled_at: float | None
    output_channel: str | None
    correlation_id: str | None
    # The scheduling request's message_id: a redelivered request is the same instance.
    instance: str

    @property
    def fire_id(self) -> str:
        key = f"{self.job_id}|{self.instance}|{as_utc(self.due_at).isoformat()}"
        return hashlib.sha256(key.encode()).hexdigest()

    def payload(self) -> dict[str, Any]:
        """JSON-able, versioned: the job's keyword arguments in the store."""
        data = asdict(self)
        data["due_at"] = as_utc(self.due_at).timestamp()
        return {"v": PAYLOAD_VERSION, **data}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> JobSpec:
        if payload.get("v") != PAYLOAD_VERSION:
            raise ValueError(f"unknown scheduler job payload version {payload.get('v')!r}")
        data = {k: v for k, v in payload.items() if k != "v"}
        data["due_at"] = datetime.fromtimestamp(data["due_at"], UTC)
        return cls(**data)


def reminder_job(request: ReminderRequest) -> JobSpec:
    event = request.event
    scheduled_at = event.timestamp if event.timestamp is not None else request.sent_at.timestamp()
    return JobSpec(
        job_id=reminder_job_id(request.conversation_id, event.name),
        due_at=as_utc(event.date_time),
        conversation_id=request.conversation_id,
        source="reminder",
        intent=event.intent,
        entities=event.entities,
        name=event.name,
        kill_on_user_msg=event.kill_on_user_msg,
        scheduled_at=float(scheduled_at),
        output_channel=request.output_channel,
        correlation_id=request.correlation_id,
        instance=request.message_id,
    )


def handoff_job(request: HandoffTimerRequest, intents: dict[str, str]) -> JobSpec:
    """The job of a `start` request; `intents` maps the timer kind to the intent it triggers."""
    if request.action != "start" or request.timer is None or request.due_at is None:
        raise ValueError("only a 'start' handoff timer request makes a job")
    entities: dict[str, Any] = {"timer": request.timer}
    if request.reason is not None:
        entities["reason"] = request.reason
    return JobSpec(
        job_id=handoff_job_id(request.conversation_id, request.timer),
        due_at=as_utc(request.due_at),
        conversation_id=request.conversation_id,
        source="handoff_timer",
        intent=intents[request.timer],
        entities=entities,
        name=request.timer,
        kill_on_user_msg=False,
        scheduled_at=request.sent_at.timestamp(),
        output_channel=None,
        correlation_id=request.correlation_id,
        instance=request.message_id,
    )


def cancels(event: ReminderCancelled, spec: JobSpec) -> bool:
    """Rasa's matching: every field given must match; none given cancels all."""
    return (
        (not event.name or event.name == spec.name)
        and (not event.intent or event.intent == spec.intent)
        and (not event.entities or event.entities == spec.entities)
    )


def trigger(spec: JobSpec, now: datetime) -> ExternalTrigger:
    """The external trigger a due job publishes on `parley.dialogue`."""
    return ExternalTrigger(
        conversation_id=spec.conversation_id,
        message_id=spec.fire_id,
        correlation_id=spec.correlation_id,
        sent_at=as_utc(now),
        source=spec.source,
        intent=spec.intent,
        entities=spec.entities if spec.entities is not None else [],
        reminder_name=spec.name if spec.source == "reminder" else None,
        kill_on_user_msg=spec.kill_on_user_msg,
        scheduled_at=spec.scheduled_at,
        output_channel=spec.output_channel,
    )
