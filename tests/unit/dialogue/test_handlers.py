"""The dialogue worker's handler on an in-memory hot store and a real SQLite archive: stored
turns, publications, idempotent redelivery, pending custom actions, rebuilds, conflicts."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from schemas.envelopes import (
    ActionRequest,
    ActionResult,
    OutboundMessage,
    ParsedUserMessage,
)
from schemas.events import Event, SlotSet, UserUttered, parse_events
from schemas.project.domain import Domain
from schemas.project.loader import load_project
from schemas.topics import Topic
from services.common.bus import Publication, RawMessage
from services.dialogue.engine import DialogueEngine, Prediction
from services.dialogue.handlers import DialogueService
from services.dialogue.store.memory_store import MemoryHotStore
from services.dialogue.store.migrate import migrate
from services.dialogue.store.ports import VersionConflict
from services.dialogue.store.sql_archive import SqlArchive
from services.dialogue.tracker import TrackerState
from tests.support.clock import FakeClock

DOMAIN = """version: "3.1"
intents: [greet, order]
responses:
  utter_greet:
  - text: "Hello!"
actions: [action_order]
"""


class Table:
    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    def predict(self, events: Sequence[Event], state: TrackerState, domain: Domain) -> Prediction:
        last = state.latest_action_name
        key = (
            (state.latest_message or {}).get("intent", {}).get("name")
            if last == "action_listen"
            else last
        )
        return Prediction(self.table.get(key or "", "action_listen"), 1.0, "Table")


@pytest.fixture
def domain(tmp_path: Path) -> Domain:
    (tmp_path / "domain.yml").write_text(DOMAIN)
    (tmp_path / "config.yml").write_text("language: en\n")
    return load_project(tmp_path).domain


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[SqlArchive]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}"
    await migrate(url)
    async with SqlArchive(url) as store:
        yield store


@pytest.fixture
def hot() -> MemoryHotStore:
    return MemoryHotStore()


@pytest.fixture
def service(domain: Domain, hot: MemoryHotStore, archive: SqlArchive) -> DialogueService:
    table = {"greet": "utter_greet", "order": "action_order", "action_order": "utter_greet"}
    engine = DialogueEngine(domain, Table(table), rng=random.Random(0))
    return DialogueService(engine, hot, archive, FakeClock(), {"intents": ["greet", "order"]})


def said(intent: str, message_id: str, conversation: str = "alice") -> ParsedUserMessage:
    clock = FakeClock()
    event = UserUttered(
        timestamp=clock.now().timestamp(),
        text=intent,
        input_channel="rest",
        message_id=message_id,
        parse_data={"intent": {"name": intent, "confidence": 1.0}},
    )
    return ParsedUserMessage(
        conversation_id=conversation, message_id=message_id, sent_at=clock.now(), event=event
    )


def on(topic: Topic, pubs: list[Publication]) -> list[Any]:
    return [p.message for p in pubs if p.topic == topic]


async def test_a_turn_is_stored_archived_and_published(
    service: DialogueService, hot: MemoryHotStore, archive: SqlArchive
) -> None:
    pubs = await service.handle(said("greet", "m1"))
    (outbound,) = on(Topic.OUTBOUND, pubs)
    assert isinstance(outbound, OutboundMessage)
    assert [m.text for m in outbound.messages] == ["Hello!"]
    assert outbound.turn_complete
    assert outbound.in_reply_to == "m1"
    assert outbound.input_channel == "rest"
    records = [json.loads(m.value) for m in on(Topic.EVENTS, pubs)]
    assert all(isinstance(m, RawMessage) and m.key == b"alice" for m in on(Topic.EVENTS, pubs))
    assert [r["event"] for r in records] == [
        "action", "session_started", "action", "user", "action", "bot", "action",
    ]  # fmt: skip
    assert {r["sender_id"] for r in records} == {"alice"}
    stored = hot.data["alice"]
    assert stored.seq == 7
    assert stored.events == [{k: v for k, v in r.items() if k != "sender_id"} for r in records]
    assert await archive.read("alice") == stored.events


async def test_a_redelivered_input_changes_nothing_and_republishes_the_same(
    service: DialogueService, hot: MemoryHotStore
) -> None:
    first = await service.handle(said("greet", "m1"))
    again = await service.handle(said("greet", "m1"))
    assert hot.data["alice"].seq == 7
    assert on(Topic.OUTBOUND, again) == on(Topic.OUTBOUND, first)
    assert on(Topic.EVENTS, again) == on(Topic.EVENTS, first)
    second = await service.handle(said("greet", "m2"))
    assert hot.data["alice"].seq == 11
    assert on(Topic.OUTBOUND, second)[0].message_id != on(Topic.OUTBOUND, first)[0].message_id


async def test_a_custom_action_is_requested_and_its_result_resumes(
    service: DialogueService, hot: MemoryHotStore
) -> None:
    pubs = await service.handle(said("order", "m1"))
    (request,) = on(Topic.ACTIONS, pubs)
    assert isinstance(request, ActionRequest)
    assert request.next_action == "action_order"
    payload = request.webhook_payload()
    assert payload["sender_id"] == "alice"
    assert payload["tracker"]["latest_message"]["intent"]["name"] == "order"
    assert payload["tracker"]["events"][-1]["event"] == "user"
    assert payload["domain"] == {"intents": ["greet", "order"]}
    assert on(Topic.OUTBOUND, pubs) == []  # nothing to say yet, turn not complete
    result = ActionResult(
        conversation_id="alice",
        message_id="r1",
        sent_at=FakeClock().now(),
        request_id=request.message_id,
        action_name="action_order",
        status="success",
        events=[SlotSet(timestamp=1.0, name="x", value=1)],
        responses=[{"text": "Ordered."}],
    )
    done = await service.handle(result)
    (outbound,) = on(Topic.OUTBOUND, done)
    assert [m.text for m in outbound.messages] == ["Ordered.", "Hello!"]
    assert outbound.turn_complete
    assert on(Topic.ACTIONS, done) == []
    # the result delivered twice: the second changes nothing
    seq = hot.data["alice"].seq
    await service.handle(result)
    assert hot.data["alice"].seq == seq


async def test_a_conversation_redis_lost_is_rebuilt_from_the_archive(
    service: DialogueService, hot: MemoryHotStore
) -> None:
    await service.handle(said("greet", "m1"))
    del hot.data["alice"]
    pubs = await service.handle(said("greet", "m2"))
    assert hot.data["alice"].seq == 11  # the archived 7 events + this turn's 4
    events = parse_events(hot.data["alice"].events)
    assert [e.event for e in events].count("session_started") == 1
    assert on(Topic.OUTBOUND, pubs)[0].messages[0].text == "Hello!"


async def test_a_concurrent_writer_makes_the_append_conflict(
    service: DialogueService, hot: MemoryHotStore
) -> None:
    await service.handle(said("greet", "m1"))
    original = hot.append

    async def racing(cid: str, expected: int, events: Any, snapshot: Any) -> int:
        await original(cid, expected, [{"event": "pause", "timestamp": 1.0}], snapshot)
        return await original(cid, expected, events, snapshot)

    hot.append = racing  # type: ignore[method-assign,assignment]
    with pytest.raises(VersionConflict):
        await service.handle(said("greet", "m2"))
