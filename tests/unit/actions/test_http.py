"""Rasa's action server protocol against the real server on a free port: rasa-sdk's bodies and
status codes, compressed bodies, keep-alive and chunked requests."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.actions.executor import ActionRunner
from services.actions.http import WebhookApp, WebhookServer
from tests.unit.actions._calls import call


@pytest.fixture
async def server(runner: ActionRunner) -> AsyncIterator[WebhookServer]:
    served = WebhookServer(WebhookApp(runner), "127.0.0.1", 0)
    await served.start()
    yield served
    await served.stop()


class Client:
    """One HTTP/1.1 connection, for as many requests as the test sends on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        head = {"Host": "localhost", **(headers or {})}
        if "Transfer-Encoding" not in head:
            head["Content-Length"] = str(len(body))
        lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
        self.writer.write(f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode() + body)
        await self.writer.drain()
        status_line, *header_lines = (
            (await self.reader.readuntil(b"\r\n\r\n")).decode().strip().split("\r\n")
        )
        answer = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
        payload = await self.reader.readexactly(int(answer["content-length"]))
        return int(status_line.split()[1]), answer, json.loads(payload)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def client(server: WebhookServer) -> AsyncIterator[Client]:
    connection = Client(*await asyncio.open_connection("127.0.0.1", server.port))
    yield connection
    await connection.close()


def as_json(body: Any) -> bytes:
    return json.dumps(body).encode()


async def test_webhook_answers_with_events_and_responses(client: Client) -> None:
    status, headers, body = await client.send(
        "POST", "/webhook", as_json(call("action_sync_hello", sender="ada"))
    )
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert body == {
        "events": [{"event": "slot", "timestamp": None, "name": "greeted", "value": True}],
        "responses": [
            {
                "text": "hello ada",
                "buttons": [{"title": "hi"}],
                "elements": [],
                "custom": {},
                "template": None,
                "response": None,
                "image": None,
                "attachment": None,
            }
        ],
    }
    # The same connection serves the next request (keep-alive, as Rasa's aiohttp session).
    status, _, body = await client.send("POST", "/webhook", as_json(call("action_nothing")))
    assert (status, body) == (200, {"events": [], "responses": []})


async def test_rasa_sdk_error_bodies(client: Client) -> None:
    rejected = await client.send("POST", "/webhook", as_json(call("action_reject")))
    assert rejected[0] == 400
    assert rejected[2] == {"error": "not now, please", "action_name": "action_reject"}
    missing = await client.send("POST", "/webhook", as_json(call("action_missing")))
    assert missing[0] == 404
    assert missing[2] == {
        "error": "No registered action found for name 'action_missing'.",
        "action_name": "action_missing",
    }
    body = call("action_raise")
    failed = await client.send("POST", "/webhook", as_json(body))
    assert failed[0] == 500
    assert failed[2] == {"error": "ValueError: the database is on fire", "request_body": body}
    garbage = await client.send("POST", "/webhook", as_json(call("action_garbage")))
    assert garbage[0] == 200  # dicts without "event" are dropped, as rasa-sdk does
    no_tracker = {k: v for k, v in body.items() if k != "tracker"}
    malformed = await client.send("POST", "/webhook", as_json(no_tracker))
    assert malformed[0] == 500
    assert malformed[2]["request_body"] == no_tracker
    for bad in (b"", b"{not json", b"[1, 2]"):
        assert (await client.send("POST", "/webhook", bad))[:3:2] == (
            400,
            {"error": "Invalid body request"},
        )
    no_action = await client.send("POST", "/webhook", as_json({"tracker": {}}))
    assert no_action[::2] == (200, None)


async def test_compressed_bodies_are_accepted(client: Client) -> None:
    body = as_json(call("action_async_hello"))
    for encoding, data in (
        ("deflate", zlib.compress(body)),  # as Rasa's COMPRESS_ACTION_SERVER_REQUEST sends it
        ("deflate", _raw_deflate(body)),  # raw deflate, as some clients send it
        ("gzip", gzip.compress(body)),
    ):
        status, _, answer = await client.send(
            "POST", "/webhook", data, {"Content-Encoding": encoding}
        )
        assert status == 200, answer
        assert answer["events"][0]["value"] == "async"
    status, _, answer = await client.send(
        "POST", "/webhook", b"\x00garbage", {"Content-Encoding": "deflate"}
    )
    assert (status, answer) == (400, {"error": "Invalid body request"})


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


async def test_chunked_bodies_and_expect_continue(client: Client) -> None:
    body = as_json(call("action_sync_hello"))
    chunked = (
        b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:]))
        + b"0\r\n\r\n"
    )
    status, _, answer = await client.send(
        "POST", "/webhook", chunked, {"Transfer-Encoding": "chunked"}
    )
    assert status == 200
    assert answer["events"][0]["name"] == "greeted"
    client.writer.write(
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    assert await client.reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.writer.write(body)
    head = await client.reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")


async def test_health_actions_and_unknown_routes(client: Client, runner: ActionRunner) -> None:
    assert (await client.send("GET", "/health"))[::2] == (200, {"status": "ok"})
    status, _, actions = await client.send("GET", "/actions")
    assert status == 200
    assert actions == [{"name": name} for name in runner.registry.names()]
    assert {"name": "validate_repair_form"} in actions
    assert (await client.send("GET", "/nope"))[0] == 404
    assert (await client.send("GET", "/webhook"))[0] == 405


async def test_domain_digest_as_rasa_pro_sends_it(client: Client) -> None:
    body = call("action_sync_hello")
    without_domain = {k: v for k, v in body.items() if k != "domain"}
    status, _, answer = await client.send(
        "POST", "/webhook", as_json({**without_domain, "domain_digest": "d1"})
    )
    assert status == 449
    assert answer["action_name"] == "action_sync_hello"
    await client.send("POST", "/webhook", as_json({**body, "domain_digest": "d1"}))
    status, _, _ = await client.send(
        "POST", "/webhook", as_json({**without_domain, "domain_digest": "d1"})
    )
    assert status == 200


async def test_connection_close_and_stop_with_an_idle_connection(server: WebhookServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /health HTTP/1.0\r\n\r\n")
    answer = await reader.read()  # HTTP/1.0 without keep-alive: the server closes
    assert b'{"status":"ok"}' in answer
    writer.close()
    await writer.wait_closed()
    idle = Client(*await asyncio.open_connection("127.0.0.1", server.port))
    assert (await idle.send("GET", "/health"))[0] == 200
    await server.stop()  # closes the idle keep-alive connection instead of waiting for it
    assert await idle.reader.read() == b""
    await idle.close()
