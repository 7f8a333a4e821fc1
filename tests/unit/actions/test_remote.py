"""Remote mode against a real `python -m rasa_sdk` process: every answer of the action server
(200, 400 rejection, 404, 500) becomes the right outcome, an unreachable server is retried a
bounded number of times and then reported as failed, a slow one as a timeout; both HTTP clients
(aiohttp and asyncio streams) behave the same."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.envelopes import ActionResult
from schemas.events import SlotSet
from services.actions.executor import MalformedRequest
from services.actions.remote import (
    AiohttpTransport,
    HttpTransport,
    RemoteActionRunner,
    StreamsTransport,
    health_url,
    outcome_of,
)
from services.actions.worker import ActionsService, result_message_id
from services.actions.worker_cli import ActionsSettings, RemoteActionsWorker, action_source
from services.common.memory_bus import MemoryBus
from tests.support.clock import FakeClock
from tests.unit.actions._action_server import action_server, closed_port_url
from tests.unit.actions._calls import FIXTURE_PACKAGE, call, request, tracker

TRANSPORTS: dict[str, Callable[[], HttpTransport]] = {
    "aiohttp": AiohttpTransport,
    "streams": StreamsTransport,
}


@pytest.fixture(scope="module")
def sdk_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fixture action package served by rasa-sdk."""
    log = tmp_path_factory.mktemp("sdk") / "rasa_sdk.log"
    with action_server(FIXTURE_PACKAGE.name, FIXTURE_PACKAGE.parent, log) as url:
        yield url


@pytest.fixture(scope="module")
def formbot_url(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Formbot's `actions` package served by rasa-sdk from the bot's folder."""
    log = tmp_path_factory.mktemp("formbot") / "rasa_sdk.log"
    with action_server("actions", shared_dir / "examples/rasa/formbot", log) as url:
        yield url


class Counting:
    """A transport that counts the requests it was asked to send."""

    def __init__(self, inner: HttpTransport) -> None:
        self.inner = inner
        self.requests = 0

    async def request(
        self, method: str, url: str, body: bytes | None, timeout_s: float, connect_timeout_s: float
    ) -> tuple[int, bytes]:
        self.requests += 1
        return await self.inner.request(method, url, body, timeout_s, connect_timeout_s)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(params=sorted(TRANSPORTS))
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Counting]:
    counting = Counting(TRANSPORTS[request.param]())
    yield counting
    await counting.aclose()


def remote(url: str, transport: HttpTransport, **options: Any) -> RemoteActionRunner:
    settings: dict[str, Any] = {"timeout_s": 10.0, "attempts": 3, "backoff_s": 0.01}
    return RemoteActionRunner(url, transport=transport, **(settings | options))


async def test_success_with_events_and_responses(sdk_url: str, transport: Counting) -> None:
    runner = remote(sdk_url, transport)
    sync = await runner.run(call("action_sync_hello", sender="ada"))
    assert sync.status == "success"
    assert sync.events == [SlotSet(name="greeted", value=True)]
    assert sync.responses[0]["text"] == "hello ada"
    assert sync.responses[0]["buttons"] == [{"title": "hi"}]
    assert sync.error is None
    async_ = await runner.run(call("action_async_hello", {"name": "Ada"}))
    assert async_.events == [SlotSet(name="greeted", value="async")]
    assert async_.responses[0]["response"] == "utter_greet"
    assert async_.responses[0]["name"] == "Ada"
    nothing = await runner.run(call("action_nothing"))
    assert (nothing.status, nothing.events, nothing.responses) == ("success", [], [])
    legacy = await runner.run(call("action_legacy_template"))
    assert [r["response"] for r in legacy.responses] == ["utter_old", "utter_new"]
    assert transport.requests == 4


async def test_rejected_not_found_and_failed(sdk_url: str, transport: Counting) -> None:
    runner = remote(sdk_url, transport)
    rejected = await runner.run(call("action_reject"))
    assert (rejected.status, rejected.error) == ("rejected", "not now, please")
    assert rejected.rejected_action == "action_reject"
    missing = await runner.run(call("action_missing"))
    assert missing.status == "not_found"
    assert missing.error == "No registered action found for name 'action_missing'."
    raised = await runner.run(call("action_raise"))  # rasa-sdk answers 500
    assert raised.status == "failed"
    assert raised.error == "action server answered HTTP 500: the database is on fire"
    assert raised.events == []
    assert raised.responses == []
    assert transport.requests == 3  # an answer is never retried


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("invalid_event", "an invalid event"),
        ("unknown_event", "an invalid event"),
        ("not_json", "HTTP 500"),
        ("bad_response", "HTTP 500"),
    ],
)
async def test_garbage_from_the_server_fails(sdk_url: str, kind: str, error: str) -> None:
    async with contextlib.aclosing(remote(sdk_url, AiohttpTransport())) as runner:
        outcome = await runner.run(call("action_garbage", {"kind": kind}))
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert error in outcome.error
    assert outcome.events == []


async def test_connection_refused_is_retried_then_failed(transport: Counting) -> None:
    url = closed_port_url()
    runner = remote(url, transport, attempts=3, backoff_s=0.05)
    started = asyncio.get_running_loop().time()
    outcome = await runner.run(call("action_sync_hello"))
    elapsed = asyncio.get_running_loop().time() - started
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error.startswith(f"action server {url} unreachable after 3 attempt(s): ")
    assert transport.requests == 3
    assert elapsed >= 0.05 + 0.1  # backoff between the attempts
    ready, detail = await runner.ready()
    assert not ready
    assert health_url(url) in detail


async def test_a_slow_action_times_out_without_a_retry(sdk_url: str, transport: Counting) -> None:
    runner = remote(sdk_url, transport, timeout_s=0.5)
    outcome = await runner.run(call("action_hang_async"))
    assert outcome.status == "timeout"
    assert outcome.error is not None
    assert "no answer within 0.5s" in outcome.error
    assert transport.requests == 1  # the action may have run: never sent twice


async def test_proxy_errors_are_retried_and_chunked_bodies_read(transport: Counting) -> None:
    """A proxy answering 503 while the server restarts, then a chunked 200."""
    answers = [b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"]
    body = json.dumps({"events": [{"event": "slot", "name": "a", "value": 1}], "responses": []})
    chunks = b"".join(
        f"{len(part):x}\r\n".encode() + part.encode() + b"\r\n" for part in (body[:7], body[7:])
    )
    answers.append(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length")
        )
        await reader.readexactly(length)
        writer.write(answers.pop(0))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        runner = remote(f"http://127.0.0.1:{port}/webhook", transport)
        outcome = await runner.run(call("action_x"))
    finally:
        server.close()
        await server.wait_closed()
    assert outcome.status == "success"
    assert outcome.events == [SlotSet(name="a", value=1)]
    assert transport.requests == 2


async def test_formbot_form_validation(formbot_url: str, shared_dir: Path) -> None:
    domain = yaml.safe_load((shared_dir / "examples/rasa/formbot/domain.yml").read_text())

    def validation(cuisine: str) -> dict[str, Any]:
        state = tracker(
            "bob",
            {"cuisine": cuisine, "requested_slot": "cuisine"},
            active_loop={"name": "restaurant_form"},
            events=[
                {"event": "action", "name": "action_listen"},
                {"event": "user", "text": cuisine, "parse_data": {}},
                {"event": "slot", "name": "cuisine", "value": cuisine},
            ],
        )
        return {
            "next_action": "validate_restaurant_form",
            "sender_id": "bob",
            "tracker": state,
            "domain": domain,
            "version": "3.6.21",
        }

    async with contextlib.aclosing(remote(formbot_url, StreamsTransport())) as runner:
        good = await runner.run(validation("greek"))
        bad = await runner.run(validation("klingon"))
        missing = await runner.run(call("action_sync_hello"))
    assert good.status == "success"
    assert SlotSet(name="cuisine", value="greek") in good.events
    assert good.responses == []
    assert bad.status == "success"
    assert SlotSet(name="cuisine", value=None) in bad.events
    assert [r["response"] for r in bad.responses] == ["utter_wrong_cuisine"]
    assert missing.status == "not_found"


async def test_service_publishes_results_with_stable_ids(sdk_url: str) -> None:
    async with contextlib.aclosing(remote(sdk_url, AiohttpTransport())) as runner:
        service = ActionsService(runner, FakeClock())
        (publication,) = await service.handle(request("action_sync_hello", message_id="q1"))
        (again,) = await service.handle(request("action_sync_hello", message_id="q1"))
        (rejected,) = await service.handle(request("action_reject", message_id="q2"))
        with pytest.raises(MalformedRequest):
            await service.handle(request("", message_id="q3"))
    result, repeated, refused = publication.message, again.message, rejected.message
    assert isinstance(result, ActionResult)
    assert isinstance(repeated, ActionResult)
    assert isinstance(refused, ActionResult)
    assert result.model_dump() == repeated.model_dump()
    assert result.message_id == result_message_id("q1")
    assert (result.request_id, result.correlation_id) == ("q1", "corr-q1")
    assert (result.status, result.action_name) == ("success", "action_sync_hello")
    assert (refused.status, refused.error) == ("rejected", "not now, please")


async def test_remote_worker_health_follows_the_action_server(sdk_url: str) -> None:
    settings = ActionsSettings(
        remote_url=sdk_url, health_host="127.0.0.1", health_port=0, http_enabled=False
    )
    worker = RemoteActionsWorker(settings, MemoryBus(clock=FakeClock()))
    await worker.start()
    try:
        readiness = await worker.health.readiness()
        assert readiness["ready"], readiness
    finally:
        await worker.stop()
    down = RemoteActionsWorker(
        settings.model_copy(update={"remote_url": closed_port_url()}),
        MemoryBus(clock=FakeClock()),
    )
    await down.start()
    try:
        readiness = await down.health.readiness()
        assert not readiness["ready"]
        assert not readiness["checks"]["actions"]["ok"]
    finally:
        await down.stop()


def test_outcome_of_odd_bodies() -> None:
    assert outcome_of("a", 200, b"").status == "success"
    assert outcome_of("a", 200, b"null").status == "success"
    assert outcome_of("a", 200, b"[1]").error == "action 'a' returned a list instead of an object"
    assert outcome_of("a", 200, b'{"events": 3}').status == "failed"
    assert outcome_of("a", 200, b'{"responses": {"a": 1}}').status == "failed"
    assert outcome_of("a", 200, b"<html>").status == "failed"
    invalid = outcome_of("a", 400, b'{"error": "Invalid body request"}')
    assert (invalid.status, invalid.error) == (
        "failed",
        "action server answered HTTP 400: Invalid body request",
    )
    assert outcome_of("a", 449, b'{"error": "no domain", "action_name": "a"}').status == "failed"
    assert outcome_of("a", 404, b"").error == "(empty body)"


def test_action_source_from_options_and_project(shared_dir: Path) -> None:
    formbot = shared_dir / "examples/rasa/formbot"
    assert action_source("http://x:1/webhook", None, None) == ("http://x:1/webhook", None)
    assert action_source(None, None, "pkg") == (None, "pkg")
    assert action_source(None, formbot, None) == ("http://localhost:5055/webhook", None)
    assert health_url("http://localhost:5055/webhook") == "http://localhost:5055/health"
