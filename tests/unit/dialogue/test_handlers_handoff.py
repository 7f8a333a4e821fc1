"""The dialogue worker's handler during a handoff: the timer requests it publishes (derived
from the events, the same on redelivery), the timers' outcomes and deferred reminders."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.envelopes import (
    ConsoleCommand,
    ExternalTrigger,
    HandoffTimerRequest,
    OutboundMessage,
    ParsedUserMessage,
)
from schemas.events import UserUttered
from schemas.project.handoff import HandoffConfig
from schemas.project.loader import load_project
from schemas.topics import Topic
from services.common.bus import Publication, RawMessage
from services.dialogue.engine import DialogueEngine, EngineSettings
from services.dialogue.handlers import DialogueService
from services.dialogue.store.memory_store import MemoryHotStore
from services.dialogue.store.migrate import migrate
from services.dialogue.store.sql_archive import SqlArchive
from tests.support.clock import FakeClock
from tests.unit.dialogue.test_handoff import TABLE, Script

DOMAIN = """version: "3.1"
intents: [greet, human_handoff, ask_reminder, EXTERNAL_wake]
responses:
  utter_greet:
  - text: "Hello!"
  utter_handoff:
  - text: "Connecting you to a person."
  utter_no_agent_available:
  - text: "Nobody is free, I'm back."
  utter_wake:
  - text: "Wake up!"
actions: [action_set_reminder]
"""
START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CONFIG = HandoffConfig(queue_timeout=60, agent_silence_timeout=120)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[DialogueService, FakeClock]]:
    (tmp_path / "domain.yml").write_text(DOMAIN)
    (tmp_path / "config.yml").write_text("language: en\n")
    domain = load_project(tmp_path).domain
    url = f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}"
    await migrate(url)
    clock = FakeClock(START)
    table = {**TABLE, "ask_reminder": "action_set_reminder"}
    engine = DialogueEngine(
        domain, Script(table), settings=EngineSettings(handoff=CONFIG), rng=random.Random(0)
    )
    async with SqlArchive(url) as archive:
        yield DialogueService(engine, MemoryHotStore(), archive, clock, {}), clock


def said(intent: str, message_id: str, clock: FakeClock) -> ParsedUserMessage:
    event = UserUttered(
        timestamp=clock.now().timestamp(),
        text=intent,
        input_channel="rest",
        message_id=message_id,
        parse_data={"intent": {"name": intent, "confidence": 1.0}},
    )
    return ParsedUserMessage(
        conversation_id="alice", message_id=message_id, sent_at=clock.now(), event=event
    )


def command(kind: str, message_id: str, clock: FakeClock, **extra: Any) -> ConsoleCommand:
    return ConsoleCommand(
        conversation_id="alice",
        message_id=message_id,
        sent_at=clock.now(),
        command=kind,  # type: ignore[arg-type]
        agent_id="ann",
        **extra,
    )


def timer_fired(timer: str, started: datetime, message_id: str) -> ExternalTrigger:
    return ExternalTrigger(
        conversation_id="alice",
        message_id=message_id,
        sent_at=started,
        source="handoff_timer",
        intent=f"EXTERNAL_{timer}",
        entities={"timer": timer, "reason": "requested"},
        scheduled_at=started.timestamp(),
    )


Timer = tuple[str, str | None, datetime | None, str | None]


def timers(pubs: list[Publication]) -> list[Timer]:
    out: list[Timer] = []
    for pub in pubs:
        if isinstance(pub.message, HandoffTimerRequest):
            message = pub.message
            assert pub.topic == Topic.SCHEDULER
            out.append((message.action, message.timer, message.due_at, message.reason))
    return out


def texts(pubs: list[Publication]) -> list[str | None]:
    return [
        m.text for p in pubs if isinstance(p.message, OutboundMessage) for m in p.message.messages
    ]


def events(pubs: list[Publication]) -> list[str]:
    return [json.loads(p.message.value)["event"] for p in pubs if isinstance(p.message, RawMessage)]


async def test_the_handoff_timers_follow_the_events(
    service: tuple[DialogueService, FakeClock],
) -> None:
    svc, clock = service
    asked = await svc.handle(said("human_handoff", "m1", clock))
    assert texts(asked) == ["Connecting you to a person."]
    assert timers(asked) == [("start", "queue", START + timedelta(seconds=60), "requested")]
    (start,) = [p.message for p in asked if isinstance(p.message, HandoffTimerRequest)]
    assert start.sent_at == START  # the pause's time: the trigger's scheduled_at
    # a redelivery publishes the same requests, with the same ids
    again = await svc.handle(said("human_handoff", "m1", clock))
    assert [p.message for p in again if isinstance(p.message, HandoffTimerRequest)] == [start]

    clock.advance(10)
    claimed = await svc.handle(command("claim", "c1", clock))
    assert events(claimed) == ["agent_action"]
    assert timers(claimed) == [
        ("cancel", "queue", None, None),
        ("start", "agent_silence", START + timedelta(seconds=130), "requested"),
    ]
    clock.advance(10)
    replied = await svc.handle(command("reply", "c2", clock, text="Hi, Ann here"))
    assert timers(replied) == [
        ("start", "agent_silence", START + timedelta(seconds=140), "requested")
    ]
    noted = await svc.handle(command("note", "c3", clock, text="wants a refund"))
    assert timers(noted) == []
    clock.advance(10)
    back = await svc.handle(command("hand_back", "c4", clock))
    assert events(back) == ["agent_action", "resume"]
    assert timers(back) == [("cancel_all", None, None, None)]
    ids = {p.message.message_id for p in back if isinstance(p.message, HandoffTimerRequest)}
    again = await svc.handle(command("hand_back", "c4", clock))
    assert {
        p.message.message_id for p in again if isinstance(p.message, HandoffTimerRequest)
    } == ids
    greeted = await svc.handle(said("greet", "m2", clock))
    assert texts(greeted) == ["Hello!"]
    assert timers(greeted) == []


async def test_the_queue_timeout_answers_and_resumes(
    service: tuple[DialogueService, FakeClock],
) -> None:
    svc, clock = service
    await svc.handle(said("human_handoff", "m1", clock))
    clock.advance(60)
    out = await svc.handle(timer_fired("queue", START, "t1"))
    assert texts(out) == ["Nobody is free, I'm back."]
    assert events(out) == ["action", "bot", "resume", "action"]
    assert timers(out) == [("cancel_all", None, None, None)]
    (outbound,) = [p.message for p in out if isinstance(p.message, OutboundMessage)]
    assert outbound.turn_complete
    stale = await svc.handle(timer_fired("queue", START, "t2"))
    assert stale == []  # no longer handed off: dropped


async def test_a_timer_older_than_the_claim_changes_nothing(
    service: tuple[DialogueService, FakeClock],
) -> None:
    svc, clock = service
    await svc.handle(said("human_handoff", "m1", clock))
    clock.advance(5)
    await svc.handle(command("claim", "c1", clock))
    clock.advance(60)
    assert await svc.handle(timer_fired("queue", START, "t1")) == []
    snapshot = (await svc.hot.load_snapshot("alice") or (0, {}))[1]
    assert snapshot["handoff"]["claimed_by"] == "ann"
    assert snapshot["tracker"]["paused"] is True


async def test_a_reminder_due_while_paused_fires_after_the_hand_back(
    service: tuple[DialogueService, FakeClock],
) -> None:
    svc, clock = service
    await svc.handle(said("greet", "m0", clock))
    stored = await svc.hot.load("alice")
    assert stored is not None
    reminder = {
        "event": "reminder",
        "timestamp": START.timestamp(),
        "intent": "EXTERNAL_wake",
        "date_time": "2026-01-01T12:05:00+00:00",
        "entities": None,
        "name": "wake",
        "kill_on_user_msg": False,
    }
    await svc.hot.append("alice", stored.seq, [reminder], stored.snapshot)
    await svc.handle(said("human_handoff", "m1", clock))
    clock.advance(300)
    fired = ExternalTrigger(
        conversation_id="alice",
        message_id="r1",
        sent_at=clock.now(),
        source="reminder",
        intent="EXTERNAL_wake",
        reminder_name="wake",
        scheduled_at=START.timestamp(),
    )
    assert await svc.handle(fired) == []  # deferred: kept in the snapshot
    snapshot = (await svc.hot.load_snapshot("alice") or (0, {}))[1]
    assert [d["reminder"] for d in snapshot["deferred"]] == ["wake"]
    back = await svc.handle(command("hand_back", "c1", clock))
    assert texts(back) == ["Wake up!"]
    assert events(back)[:3] == ["agent_action", "resume", "user"]
    snapshot = (await svc.hot.load_snapshot("alice") or (0, {}))[1]
    assert snapshot["deferred"] == []
