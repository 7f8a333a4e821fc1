"""The scheduler's pure parts: job identity, time maths, cancel matching, the trigger built."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas.envelopes import HandoffTimerRequest
from schemas.events import ReminderCancelled
from services.scheduler import jobs
from services.scheduler.settings import SchedulerSettings
from services.scheduler.store import sync_url
from tests.unit.scheduler.builders import NOW, reminder

INTENTS = SchedulerSettings(database_url="sqlite://").handoff_intents()


def test_reminder_identity_is_conversation_and_name() -> None:
    same = jobs.reminder_job_id("alice", "r1")
    assert jobs.reminder_job(reminder()).job_id == same
    assert jobs.reminder_job(reminder(due=NOW, message_id="m2")).job_id == same
    assert jobs.reminder_job_id("bob", "r1") != same
    assert jobs.reminder_job_id("alice", "r2") != same
    assert same.startswith(jobs.conversation_prefix(jobs.REMINDER, "alice"))
    assert not same.startswith(jobs.conversation_prefix(jobs.REMINDER, "bob"))
    assert len(jobs.reminder_job_id("x" * 512, "n" * 5000)) < 191  # APScheduler's id column


def test_handoff_identity_is_conversation_and_timer_kind() -> None:
    queue = jobs.handoff_job_id("alice", "queue")
    assert queue.startswith(jobs.conversation_prefix(jobs.HANDOFF, "alice"))
    assert queue != jobs.handoff_job_id("alice", "agent_silence")
    assert not queue.startswith(jobs.conversation_prefix(jobs.REMINDER, "alice"))


def test_naive_datetimes_are_utc_and_aware_ones_are_converted() -> None:
    naive = datetime(2026, 1, 1, 12, 5)  # noqa: DTZ001 - the point of the test
    assert jobs.as_utc(naive) == datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
    paris = datetime(2026, 1, 1, 13, 5, tzinfo=timezone(timedelta(hours=1)))
    assert jobs.as_utc(paris) == datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
    assert jobs.reminder_job(reminder(due=naive)).due_at == jobs.as_utc(paris)


def test_misfire_grace_boundary() -> None:
    due = NOW
    assert not jobs.is_missed(due, NOW + timedelta(seconds=60), grace_s=60)
    assert jobs.is_missed(due, NOW + timedelta(seconds=60.5), grace_s=60)
    assert not jobs.is_missed(due, NOW - timedelta(hours=1), grace_s=0)
    assert jobs.lateness(due, NOW + timedelta(seconds=3)) == timedelta(seconds=3)


def test_payload_round_trips_as_plain_json_data() -> None:
    spec = jobs.reminder_job(reminder(entities={"city": "Berlin"}))
    payload = spec.payload()
    assert payload["v"] == jobs.PAYLOAD_VERSION
    assert all(
        isinstance(v, str | int | float | bool | dict | type(None)) for v in payload.values()
    )
    assert jobs.JobSpec.from_payload(payload) == spec
    with pytest.raises(ValueError, match="version"):
        jobs.JobSpec.from_payload({**payload, "v": 99})


def test_fire_id_is_per_job_request_and_due_time() -> None:
    base = jobs.reminder_job(reminder(message_id="m1"))
    assert jobs.reminder_job(reminder(message_id="m1")).fire_id == base.fire_id  # redelivered
    assert jobs.reminder_job(reminder(message_id="m2")).fire_id != base.fire_id
    assert jobs.reminder_job(reminder(message_id="m1", due=NOW)).fire_id != base.fire_id
    assert jobs.reminder_job(reminder(message_id="m1", conversation="bob")).fire_id != base.fire_id
    assert len(base.fire_id) == 64


@pytest.mark.parametrize(
    ("cancel", "expected"),
    [
        (ReminderCancelled(), True),
        (ReminderCancelled(name="r1"), True),
        (ReminderCancelled(name="r2"), False),
        (ReminderCancelled(intent="EXTERNAL_remind"), True),
        (ReminderCancelled(intent="EXTERNAL_other"), False),
        (ReminderCancelled(intent="EXTERNAL_remind", entities={"city": "Berlin"}), True),
        (ReminderCancelled(intent="EXTERNAL_remind", entities={"city": "Paris"}), False),
        (ReminderCancelled(entities=[{"entity": "city", "value": "Berlin"}]), False),
        (ReminderCancelled(name="r1", intent="EXTERNAL_other"), False),
    ],
)
def test_cancel_matching_follows_rasa(cancel: ReminderCancelled, expected: bool) -> None:
    spec = jobs.reminder_job(reminder(entities={"city": "Berlin"}))
    assert jobs.cancels(cancel, spec) is expected


def test_trigger_carries_the_reminder() -> None:
    spec = jobs.reminder_job(reminder(entities=[{"entity": "city", "value": "Berlin"}]))
    trigger = jobs.trigger(spec, NOW + timedelta(minutes=5))
    assert trigger.conversation_id == "alice"
    assert trigger.message_id == spec.fire_id
    assert trigger.correlation_id == "corr"
    assert trigger.source == "reminder"
    assert trigger.intent == "EXTERNAL_remind"
    assert trigger.entities == [{"entity": "city", "value": "Berlin"}]
    assert trigger.reminder_name == "r1"
    assert trigger.kill_on_user_msg is True
    assert trigger.scheduled_at == 1_700_000_000.0
    assert trigger.output_channel == "socketio"
    assert trigger.sent_at == NOW + timedelta(minutes=5)
    assert jobs.trigger(jobs.reminder_job(reminder()), NOW).entities == []


def test_handoff_job_uses_the_configured_intent_and_puts_the_reason_in_entities() -> None:
    request = HandoffTimerRequest(
        conversation_id="alice",
        sent_at=NOW,
        action="start",
        timer="agent_silence",
        due_at=NOW + timedelta(minutes=2),
        reason="no agent reply",
    )
    spec = jobs.handoff_job(request, INTENTS)
    trigger = jobs.trigger(spec, NOW)
    assert trigger.source == "handoff_timer"
    assert trigger.intent == "EXTERNAL_handoff_agent_silent"
    assert trigger.entities == {"timer": "agent_silence", "reason": "no agent reply"}
    assert trigger.reminder_name is None
    assert trigger.kill_on_user_msg is False
    cancel = HandoffTimerRequest(conversation_id="alice", sent_at=NOW, action="cancel_all")
    with pytest.raises(ValueError, match="start"):
        jobs.handoff_job(cancel, INTENTS)


def test_the_job_function_is_never_run() -> None:
    with pytest.raises(RuntimeError, match="claimed"):
        jobs.due(conversation_id="alice")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+asyncpg://parley@h:5432/db", "postgresql+psycopg://parley@h:5432/db"),
        ("postgresql://u:secret@h/db", "postgresql+psycopg://u:secret@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite+aiosqlite:///x.db", "sqlite:///x.db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_async_urls_get_their_synchronous_driver(url: str, expected: str) -> None:
    assert sync_url(url) == expected


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://x@h/db")
    assert SchedulerSettings().database_url == "postgresql+asyncpg://x@h/db"
    monkeypatch.setenv("PARLEY_SCHEDULER_DATABASE_URL", "sqlite:///s.db")
    monkeypatch.setenv("PARLEY_SCHEDULER_MISFIRE_GRACE_S", "5")
    monkeypatch.setenv("PARLEY_SCHEDULER_HANDOFF_QUEUE_INTENT", "EXTERNAL_q")
    settings = SchedulerSettings()
    assert settings.database_url == "sqlite:///s.db"
    assert settings.misfire_grace_s == 5
    assert settings.handoff_intents()["queue"] == "EXTERNAL_q"
    assert SchedulerSettings(database_url="sqlite://").database_url == "sqlite://"


def test_cli_registers_parley_worker_scheduler() -> None:
    import argparse

    from services.scheduler.worker_cli import add_worker_scheduler, run_worker_scheduler

    parser = argparse.ArgumentParser()
    add_worker_scheduler(parser.add_subparsers(dest="worker", required=True))
    args = parser.parse_args(["scheduler", "--database-url", "sqlite://", "--misfire-grace", "5"])
    assert (args.database_url, args.misfire_grace, args.health_port) == ("sqlite://", 5.0, None)
    assert args.func is run_worker_scheduler
