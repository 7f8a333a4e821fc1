"""Remote mode over the real Kafka: requests on parley.actions forwarded by the actions worker
to a real `python -m rasa_sdk` process, results on parley.dialogue; a conversation's results
stay in order, and an action server that is gone gives `failed` results, not a stuck worker.
End to end: formbot's form, validated by its own `validate_restaurant_form` in rasa-sdk, filled
through the dialogue worker and `parley worker actions --remote` (its own process) over Kafka,
Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from schemas.envelopes import (
    ActionRequest,
    ActionResult,
    DeadLetter,
    OutboundMessage,
    ParsedUserMessage,
)
from schemas.events import SlotSet
from schemas.project.loader import load_project
from schemas.topics import Topic
from services.actions.worker import result_message_id
from services.actions.worker_cli import ActionsSettings, RemoteActionsWorker
from services.common.bus import Subscription
from services.common.kafka_bus import KafkaBus
from services.dialogue.store.settings import StoreSettings
from services.dialogue.worker_cli import DialogueSettings, DialogueWorker
from tests.integration.test_tracker_store import REDIS_URL, pg_url  # noqa: F401 - fixture
from tests.support.buses import bus_settings, kafka_bootstrap
from tests.support.messages import said
from tests.support.outbound import Outbound
from tests.support.recorder import Recorder
from tests.unit.actions._action_server import action_server, closed_port_url
from tests.unit.actions._calls import FIXTURE_PACKAGE, request

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sdk_url(tmp_path: Path) -> Iterator[str]:
    with action_server(FIXTURE_PACKAGE.name, FIXTURE_PACKAGE.parent, tmp_path / "sdk.log") as url:
        yield url


def settings(url: str) -> ActionsSettings:
    return ActionsSettings(
        remote_url=url,
        timeout_s=1.0,
        concurrency=4,
        remote_attempts=2,
        remote_backoff_s=0.05,
        http_enabled=False,
        health_host="127.0.0.1",
        health_port=0,
    )


async def test_remote_actions_worker_over_kafka(unique_prefix: str, sdk_url: str) -> None:
    kafka = bus_settings("kafka", unique_prefix)
    worker = RemoteActionsWorker(settings(sdk_url), KafkaBus(kafka))
    probe = KafkaBus(kafka)
    results, dead = Recorder(), Recorder()
    probe.subscribe(Subscription(Topic.DIALOGUE, "probe", results, ActionResult))
    probe.subscribe(Subscription(Topic.DEAD_LETTERS, "probe", dead, DeadLetter))
    stop = asyncio.Event()
    await worker.start()
    runner = asyncio.create_task(worker.run(stop))
    try:
        await probe.start()
        assert (await worker.health.readiness())["ready"]
        sent: list[ActionRequest] = [
            request("action_raise", message_id="m1", conversation="alice"),
            request("action_hang_async", message_id="m2", conversation="alice"),
            request("action_reject", message_id="m3", conversation="alice"),
            request("action_sync_hello", message_id="m4", conversation="alice"),
            request("action_missing", message_id="m5", conversation="bob"),
            request("action_remind_later", message_id="m6", conversation="bob"),
        ]
        for item in sent:
            await probe.publish(Topic.ACTIONS, item)
        await probe.publish(Topic.ACTIONS, request("", message_id="m7", conversation="bob"))
        await results.wait_for(len(sent), within=60)
        by_request = {r.request_id: r for r in results.items}
        assert {k: r.status for k, r in by_request.items()} == {
            "m1": "failed",
            "m2": "timeout",
            "m3": "rejected",
            "m4": "success",
            "m5": "not_found",
            "m6": "success",
        }
        alice = [r.request_id for r in results.items if r.conversation_id == "alice"]
        assert alice == ["m1", "m2", "m3", "m4"]  # one conversation, in order
        hello = by_request["m4"]
        assert hello.events == [SlotSet(name="greeted", value=True)]
        assert hello.responses[0]["text"] == "hello alice"
        assert hello.message_id == result_message_id("m4")
        assert hello.correlation_id == "corr-m4"
        assert by_request["m1"].error == "action server answered HTTP 500: the database is on fire"
        assert by_request["m3"].error == "not now, please"
        assert [e.event for e in by_request["m6"].events] == ["cancel_reminder", "reminder"]
        (letter,) = await dead.wait_for(1, within=60)
        assert letter.error_type == "MalformedRequest"
    finally:
        stop.set()
        await runner
        await probe.stop()


async def test_unreachable_action_server_gives_failed_results(unique_prefix: str) -> None:
    url = closed_port_url()
    kafka = bus_settings("kafka", unique_prefix)
    worker = RemoteActionsWorker(settings(url), KafkaBus(kafka))
    probe = KafkaBus(kafka)
    results = Recorder()
    probe.subscribe(Subscription(Topic.DIALOGUE, "probe", results, ActionResult))
    stop = asyncio.Event()
    await worker.start()
    runner = asyncio.create_task(worker.run(stop))
    try:
        await probe.start()
        assert not (await worker.health.readiness())["ready"]
        await probe.publish(Topic.ACTIONS, request("action_sync_hello", message_id="u1"))
        (result,) = await results.wait_for(1, within=60)
        assert result.status == "failed"
        assert result.request_id == "u1"
        assert result.error is not None
        assert "unreachable after 2 attempt(s)" in result.error
    finally:
        stop.set()
        await runner
        await probe.stop()


# -- formbot end to end: dialogue worker -> `parley worker actions --remote` -> rasa-sdk ------

FORMBOT = "examples/rasa/formbot"


@dataclass
class WorkerProcess:
    """`parley worker actions` as its own process; its log lines, awaitable."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            async with self.changed:
                self.lines.append(raw.decode(errors="replace").rstrip())
                self.changed.notify_all()

    async def logged(self, text: str, count: int = 1, within: float = 60) -> None:
        def seen() -> bool:
            return sum(text in line for line in self.lines) >= count

        async def reached() -> None:
            async with self.changed:
                await self.changed.wait_for(seen)

        try:
            await asyncio.wait_for(reached(), within)
        except TimeoutError:
            log = "\n".join(self.lines[-40:])
            raise AssertionError(f"{text!r} not logged {count}x within {within}s:\n{log}") from None


@pytest.fixture
def formbot_sdk_url(shared_dir: Path, tmp_path: Path) -> Iterator[str]:
    """Formbot's own action package (`actions`, with `validate_restaurant_form`) served by
    `python -m rasa_sdk --actions actions` in the bot's folder, as Rasa users run it."""
    with action_server("actions", shared_dir / FORMBOT, tmp_path / "sdk.log") as url:
        yield url


@pytest.fixture
async def remote_worker(formbot_sdk_url: str, unique_prefix: str) -> AsyncIterator[WorkerProcess]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap(),
        "PARLEY_TOPIC_PREFIX": unique_prefix,
        "PARLEY_SESSION_TIMEOUT_MS": "6000",
        "PARLEY_HEARTBEAT_INTERVAL_MS": "500",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "worker",
        "actions",
        "--remote",
        formbot_sdk_url,
        "--health-port",
        "0",
        "--timeout",
        "5",
        cwd=REPO,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    worker = WorkerProcess(process)
    worker.reader = asyncio.create_task(worker.read())
    try:
        await worker.logged(f"forwarding to {formbot_sdk_url}")
        yield worker
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
        await worker.reader


async def test_formbot_fills_its_form_through_the_remote_actions_worker(
    shared_dir: Path,
    unique_prefix: str,
    pg_url: str,  # noqa: F811 - the fixture
    remote_worker: WorkerProcess,
) -> None:
    """The dialogue worker asks for `validate_restaurant_form` on parley.actions; the remote
    actions worker (its own process) forwards each request to the rasa-sdk server over HTTP
    and publishes the results; the form asks, rejects "klingon", fills and submits."""
    project = load_project(shared_dir / FORMBOT)
    kafka = bus_settings("kafka", unique_prefix)
    store = StoreSettings(redis_url=REDIS_URL, database_url=pg_url, key_prefix=unique_prefix)
    dialogue = DialogueWorker(
        DialogueSettings(project=project.root, health_host="127.0.0.1", health_port=0),
        store,
        KafkaBus(kafka),
        project,
    )
    outbound = Outbound()
    probe = KafkaBus(kafka)
    probe.subscribe(Subscription(Topic.OUTBOUND, "probe", outbound, OutboundMessage))
    conversation = "remote-diner"
    script: list[tuple[ParsedUserMessage, list[str]]] = [
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
    await dialogue.start()
    try:
        await probe.start()
        for number, (message, expected) in enumerate(script, start=1):
            await probe.publish(Topic.DIALOGUE, message)
            await outbound.completed(conversation, number)
            answered = outbound.turn(conversation, message.message_id)
            assert answered == expected, f"turn {number} ({message.event.intent_name})"
        stored = await dialogue.hot.load(conversation)
        assert stored is not None
        assert await dialogue.archive.read(conversation) == stored.events
    finally:
        await probe.stop()
        await dialogue.stop()

    slots = {e["name"]: e["value"] for e in stored.events if e["event"] == "slot"}
    assert slots["cuisine"] == "italian"
    assert slots["num_people"] == "2"
    assert slots["outdoor_seating"] is True
    validations = [line for line in remote_worker.lines if "validate_restaurant_form" in line]
    # One validation per run of the form: its activation, cuisine twice (klingon, italian),
    # num_people, outdoor_seating, preferences and feedback; each answered by the server.
    assert len(validations) == 7, "\n".join(validations)
    assert all("success" in line for line in validations)
    assert all(conversation in line for line in validations), "correlated log lines"

    remote_worker.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(remote_worker.process.wait(), 30) == 0
