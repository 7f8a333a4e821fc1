"""Human handoff over real Kafka, Redis and PostgreSQL: Parley's bikeshop bot with the
dialogue, actions and scheduler workers.

"I want a person" runs bikeshop's `action_handoff` (its pause carries the reason), the dialogue
worker asks the scheduler for the `queue` timer, nobody claims the conversation, the timer
fires and the bot says no mechanic is free and takes over again. A pickup reminder falling due
while a mechanic holds the conversation is deferred, and said right after the hand-back.

The bot runs from a copy of examples/bikeshop with short delays: the handoff queue timeout (in
`endpoints.yml`) and the pickup reminder's delay (in its actions)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.envelopes import ConsoleCommand, OutboundMessage
from schemas.project.loader import load_project
from schemas.topics import Topic
from services.actions.worker_cli import ActionsSettings, ActionsWorker
from services.common.bus import Subscription
from services.common.kafka_bus import KafkaBus
from services.dialogue.store.settings import StoreSettings
from services.dialogue.worker_cli import DialogueSettings, DialogueWorker
from services.scheduler.settings import SchedulerSettings
from services.scheduler.worker_cli import SchedulerWorker
from tests.integration.test_tracker_store import REDIS_URL, pg_url  # noqa: F401 - fixture
from tests.support.buses import bus_settings
from tests.support.messages import said
from tests.support.outbound import Outbound
from tests.support.workers import imports_restored, running

pytestmark = pytest.mark.integration

BIKESHOP = Path(__file__).resolve().parents[2] / "examples" / "bikeshop"
QUEUE_TIMEOUT_S = 3
REMINDER_DELAY = "PICKUP_REMINDER_DELAY = timedelta(minutes=5)"
HANDOFF_TEXT = (
    "I'm connecting you with a mechanic. Someone from the workshop will reply here shortly."
)
NO_AGENT_TEXT = (
    "Sorry, no mechanic is free right now. I'm back: ask me anything, or try again later."
)
PICKUP_TEXTS = {
    "Reminder from Spoke & Chain: your bike is waiting for you at the workshop.",
    "Just a nudge: don't forget to pick up your bike from Spoke & Chain.",
}


@pytest.fixture
def bikeshop(tmp_path: Path) -> Path:
    """A copy of the bikeshop bot: queue timeout 3 s, pickup reminder 2 s after asking."""
    root = tmp_path / "bikeshop"
    shutil.copytree(BIKESHOP, root, ignore=shutil.ignore_patterns("models", "__pycache__", ".rasa"))
    endpoints = root / "endpoints.yml"
    text = endpoints.read_text()
    assert "  queue_timeout: 300" in text, "bikeshop's endpoints.yml changed"
    endpoints.write_text(
        text.replace("  queue_timeout: 300", f"  queue_timeout: {QUEUE_TIMEOUT_S}")
    )
    actions = root / "actions" / "actions.py"
    source = actions.read_text()
    assert source.count(REMINDER_DELAY) == 1, "bikeshop's pickup reminder changed"
    actions.write_text(
        source.replace(REMINDER_DELAY, "PICKUP_REMINDER_DELAY = timedelta(seconds=2)")
    )
    return root


@dataclass
class Bot:
    dialogue: DialogueWorker
    scheduler: SchedulerWorker
    probe: KafkaBus
    outbound: Outbound

    async def stored(self, conversation: str) -> list[dict[str, Any]]:
        tracker = await self.dialogue.hot.load(conversation)
        assert tracker is not None
        return tracker.events

    async def until(self, what: str, check: Callable[[], Any], within: float = 20) -> None:
        """Wait (polling) until `check()` is truthy; an absence cannot be awaited otherwise."""
        deadline = asyncio.get_running_loop().time() + within
        while not await check():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not within {within:g}s: {what}")
            await asyncio.sleep(0.1)


@pytest.fixture
async def bot(
    bikeshop: Path,
    unique_prefix: str,
    pg_url: str,  # noqa: F811 - the fixture
) -> AsyncIterator[Bot]:
    project = load_project(bikeshop)
    assert project.endpoints.handoff.queue_timeout == QUEUE_TIMEOUT_S
    kafka = bus_settings("kafka", unique_prefix)
    store = StoreSettings(redis_url=REDIS_URL, database_url=pg_url, key_prefix=unique_prefix)
    settings = DialogueSettings(project=project.root, health_host="127.0.0.1", health_port=0)
    dialogue = DialogueWorker(settings, store, KafkaBus(kafka), project)
    saved_path = list(sys.path)
    actions = ActionsWorker(
        ActionsSettings(
            package=str(bikeshop / "actions"),
            http_enabled=False,
            health_host="127.0.0.1",
            health_port=0,
        ),
        KafkaBus(kafka),
    )
    scheduler = SchedulerWorker(
        SchedulerSettings(
            database_url=pg_url,
            replica_id="handoff-e2e",
            wakeup_interval_s=0.2,
            health_host="127.0.0.1",
            health_port=0,
        ),
        KafkaBus(kafka),
    )
    probe = KafkaBus(kafka)
    outbound = Outbound()
    probe.subscribe(Subscription(Topic.OUTBOUND, "probe", outbound, OutboundMessage))
    with imports_restored(saved_path, lambda: actions.registry.package):
        async with running(actions, scheduler, dialogue, probe):
            yield Bot(dialogue, scheduler, probe, outbound)


def agent(conversation: str, command: str, **extra: Any) -> ConsoleCommand:
    return ConsoleCommand(
        conversation_id=conversation,
        sent_at=datetime.now(UTC),
        command=command,  # type: ignore[arg-type]
        agent_id="mechanic-1",
        **extra,
    )


async def test_an_unclaimed_handoff_times_out_and_the_bot_resumes(bot: Bot) -> None:
    conversation = f"handoff-{uuid.uuid4().hex[:8]}"
    await bot.probe.publish(
        Topic.DIALOGUE, said(conversation, "human_handoff", "I want to talk to a person")
    )
    await bot.outbound.said(conversation, HANDOFF_TEXT)
    asked_at = datetime.now(UTC)
    (pause,) = [e for e in await bot.stored(conversation) if e["event"] == "pause"]
    assert pause["metadata"] == {"handoff_reason": "customer_request"}

    await bot.outbound.said(conversation, NO_AGENT_TEXT, within=QUEUE_TIMEOUT_S + 20)
    assert (datetime.now(UTC) - asked_at).total_seconds() >= QUEUE_TIMEOUT_S - 1.5
    kinds = [e["event"] for e in await bot.stored(conversation)]
    assert kinds[kinds.index("pause") :] == ["pause", "action", "action", "bot", "resume", "action"]
    (row,) = bot.scheduler.service.store.fired(conversation)
    assert row["status"] == "published"
    assert row["job_id"].endswith(":queue")

    # the bot answers again
    await bot.probe.publish(Topic.DIALOGUE, said(conversation, "greet", "hello"))
    await bot.outbound.completed(conversation, 3, within=20)
    assert len(bot.outbound.texts(conversation)) == 3


async def test_a_reminder_due_during_the_handoff_is_said_after_the_hand_back(bot: Bot) -> None:
    conversation = f"deferred-{uuid.uuid4().hex[:8]}"
    await bot.probe.publish(
        Topic.DIALOGUE, said(conversation, "ask_reminder", "remind me to pick up my bike")
    )
    await bot.outbound.said(
        conversation, "Will do. I'll remind you to pick up your bike in 0 minutes."
    )
    await bot.probe.publish(Topic.DIALOGUE, said(conversation, "human_handoff", "a human please"))
    await bot.outbound.said(conversation, HANDOFF_TEXT)
    await bot.probe.publish(Topic.DIALOGUE, agent(conversation, "claim"))

    async def deferred() -> bool:
        head = await bot.dialogue.hot.load_snapshot(conversation)
        return head is not None and [d["reminder"] for d in head[1].get("deferred", [])] == [
            "pickup_reminder"
        ]

    await bot.until("the pickup reminder is deferred", deferred)
    assert not PICKUP_TEXTS & set(bot.outbound.texts(conversation))
    events = await bot.stored(conversation)
    (claim,) = [e for e in events if e["event"] == "agent_action"]
    assert (claim["command"], claim["agent_id"]) == ("claim", "mechanic-1")

    await bot.probe.publish(Topic.DIALOGUE, agent(conversation, "hand_back"))

    async def reminded() -> bool:
        return bool(PICKUP_TEXTS & set(bot.outbound.texts(conversation)))

    await bot.until("the pickup reminder is said", reminded)
    kinds = [e["event"] for e in await bot.stored(conversation)]
    back = kinds.index("resume")
    assert kinds[back - 1 : back + 2] == ["agent_action", "resume", "user"]
    assert NO_AGENT_TEXT not in bot.outbound.texts(conversation)  # the claim stopped the queue
    fired = bot.scheduler.service.store.fired(conversation)
    assert [r["job_id"].split(":")[0] for r in fired] == ["reminder"]
