"""Rasa's concertbot and rules example bots (`../shared/examples/rasa/concertbot`, `.../rules`)
on real Kafka, Redis and PostgreSQL, with the dialogue worker and the actions worker (running
each bot's own `actions/` package) in the test process. User turns are published on
`parley.dialogue` as `ParsedUserMessage`s with hand-set intents and entities (no NLU); every
bot message of each turn must reach `parley.outbound` with the turn complete, and each
conversation's tracker in Redis must equal its SQL archive.

Concertbot lists TEDPolicy, MemoizationPolicy and RulePolicy; Parley skips TEDPolicy (not
implemented) and its stories are played by MemoizationPolicy. Its custom actions search
concerts and venues, show their reviews from the slots the searches set, and set
`likes_music` from the user's answer.

The rules bot (RulePolicy only) lists its `utter_*` responses under `actions:`; as in
Rasa 3 (`action_for_name_or_text`), Parley says them as responses rather than asking the
action server. None of its custom actions runs: no rule predicts `action_switch_faq` (the only
writer of `detailed_faq`, so with it unset neither FAQ rule applies and `faq` gets
RulePolicy's core fallback, "I give up."), and `action_validate_loop_q_form` is not a name
Rasa 3 calls (a form's validation action is `validate_loop_q_form`, which the domain does not
list)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from schemas.envelopes import ActionRequest, OutboundMessage, ParsedUserMessage
from schemas.project.loader import load_project
from schemas.topics import Topic
from services.actions.worker_cli import ActionsSettings, ActionsWorker
from services.common.bus import Publication, Subscription
from services.common.kafka_bus import KafkaBus
from services.dialogue.store.settings import StoreSettings
from services.dialogue.worker_cli import DialogueSettings, DialogueWorker
from tests.integration.test_tracker_store import REDIS_URL, pg_url  # noqa: F401 - fixture
from tests.support.buses import bus_settings
from tests.support.messages import said
from tests.support.outbound import Outbound
from tests.support.workers import imports_restored, running

pytestmark = pytest.mark.integration

Script = list[tuple[ParsedUserMessage, list[str]]]


@dataclass
class Bot:
    dialogue: DialogueWorker
    probe: KafkaBus
    outbound: Outbound
    requests: list[ActionRequest]

    async def play(self, conversation: str, script: Script) -> list[dict[str, Any]]:
        """Plays `script`, checking each turn's texts; the stored events, equal to the archive."""
        for number, (message, expected) in enumerate(script, start=1):
            await self.probe.publish(Topic.DIALOGUE, message)
            await self.outbound.completed(conversation, number)
            turn = self.outbound.turn(conversation, message.message_id)
            assert turn == expected, f"{conversation} turn {number} ({message.event.intent_name})"
        stored = await self.dialogue.hot.load(conversation)
        assert stored is not None
        assert stored.snapshot["pending"] is None
        assert await self.dialogue.archive.read(conversation) == stored.events
        return stored.events


@pytest.fixture
async def bot(
    request: pytest.FixtureRequest,
    shared_dir: Path,
    unique_prefix: str,
    pg_url: str,  # noqa: F811 - the fixture
) -> AsyncIterator[Bot]:
    root = shared_dir / "examples" / "rasa" / request.param
    project = load_project(root)
    kafka = bus_settings("kafka", unique_prefix)
    store = StoreSettings(redis_url=REDIS_URL, database_url=pg_url, key_prefix=unique_prefix)
    settings = DialogueSettings(project=project.root, health_host="127.0.0.1", health_port=0)
    dialogue = DialogueWorker(settings, store, KafkaBus(kafka), project)
    actions_settings = ActionsSettings(
        package=str(root / "actions"), http_enabled=False, health_host="127.0.0.1", health_port=0
    )
    saved_path = list(sys.path)
    actions = ActionsWorker(actions_settings, KafkaBus(kafka))
    probe = KafkaBus(kafka)
    outbound = Outbound()
    requests: list[ActionRequest] = []

    async def record(message: ActionRequest) -> list[Publication]:
        requests.append(message)
        return []

    probe.subscribe(Subscription(Topic.OUTBOUND, "probe", outbound, OutboundMessage))
    probe.subscribe(Subscription(Topic.ACTIONS, "probe", record, ActionRequest))
    with imports_restored(saved_path, lambda: actions.registry.package):
        async with running(actions, dialogue, probe):
            yield Bot(dialogue, probe, outbound, requests)


def _actions(events: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in events if e["event"] == "action"]


def _slots(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in events if e["event"] == "slot"}


CONCERTS = [{"artist": "Foo Fighters", "reviews": 4.5}, {"artist": "Katy Perry", "reviews": 5.0}]
VENUES = [{"name": "Big Arena", "reviews": 4.5}, {"name": "Rock Cellar", "reviews": 5.0}]


@pytest.mark.parametrize("bot", ["concertbot"], indirect=True)
async def test_concertbot_searches_and_shows_reviews_with_its_actions(bot: Bot) -> None:
    concerts = f"concerts-{uuid.uuid4().hex[:8]}"
    events = await bot.play(
        concerts,
        [
            (said(concerts, "search_concerts"), ["Foo Fighters, Katy Perry"]),
            (said(concerts, "compare_reviews"), [f"concerts from slots: {CONCERTS}"]),
        ],
    )
    assert [a for a in _actions(events) if a.startswith("action_s")] == [
        "action_session_start",
        "action_search_concerts",
        "action_show_concert_reviews",
    ]
    assert _slots(events) == {"concerts": CONCERTS}

    venues = f"venues-{uuid.uuid4().hex[:8]}"
    events = await bot.play(
        venues,
        [
            (
                said(venues, "search_venues"),
                ["here are some venues I found", "Big Arena, Rock Cellar"],
            ),
            (said(venues, "compare_reviews"), [f"venues from slots: {VENUES}"]),
        ],
    )
    assert _slots(events) == {"venues": VENUES}
    assert "action_show_venue_reviews" in _actions(events)
    assert [r.next_action for r in bot.requests if r.conversation_id in (concerts, venues)] == [
        "action_search_concerts",
        "action_show_concert_reviews",
        "action_search_venues",
        "action_show_venue_reviews",
    ]


@pytest.mark.parametrize("bot", ["concertbot"], indirect=True)
async def test_concertbot_sets_the_music_preference_with_its_action(bot: Bot) -> None:
    fan = f"fan-{uuid.uuid4().hex[:8]}"
    events = await bot.play(
        fan,
        [
            (
                said(fan, "how_to_get_started"),
                ["I can help you find concerts and venues. Do you like music?"],
            ),
            (
                said(fan, "affirm"),
                [
                    'Awesome! You can ask me things like "Find me some concerts" or '
                    '"What\'s a good venue"'
                ],
            ),
        ],
    )
    assert _slots(events) == {"likes_music": True}
    assert _actions(events)[-3:] == [
        "action_set_music_preference",
        "utter_awesome",
        "action_listen",
    ]

    skeptic = f"skeptic-{uuid.uuid4().hex[:8]}"
    events = await bot.play(
        skeptic,
        [
            (
                said(skeptic, "how_to_get_started"),
                ["I can help you find concerts and venues. Do you like music?"],
            ),
            (said(skeptic, "deny"), ["Goodbye :("]),
        ],
    )
    assert _slots(events) == {"likes_music": False}


@pytest.mark.parametrize("bot", ["rules"], indirect=True)
async def test_rules_bot_says_its_listed_utter_actions_and_fills_its_form(bot: Bot) -> None:
    """`utter_*` actions listed under `actions:` are said as responses (Rasa 3 does the
    same): no request reaches the actions worker for them; the form asks, fills and submits."""
    form = f"form-{uuid.uuid4().hex[:8]}"
    events = await bot.play(
        form,
        [
            (said(form, "greet"), ["utter_greet"]),
            (said(form, "activate_q_form"), ["utter_ask_some_slot"]),
            (said(form, "inform", some_slot="parley"), ["utter_stop"]),
        ],
    )
    assert [e for e in events if e["event"] == "action_failed"] == []
    assert _slots(events) == {"requested_slot": None, "some_slot": "parley"}
    assert [e["name"] for e in events if e["event"] == "active_loop"] == ["loop_q_form", None]
    assert [r.next_action for r in bot.requests if r.conversation_id == form] == []
    # `action_switch_faq`, the bot's one custom action with a body, is never predicted
    assert not any(r.next_action == "action_switch_faq" for r in bot.requests)

    faq = f"faq-{uuid.uuid4().hex[:8]}"
    events = await bot.play(faq, [(said(faq, "faq"), ["I give up."])])
    assert "action_default_fallback" in _actions(events)
    assert "detailed_faq" not in _slots(events)
