"""The actions worker over the real Kafka: requests on parley.actions, results on
parley.dialogue; undecodable bytes dead-lettered with the reason; a raising or hanging action
answers with a failure or a timeout and later requests of the same conversation still run."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import pytest

from schemas.envelopes import ActionRequest, ActionResult, DeadLetter
from schemas.events import SlotSet
from schemas.topics import Topic
from services.actions.worker import result_message_id
from services.actions.worker_cli import ActionsSettings, ActionsWorker
from services.common.bus import Subscription
from services.common.kafka_bus import KafkaBus
from tests.support.buses import bus_settings
from tests.support.recorder import Recorder
from tests.unit.actions._calls import FIXTURE_PACKAGE, fixture_module, request

pytestmark = pytest.mark.integration


@pytest.fixture
def clean_imports() -> Iterator[None]:
    saved_path = list(sys.path)
    yield
    sys.path[:] = saved_path
    for name in [n for n in sys.modules if n.split(".")[0] == FIXTURE_PACKAGE.name]:
        del sys.modules[name]


async def test_actions_worker_over_kafka_survives_raising_and_hanging_actions(
    unique_prefix: str, clean_imports: None
) -> None:
    settings = ActionsSettings(
        package=str(FIXTURE_PACKAGE),
        timeout_s=0.5,
        concurrency=4,
        http_enabled=False,
        health_host="127.0.0.1",
        health_port=0,
    )
    kafka = bus_settings("kafka", unique_prefix)
    worker = ActionsWorker(settings, KafkaBus(kafka))
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
            request("action_raise", message_id="k1", conversation="alice"),
            request("action_block_sync", {"key": "kafka"}, message_id="k2", conversation="alice"),
            request("action_hang_async", message_id="k3", conversation="alice"),
            request("action_sync_hello", message_id="k4", conversation="alice"),
            request("action_remind_later", message_id="k5", conversation="bob"),
        ]
        for item in sent:
            await probe.publish(Topic.ACTIONS, item)
        await probe.publish_bytes(Topic.ACTIONS, b"alice", b'{"kind": "action_request"')
        await results.wait_for(len(sent), within=60)
        by_request = {r.request_id: r for r in results.items}
        assert {k: r.status for k, r in by_request.items()} == {
            "k1": "failed",
            "k2": "timeout",
            "k3": "timeout",
            "k4": "success",
            "k5": "success",
        }
        alice = [r.request_id for r in results.items if r.conversation_id == "alice"]
        assert alice == ["k1", "k2", "k3", "k4"]  # one conversation, in order
        hello = by_request["k4"]
        assert hello.events == [SlotSet(name="greeted", value=True)]
        assert hello.message_id == result_message_id("k4")
        assert hello.correlation_id == "corr-k4"
        assert by_request["k1"].error == "ValueError: the database is on fire"
        assert [e.event for e in by_request["k5"].events] == ["cancel_reminder", "reminder"]
        (letter,) = await dead.wait_for(1, within=60)
        assert "undecodable" in letter.reason
        assert letter.source_topic == f"{unique_prefix}.actions"
        assert letter.consumer_group == "parley-actions"
    finally:
        fixture_module("slow").RELEASE["kafka"].set()
        stop.set()
        await runner
        await probe.stop()
