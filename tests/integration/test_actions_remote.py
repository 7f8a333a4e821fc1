"""Remote mode over the real Kafka: requests on parley.actions forwarded by the actions worker
to a real `python -m rasa_sdk` process, results on parley.dialogue; a conversation's results
stay in order, and an action server that is gone gives `failed` results, not a stuck worker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.envelopes import ActionRequest, ActionResult, DeadLetter
from schemas.events import SlotSet
from schemas.topics import Topic
from services.actions.worker import result_message_id
from services.actions.worker_cli import ActionsSettings, RemoteActionsWorker
from services.common.bus import Subscription
from services.common.kafka_bus import KafkaBus
from tests.support.buses import bus_settings
from tests.support.recorder import Recorder
from tests.unit.actions._action_server import action_server, closed_port_url
from tests.unit.actions._calls import FIXTURE_PACKAGE, request

pytestmark = pytest.mark.integration


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
