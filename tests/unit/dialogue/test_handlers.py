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
    AppendEvents,
    OutboundMessage,
    ParsedUserMessage,
    ReminderRequest,
)
from schemas.events import (
    BotUttered,
    Event,
    ReminderScheduled,
    SlotSet,
    UserUttered,
    parse_events,
)
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
from services.dialogue.tracker import TrackerState, replay
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

    def predict(
        self,
        events: Sequence[Event],
        state: TrackerState,
        domain: Domain,
        initial: TrackerState | None = None,
    ) -> Prediction:
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


async def test_only_a_window_of_recent_events_is_read(
    domain: Domain, hot: MemoryHotStore, archive: SqlArchive
) -> None:
    table = {"greet": "utter_greet", "order": "action_order", "action_order": "utter_greet"}
    engine = DialogueEngine(domain, Table(table), rng=random.Random(0))
    small = DialogueService(engine, hot, archive, FakeClock(), {}, window=6)
    first: dict[int, list[Publication]] = {}
    for i in range(5):
        first[i] = await small.handle(said("greet", f"m{i}"))
    assert hot.data["alice"].seq == 3 + 4 * 5
    loads: list[int] = []
    original = hot.load

    async def counting(cid: str, start: int = 0) -> Any:
        loads.append(start)
        return await original(cid, start)

    hot.load = counting  # type: ignore[method-assign,assignment]
    pubs = await small.handle(said("greet", "m5"))
    assert loads == [23 - 6]  # the last 6 events, not the 23
    assert on(Topic.OUTBOUND, pubs)[0].messages[0].text == "Hello!"
    assert hot.data["alice"].seq == 27
    # a redelivered old input is still answered the same, from events outside the window
    again = await small.handle(said("greet", "m1"))
    assert on(Topic.OUTBOUND, again) == on(Topic.OUTBOUND, first[1])
    assert on(Topic.EVENTS, again) == on(Topic.EVENTS, first[1])
    assert hot.data["alice"].seq == 27


def test_states_of_recent_events_from_an_anchor_equal_the_whole_history(tmp_path: Path) -> None:
    from schemas.events import ActionExecuted
    from services.dialogue.states import states_for
    from services.dialogue.tracker import slot_defaults

    (tmp_path / "domain.yml").write_text(
        'version: "3.1"\nintents: [greet]\nslots:\n  vip:\n    type: bool\n'
        "    mappings: [{type: custom}]\nresponses:\n  utter_greet:\n  - text: hi\n"
    )
    (tmp_path / "config.yml").write_text("language: en\n")
    domain = load_project(tmp_path).domain
    events: list[Event] = [
        ActionExecuted(timestamp=0.0, name="action_listen"),
        SlotSet(timestamp=0.0, name="vip", value=True),
    ]
    for i in range(30):
        events += [
            ActionExecuted(timestamp=float(i), name="action_listen"),
            UserUttered(timestamp=float(i), text="hi", parse_data={"intent": {"name": "greet"}}),
            ActionExecuted(timestamp=float(i), name="utter_greet"),
        ]
    whole = states_for(events, domain)
    cut = 50
    anchor = replay(events[:cut], slot_defaults(domain))
    recent = states_for(events[cut:], domain, initial=anchor)
    assert recent[-3:] == whole[-3:]
    assert recent[-1].to_dict()["slots"] == {"vip": (1.0, 1.0)}
    assert states_for(events[cut:], domain)[-1].to_dict().get("slots") != {"vip": (1.0, 1.0)}


def test_a_rewind_in_recent_events_replays_from_the_anchor(tmp_path: Path) -> None:
    from schemas.events import ActionExecuted, UserUtteranceReverted
    from services.dialogue.tracker import apply, slot_defaults

    (tmp_path / "domain.yml").write_text(
        'version: "3.1"\nintents: [greet]\nslots:\n  vip:\n    type: bool\n'
        "    mappings: [{type: custom}]\n"
    )
    (tmp_path / "config.yml").write_text("language: en\n")
    defaults = slot_defaults(load_project(tmp_path).domain)
    events: list[Event] = [
        SlotSet(timestamp=0.0, name="vip", value=True),
        ActionExecuted(timestamp=1.0, name="action_listen"),
        UserUttered(timestamp=2.0, text="hi", parse_data={"intent": {"name": "greet"}}),
    ]
    whole = apply(replay(events, defaults), UserUtteranceReverted(timestamp=3.0), events, defaults)
    anchor = replay(events[:1], defaults)
    recent = events[1:]
    state = replay(events, defaults)
    windowed = apply(state, UserUtteranceReverted(timestamp=3.0), recent, defaults, anchor)
    assert windowed.slots == whole.slots == {**defaults, "vip": True}
    assert windowed.latest_message == whole.latest_message


async def test_agent_replies_pass_through_a_paused_conversation(
    service: DialogueService, hot: MemoryHotStore
) -> None:
    from schemas.envelopes import ConsoleCommand
    from schemas.events import ConversationPaused

    await service.handle(said("greet", "m1"))
    stored = hot.data["alice"]
    pause = ConversationPaused(timestamp=2.0).to_dict()
    snapshot = dict(stored.snapshot)
    state = TrackerState.from_json(snapshot["tracker"])
    snapshot["tracker"] = TrackerState(**{**state.__dict__, "paused": True}).to_json()
    await hot.append("alice", stored.seq, [pause], snapshot)
    quiet = await service.handle(said("greet", "m2"))
    (outbound,) = on(Topic.OUTBOUND, quiet)
    assert outbound.messages == []  # recorded, not answered
    assert outbound.turn_complete

    def command(kind: str, mid: str, **extra: Any) -> ConsoleCommand:
        return ConsoleCommand(
            conversation_id="alice",
            message_id=mid,
            sent_at=FakeClock().now(),
            command=kind,  # type: ignore[arg-type]
            agent_id="ada",
            **extra,
        )

    reply = await service.handle(command("reply", "a1", text="Hi, this is Ada."))
    (agent,) = on(Topic.OUTBOUND, reply)
    assert agent.source == "agent"
    assert [m.text for m in agent.messages] == ["Hi, this is Ada."]
    assert not agent.turn_complete
    event = json.loads(on(Topic.EVENTS, reply)[0].value)
    assert event["event"] == "agent"
    assert event["data"] == {"agent_id": "ada"}
    back = await service.handle(command("hand_back", "a2", followup_action="utter_greet"))
    events = [json.loads(m.value)["event"] for m in on(Topic.EVENTS, back)]
    assert events[:3] == ["agent_action", "resume", "followup"]
    assert [m.text for m in on(Topic.OUTBOUND, back)[0].messages] == ["Hello!"]
    again = await service.handle(said("greet", "m3"))
    assert [m.text for m in on(Topic.OUTBOUND, again)[0].messages] == ["Hello!"]


def appended(events: list[Event], message_id: str, *, side_effects: bool) -> AppendEvents:
    return AppendEvents(
        conversation_id="alice",
        message_id=message_id,
        correlation_id=message_id,
        sent_at=FakeClock().now(),
        events=events,  # type: ignore[arg-type]
        execute_side_effects=side_effects,
    )


async def test_api_events_are_recorded_without_prediction_or_side_effects(
    service: DialogueService, hot: MemoryHotStore, archive: SqlArchive
) -> None:
    await service.handle(said("greet", "m1"))
    bot = BotUttered(timestamp=1.0, text="Sent by an operator")
    remind = ReminderScheduled(intent="EXTERNAL_x", date_time=FakeClock().now(), name="r1")
    pubs = await service.handle(
        appended([SlotSet(name="x", value=1), bot, remind], "api-1", side_effects=False)
    )
    stored = hot.data["alice"]
    assert [e["event"] for e in stored.events[-3:]] == ["slot", "bot", "reminder"]
    assert stored.seq == 10  # nothing predicted after them
    assert await archive.read("alice") == stored.events
    (outbound,) = on(Topic.OUTBOUND, pubs)
    assert outbound.messages == []  # the completion marker only: the bot message is not sent
    assert outbound.turn_complete
    assert outbound.in_reply_to == "api-1"
    assert on(Topic.SCHEDULER, pubs) == []
    assert len(on(Topic.EVENTS, pubs)) == 3


async def test_api_events_with_side_effects_send_and_schedule(service: DialogueService) -> None:
    bot = BotUttered(timestamp=1.0, text="Sent by an operator")
    remind = ReminderScheduled(intent="EXTERNAL_x", date_time=FakeClock().now(), name="r1")
    pubs = await service.handle(appended([bot, remind], "api-2", side_effects=True))
    (outbound,) = on(Topic.OUTBOUND, pubs)
    assert [m.text for m in outbound.messages] == ["Sent by an operator"]
    (request,) = on(Topic.SCHEDULER, pubs)
    assert isinstance(request, ReminderRequest)
    assert request.event.name == "r1"
    again = await service.handle(appended([bot, remind], "api-2", side_effects=True))
    assert on(Topic.OUTBOUND, again) == on(Topic.OUTBOUND, pubs)
