"""The actions worker on the memory bus: a result for every readable request, dead letters for
the rest, idempotent result ids, and the whole worker (package, webhook, health) wired."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path

import pytest

from schemas.envelopes import ActionRequest, ActionResult, DeadLetter
from schemas.events import SlotSet
from schemas.topics import Topic
from services.actions.executor import ActionRunner
from services.actions.registry import ActionRegistry
from services.actions.worker import ActionsService, result_message_id
from services.actions.worker_cli import GROUP, ActionsSettings, ActionsWorker, add_worker_actions
from services.common.bus import Subscription
from services.common.memory_bus import MemoryBus
from services.common.settings import BusSettings
from tests.support.clock import FakeClock
from tests.support.recorder import Recorder
from tests.unit.actions._calls import FIXTURE_PACKAGE, fixture_module, request
from tests.unit.actions.conftest import LoadPackage

CLOCK = FakeClock()


async def test_requests_become_results_and_bad_input_dead_letters(
    registry: ActionRegistry,
) -> None:
    runner = ActionRunner(registry, timeout_s=0.2, concurrency=4)
    service = ActionsService(runner, CLOCK)
    bus = MemoryBus(clock=CLOCK)
    results, dead = Recorder(), Recorder()
    bus.subscribe(Subscription(Topic.ACTIONS, GROUP, service.handle, ActionRequest, 4))
    bus.subscribe(Subscription(Topic.DIALOGUE, "probe", results, ActionResult))
    bus.subscribe(Subscription(Topic.DEAD_LETTERS, "probe", dead, DeadLetter))
    inputs = [
        request("action_raise", message_id="r1", conversation="a"),
        request("action_hang_async", message_id="r2", conversation="a"),
        request("action_reject", message_id="r3", conversation="a"),
        request("action_missing", message_id="r4", conversation="a"),
        request("action_garbage", {"kind": "not_a_list"}, message_id="r5", conversation="a"),
        request("action_sync_hello", message_id="r6", conversation="a"),
    ]
    try:
        async with bus:
            for item in inputs:
                await bus.publish(Topic.ACTIONS, item)
            await bus.publish_bytes(Topic.ACTIONS, b"a", b"\x00 not json")
            await bus.publish(Topic.ACTIONS, request("", message_id="r7", conversation="a"))
            await bus.drain()
    finally:
        runner.close()
    by_request = {r.request_id: r for r in results.items}
    assert [by_request[f"r{i}"].status for i in range(1, 7)] == [
        "failed",
        "timeout",
        "rejected",
        "not_found",
        "failed",
        "success",
    ]
    ok = by_request["r6"]
    assert ok.message_id == result_message_id("r6")
    assert ok.correlation_id == "corr-r6"
    assert ok.conversation_id == "a"
    assert ok.action_name == "action_sync_hello"
    assert ok.events == [SlotSet(name="greeted", value=True)]
    assert ok.responses[0]["text"] == "hello a"
    assert by_request["r1"].error == "ValueError: the database is on fire"
    assert by_request["r3"].error == "not now, please"
    assert "undecodable" in dead.items[0].reason
    assert dead.items[1].reason == "'next_action' must be a non-empty string, not ''"
    assert dead.items[1].error_type == "MalformedRequest"
    assert len(results.items) == 6


def test_result_ids_are_stable_per_request() -> None:
    assert result_message_id("r1") == result_message_id("r1")
    assert result_message_id("r1") != result_message_id("r2")
    assert len(result_message_id("x" * 128)) == 32


async def test_the_worker_serves_kafka_webhook_and_health_together(
    load_package: LoadPackage,
) -> None:
    load_package(str(FIXTURE_PACKAGE))  # cleans the package's modules up afterwards
    settings = ActionsSettings(
        package=str(FIXTURE_PACKAGE),
        timeout_s=2.0,
        concurrency=4,
        http_host="127.0.0.1",
        http_port=0,
        health_host="127.0.0.1",
        health_port=0,
        auto_reload=True,
        reload_interval_s=0.05,
    )
    bus = MemoryBus(clock=CLOCK)
    results = Recorder()
    bus.subscribe(Subscription(Topic.DIALOGUE, "probe", results, ActionResult))
    worker = ActionsWorker(settings, bus, CLOCK)
    stop = asyncio.Event()
    await worker.start()
    runner = asyncio.create_task(worker.run(stop))
    try:
        assert (await worker.health.readiness())["ready"]
        # A sync action blocked in its thread holds neither the bus nor the webhook.
        slow = fixture_module("slow")
        await bus.publish(
            Topic.ACTIONS, request("action_block_sync", {"key": "w"}, message_id="slow")
        )
        await bus.publish(Topic.ACTIONS, request("action_async_hello", conversation="other"))
        (first,) = await results.wait_for(1)
        assert first.action_name == "action_async_hello"
        assert worker.http is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", worker.http.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"status": "ok"}
        slow.RELEASE["w"].set()
        second = (await results.wait_for(2))[1]
        assert (second.request_id, second.status) == ("slow", "success")
    finally:
        stop.set()
        await runner
    assert not worker.consuming


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_ACTIONS_PACKAGE", "my_actions")
    monkeypatch.setenv("PARLEY_ACTIONS_TIMEOUT_S", "2.5")
    monkeypatch.setenv("PARLEY_ACTIONS_CONCURRENCY", "3")
    monkeypatch.setenv("PARLEY_ACTIONS_AUTO_RELOAD", "true")
    settings = ActionsSettings()
    assert (settings.package, settings.timeout_s, settings.concurrency) == ("my_actions", 2.5, 3)
    assert settings.auto_reload
    assert (settings.http_port, ActionsSettings.model_fields["timeout_s"].default) == (5055, 10.0)


def test_cli_options_override_settings() -> None:
    parser = argparse.ArgumentParser()
    add_worker_actions(parser.add_subparsers(dest="worker"))
    args = parser.parse_args(
        ["actions", "--actions", "bot.actions", "--auto-reload", "--http-port", "6000"]
    )
    assert (args.actions, args.auto_reload, args.http_port) == ("bot.actions", True, 6000)
    assert args.func.__name__ == "run_worker_actions"


def test_a_broken_package_stops_the_worker_at_start_up_with_exit_code_2(
    tmp_path: Path, load_package: LoadPackage, caplog: pytest.LogCaptureFixture
) -> None:
    package = tmp_path / "cli_broken_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "actions.py").write_text("x = (\n")
    load_package(str(package))  # cleanup only
    parser = argparse.ArgumentParser()
    add_worker_actions(parser.add_subparsers(dest="worker"))
    args = parser.parse_args(
        ["actions", "--actions", str(package), "--http-port", "0", "--health-port", "0"]
    )
    with caplog.at_level(logging.ERROR):
        assert args.func(args, BusSettings(kafka_bootstrap_servers="127.0.0.1:1")) == 2
    (record,) = [r for r in caplog.records if r.name == "services.actions.worker_cli"]
    assert f"{package / 'actions.py'}:1" in record.getMessage()
    assert "SyntaxError" in record.getMessage()
