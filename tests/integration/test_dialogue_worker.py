"""The dialogue worker end to end on real Kafka, Redis and PostgreSQL: Rasa's moodbot test
stories (`../shared/examples/rasa/moodbot/tests/test_stories.yml`) play turn by turn; every
bot action of every story is predicted and run, the bot's messages reach `parley.outbound`
with the turn marked complete, every event reaches `parley.events`, and the tracker in Redis
equals its SQL archive. Formbot fills its form with its real `validate_restaurant_form` run by
the actions worker (`parley worker actions`) over the same Kafka. e2ebot (TEDPolicy only,
end-to-end story steps) plays its test stories with the policies and the NLU that `parley train`
trained on it: the user texts are parsed by that NLU model, and after an end-to-end text the
bot follows the story by the text, whatever intent the NLU gave it."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.envelopes import OutboundMessage, ParsedUserMessage
from schemas.events import UserUttered
from schemas.project.loader import load_project
from schemas.project.stories import ActionStep, Story, UserStep
from schemas.topics import Topic
from services.actions.worker_cli import ActionsSettings, ActionsWorker
from services.common.bus import Publication, Subscription
from services.common.kafka_bus import KafkaBus
from services.common.model_archive import latest_archive
from services.dialogue.store.settings import StoreSettings
from services.dialogue.worker_cli import DialogueSettings, DialogueWorker
from tests.integration.test_tracker_store import REDIS_URL, pg_url  # noqa: F401 - fixture
from tests.support.buses import bus_settings
from tests.support.messages import said
from tests.support.outbound import Outbound
from tests.support.recorder import Recorder

pytestmark = pytest.mark.integration


def turns(story: Story) -> list[tuple[UserStep, list[str]]]:
    """Each user step with the actions the story expects after it."""
    out: list[tuple[UserStep, list[str]]] = []
    for step in story.steps:
        if isinstance(step, UserStep):
            out.append((step, []))
        elif isinstance(step, ActionStep) and out and step.name:
            out[-1][1].append(step.name)
    return out


def parsed(conversation: str, step: UserStep) -> ParsedUserMessage:
    return said(conversation, step.intent or "", (step.text or "").strip())


@pytest.fixture
async def worker(
    shared_dir: Path,
    unique_prefix: str,
    pg_url: str,  # noqa: F811 - the fixture
) -> AsyncIterator[tuple[DialogueWorker, KafkaBus]]:
    project = load_project(shared_dir / "examples" / "rasa" / "moodbot")
    kafka = bus_settings("kafka", unique_prefix)
    store = StoreSettings(redis_url=REDIS_URL, database_url=pg_url, key_prefix=unique_prefix)
    settings = DialogueSettings(project=project.root, health_host="127.0.0.1", health_port=0)
    dialogue = DialogueWorker(settings, store, KafkaBus(kafka), project)
    probe = KafkaBus(kafka)
    await dialogue.start()
    try:
        yield dialogue, probe
    finally:
        await probe.stop()
        await dialogue.stop()


async def test_moodbot_test_stories_pass_end_to_end(
    worker: tuple[DialogueWorker, KafkaBus], shared_dir: Path
) -> None:
    dialogue, probe = worker
    project = load_project(shared_dir / "examples" / "rasa" / "moodbot")
    outbound = Outbound()
    events = Recorder()

    async def record(raw: Any) -> list[Publication]:
        await events.add(raw)
        return []

    probe.subscribe(Subscription(Topic.OUTBOUND, "probe", outbound, OutboundMessage))
    probe.subscribe(Subscription(Topic.EVENTS, "probe", record, dict[str, Any]))
    await probe.start()
    assert project.test_stories, "moodbot has test stories"
    checked = 0
    for index, story in enumerate(project.test_stories):
        conversation = f"story-{index}"
        for number, (step, expected) in enumerate(turns(story), start=1):
            await probe.publish(Topic.DIALOGUE, parsed(conversation, step))
            await outbound.completed(conversation, number)
            stored = await dialogue.hot.load(conversation)
            assert stored is not None
            actions = _actions_after_last_user(stored.events)
            assert actions == [*expected, "action_listen"], (
                f"{story.name} turn {number} ({step.intent}): {actions} != {expected}"
            )
            checked += len(expected)
        messages = outbound.by_conversation[conversation]
        assert all(m.input_channel == "rest" for m in messages)
        archived = await dialogue.archive.read(conversation)
        assert archived == (await dialogue.hot.load(conversation)).events  # type: ignore[union-attr]
    assert checked >= 10
    # every stored event went out on parley.events as Rasa's event-broker record
    total = 0
    for index in range(len(project.test_stories)):
        stored = await dialogue.hot.load(f"story-{index}")
        assert stored is not None
        total += stored.seq
    records = await events.wait_for(total)
    assert len(records) == total
    story0 = [r for r in records if r["sender_id"] == "story-0"]
    stored0 = await dialogue.hot.load("story-0")
    assert stored0 is not None
    assert [{k: v for k, v in r.items() if k != "sender_id"} for r in story0] == stored0.events
    # the bot's words are the domain's responses
    first = outbound.by_conversation["story-0"][0]
    assert first.messages[0].text == "Hey! How are you?"


def _actions_after_last_user(events: list[dict[str, Any]]) -> list[str]:
    last_user = max(i for i, e in enumerate(events) if e["event"] == "user")
    return [e["name"] for e in events[last_user + 1 :] if e["event"] == "action"]


def test_turn_helper_reads_story_steps(shared_dir: Path) -> None:
    project = load_project(shared_dir / "examples" / "rasa" / "moodbot")
    first = turns(project.test_stories[0])
    assert [(u.intent, a) for u, a in first] == [
        ("greet", ["utter_greet"]),
        ("mood_great", ["utter_happy"]),
    ]
    assert json.dumps([u.intent for u, _ in first])


# -- formbot and the actions worker --------------------------------------------------------


@pytest.fixture
async def formbot_workers(
    shared_dir: Path,
    unique_prefix: str,
    pg_url: str,  # noqa: F811 - the fixture
) -> AsyncIterator[tuple[DialogueWorker, KafkaBus]]:
    root = shared_dir / "examples" / "rasa" / "formbot"
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
    await actions.start()
    await dialogue.start()
    try:
        yield dialogue, probe
    finally:
        await probe.stop()
        await dialogue.stop()
        await actions.stop()
        sys.path[:] = saved_path
        package = actions.registry.package
        for name in [n for n in sys.modules if n.split(".")[0] == package]:
            del sys.modules[name]


async def test_formbot_fills_its_form_with_the_actions_worker(
    formbot_workers: tuple[DialogueWorker, KafkaBus],
) -> None:
    dialogue, probe = formbot_workers
    outbound = Outbound()
    probe.subscribe(Subscription(Topic.OUTBOUND, "probe", outbound, OutboundMessage))
    await probe.start()
    conversation = "diner"
    script: list[tuple[Any, list[str]]] = [
        (said(conversation, "greet"), ["Hello! I am restaurant search assistant! How can I help?"]),
        (said(conversation, "request_restaurant"), ["What cuisine?"]),
        (
            said(conversation, "inform", cuisine="klingon"),
            ["Cuisine type is not in the database, please try again", "What cuisine?"],
        ),
        (said(conversation, "inform", cuisine="italian"), ["How many people?"]),
        (said(conversation, "inform", number="2"), ["Do you want to sit outside?"]),
        (said(conversation, "affirm"), ["Please provide additional preferences"]),
        (said(conversation, "deny"), ["Please give your feedback on your experience so far"]),
        (
            said(conversation, "inform", "lovely"),
            [
                "All done!",
                "I am going to run a restaurant search using the following parameters:\n"
                " - cuisine: italian\n - num_people: 2\n - outdoor_seating: True\n"
                " - preferences: no additional preferences\n - feedback: lovely",
            ],
        ),
        (said(conversation, "thankyou"), ["You are welcome :)"]),
    ]
    for number, (message, expected) in enumerate(script, start=1):
        await probe.publish(Topic.DIALOGUE, message)
        await outbound.completed(conversation, number)
        turn: list[str] = []
        for out in reversed(outbound.by_conversation[conversation]):
            if out.in_reply_to != message.message_id:
                break
            turn[:0] = [m.text or "" for m in out.messages]
        assert turn == expected, f"turn {number} ({message.event.intent_name})"
    stored = await dialogue.hot.load(conversation)
    assert stored is not None
    names = [e.get("name") for e in stored.events if e["event"] in ("action", "active_loop")]
    assert names.count("restaurant_form") == 7 + 1  # its 7 runs and its activation
    assert names[-6:] == [
        None,
        "utter_submit",
        "utter_slots_values",
        "action_listen",
        "utter_noworries",
        "action_listen",
    ]
    assert stored.snapshot["pending"] is None
    assert await dialogue.archive.read(conversation) == stored.events


# -- e2ebot: end-to-end stories, TEDPolicy only, trained by `parley train` ------------------

SUSHI = "I can always go for sushi"


@pytest.fixture(scope="session")
def e2ebot_trained(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of e2ebot trained once by `parley train` (NLU on the default encoder, and the
    policies that stand in for TED); the archive is in its models/ folder."""
    from services.cli import main

    root = tmp_path_factory.mktemp("e2ebot") / "e2ebot"
    shutil.copytree(shared_dir / "examples" / "rasa" / "e2ebot", root)
    assert main(["train", "--project", str(root), "--no-progress"]) == 0
    return root


@pytest.fixture
async def e2ebot_worker(
    e2ebot_trained: Path,
    unique_prefix: str,
    pg_url: str,  # noqa: F811 - the fixture
) -> AsyncIterator[tuple[DialogueWorker, KafkaBus]]:
    project = load_project(e2ebot_trained)
    kafka = bus_settings("kafka", unique_prefix)
    store = StoreSettings(redis_url=REDIS_URL, database_url=pg_url, key_prefix=unique_prefix)
    settings = DialogueSettings(
        project=project.root,
        model=e2ebot_trained / "models",
        health_host="127.0.0.1",
        health_port=0,
    )
    dialogue = DialogueWorker(settings, store, KafkaBus(kafka), project)
    probe = KafkaBus(kafka)
    await dialogue.start()
    try:
        yield dialogue, probe
    finally:
        await probe.stop()
        await dialogue.stop()


def understood(conversation: str, text: str, parse: dict[str, Any]) -> ParsedUserMessage:
    """A REST user message with the NLU model's parse of its text."""
    now = datetime.now(UTC)
    message_id = uuid.uuid4().hex
    event = UserUttered(
        timestamp=now.timestamp(),
        text=text,
        input_channel="rest",
        message_id=message_id,
        parse_data=parse,
    )
    return ParsedUserMessage(
        conversation_id=conversation, message_id=message_id, sent_at=now, event=event
    )


async def test_e2ebot_test_stories_pass_end_to_end_with_its_trained_nlu(
    e2ebot_worker: tuple[DialogueWorker, KafkaBus], e2ebot_trained: Path
) -> None:
    from services.story_backends import open_nlu

    dialogue, probe = e2ebot_worker
    project = load_project(e2ebot_trained)
    archive = latest_archive(e2ebot_trained / "models")
    assert archive is not None
    nlu = open_nlu(archive)
    assert nlu is not None, "parley train trained e2ebot's NLU"
    end_to_end = {"I had that yesterday", SUSHI}  # e2ebot's story steps without intent
    outbound = Outbound()
    probe.subscribe(Subscription(Topic.OUTBOUND, "probe", outbound, OutboundMessage))
    await probe.start()
    assert len(project.test_stories) == 4
    checked = 0
    intents: dict[str, str | None] = {}
    for index, story in enumerate(project.test_stories):
        conversation = f"e2e-{index}"
        for number, (step, expected) in enumerate(turns(story), start=1):
            assert step.text, "e2ebot's test stories give every user turn its text"
            (parse,) = await nlu.parse([step.text])
            intents[step.text] = (parse.get("intent") or {}).get("name")
            if step.text not in end_to_end:
                # Rasa's `rasa test --e2e` check; the end-to-end texts are followed by text.
                assert intents[step.text] == step.intent, f"NLU on {step.text!r}"
            await probe.publish(Topic.DIALOGUE, understood(conversation, step.text, parse))
            await outbound.completed(conversation, number)
            stored = await dialogue.hot.load(conversation)
            assert stored is not None
            actions = _actions_after_last_user(stored.events)
            assert actions == [*expected, "action_listen"], (
                f"{story.name} turn {number} ({step.text!r}, NLU: {intents[step.text]}): "
                f"{actions} != {expected}"
            )
            if step.text in end_to_end:
                after = _events_after_last_user(stored.events)
                assert after[0] == {
                    "event": "user_featurization",
                    "timestamp": after[0]["timestamp"],
                    "use_text_for_featurization": True,
                }, "the turn is featurized by its text, as the story was"
                assert after[1]["policy"] == "MemoizationPolicy"
            checked += len(expected)
        archived = await dialogue.archive.read(conversation)
        assert archived == (await dialogue.hot.load(conversation)).events  # type: ignore[union-attr]
    assert checked == 12
    # The bot's words are e2ebot's responses.
    assert outbound.by_conversation["e2e-0"][0].messages[0].text == "hi!"


def _events_after_last_user(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last_user = max(i for i, e in enumerate(events) if e["event"] == "user")
    return events[last_user + 1 :]
