"""The design's RestartConversation is Rasa's session restart: after `session_expiration_time`
minutes of silence the next message runs `action_session_start`, which keeps the slots when the
domain's `session_config.carry_over_slots_to_new_session` is true and resets them when false;
`/restart` (`action_restart`) resets everything either way. Through the handler, with the
tracker stored and rebuilt from its events (docs/conversation-events.md)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from schemas.envelopes import ParsedUserMessage
from schemas.events import UserUttered, parse_events
from schemas.project.loader import load_project
from services.dialogue.engine import DialogueEngine
from services.dialogue.handlers import DialogueService
from services.dialogue.store.memory_store import MemoryHotStore
from services.dialogue.store.migrate import migrate
from services.dialogue.store.sql_archive import SqlArchive
from services.dialogue.tracker import TrackerState, replay
from tests.support.clock import FakeClock
from tests.unit.dialogue.test_handlers import Table

DOMAIN = """version: "3.1"
intents: [greet, order, restart]
entities: [item]
slots:
  item:
    type: text
    mappings: [{{type: from_entity, entity: item}}]
responses:
  utter_greet:
  - text: "Hello!"
session_config:
  session_expiration_time: 60
  carry_over_slots_to_new_session: {carry}
"""
TABLE = {"greet": "utter_greet", "order": "utter_greet", "restart": "action_restart"}


class Bot:
    """A service on one domain, its clock, its store."""

    def __init__(
        self, service: DialogueService, clock: FakeClock, hot: MemoryHotStore, archive: SqlArchive
    ) -> None:
        self.service, self.clock, self.hot, self.archive = service, clock, hot, archive
        self.sent = 0

    async def say(self, intent: str, **entities: str) -> list[str]:
        """Send a message now; the names of the events it added."""
        self.sent += 1
        now = self.clock.now()
        event = UserUttered(
            timestamp=now.timestamp(),
            text=intent,
            input_channel="rest",
            parse_data={
                "intent": {"name": intent, "confidence": 1.0},
                "entities": [{"entity": k, "value": v} for k, v in entities.items()],
            },
        )
        before = self.hot.data["alice"].seq if "alice" in self.hot.data else 0
        await self.service.handle(
            ParsedUserMessage(
                conversation_id="alice", message_id=f"m{self.sent}", sent_at=now, event=event
            )
        )
        return [e["event"] for e in self.hot.data["alice"].events[before:]]

    @property
    def slots(self) -> dict[str, Any]:
        """The stored tracker's slots, checked against a replay of the stored events (what a
        rebuild from the archive computes)."""
        stored = self.hot.data["alice"]
        state = TrackerState.from_json(stored.snapshot["tracker"])
        assert (
            replay(parse_events(stored.events), self.service.engine.slot_defaults).slots
            == state.slots
        )
        return dict(state.slots)


async def bot(tmp_path: Path, *, carry: bool) -> Bot:
    (tmp_path / "domain.yml").write_text(DOMAIN.format(carry=str(carry).lower()))
    (tmp_path / "config.yml").write_text("language: en\n")
    domain = load_project(tmp_path).domain
    url = f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}"
    await migrate(url)
    archive = SqlArchive(url)
    await archive.start()
    clock, hot = FakeClock(), MemoryHotStore()
    engine = DialogueEngine(domain, Table(TABLE), rng=random.Random(0))
    return Bot(DialogueService(engine, hot, archive, clock, {}), clock, hot, archive)


@pytest.fixture(params=[True, False], ids=["carry", "reset"])
async def carrying(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Bot, bool]]:
    made = await bot(tmp_path, carry=request.param)
    yield made, request.param
    await made.archive.close()


async def test_an_expired_session_restarts_keeping_or_resetting_slots_as_configured(
    carrying: tuple[Bot, bool],
) -> None:
    b, carry = carrying
    first = await b.say("order", item="tea")
    assert first[:3] == ["action", "session_started", "action"]  # the first session
    assert b.slots["item"] == "tea"

    b.clock.advance(59 * 60)  # not expired yet: the same session
    assert "session_started" not in await b.say("greet")
    assert b.slots["item"] == "tea"

    b.clock.advance(61 * 60)  # silent past session_expiration_time: a new session
    restarted = await b.say("greet")
    carried = ["slot"] if carry else []
    assert restarted[:4] == ["action", "session_started", *carried, "action", "user"][:4]
    stored = b.hot.data["alice"].events
    start = stored.index(next(e for e in stored[::-1] if e["event"] == "session_started"))
    assert stored[start - 1]["name"] == "action_session_start"
    assert stored[start + 1 + len(carried)]["name"] == "action_listen"
    assert b.slots["item"] == ("tea" if carry else None)


async def test_restart_resets_everything_whatever_the_session_config(
    carrying: tuple[Bot, bool],
) -> None:
    b, _ = carrying
    await b.say("order", item="tea")
    events = await b.say("restart")
    assert events[:3] == ["user", "action", "restart"]  # action_restart
    # its follow-up, action_session_start, carries nothing: the restart reset the slots first
    assert events[3:6] == ["action", "session_started", "action"]
    assert "slot" not in events
    assert b.slots["item"] is None
    names = [e.get("name") for e in b.hot.data["alice"].events[-len(events) :]]
    assert names[1] == "action_restart"
    assert names[3] == "action_session_start"
