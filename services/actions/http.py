"""Rasa's action server protocol over HTTP, so a stock Rasa can call the actions worker.

`POST /webhook` answers with rasa-sdk's bodies (RASA_COMPAT §2.2-2.3): 200
`{"events": [...], "responses": [...]}`; 400 `{"error", "action_name"}` on rejection and
`{"error": "Invalid body request"}` without a body; 404 `{"error": "No registered action found
for name '<x>'.", "action_name"}`; 449 when the domain is missing and its digest unknown; 500
`{"error", "request_body"}` on failure (a timeout included). Bodies may be deflate- or
gzip-compressed (`Content-Encoding`). `GET /health` → `{"status": "ok"}`, `GET /actions` →
`[{"name": ...}]`.

A small HTTP/1.1 server on asyncio streams (keep-alive, `Content-Length` or chunked bodies),
running on the worker's own event loop beside the Kafka consumer and sharing its runner, so the
timeout and concurrency limit hold for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.actions.executor import ActionRunner, MalformedRequest

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024 * 1024
KEEP_ALIVE_S = 120.0  # rasa-sdk's DEFAULT_KEEP_ALIVE_TIMEOUT
HEADER_TIMEOUT_S = 10.0
REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    449: "Retry With",
    500: "Internal Server Error",
}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any


class WebhookApp:
    """The endpoints, from a parsed request to a reply; no sockets (tests call it directly)."""

    def __init__(self, runner: ActionRunner) -> None:
        self.runner = runner
        self._domain: dict[str, Any] | None = None
        self._domain_digest: str | None = None

    async def __call__(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        path = path.split("?", 1)[0]
        routes = {"/webhook": "POST", "/health": "GET", "/actions": "GET"}
        if path not in routes:
            return Reply(404, {"error": f"Requested URL {path} not found"})
        if method != routes[path] and not (method == "HEAD" and routes[path] == "GET"):
            return Reply(405, {"error": f"Method {method} not allowed for URL {path}"})
        if path == "/health":
            return Reply(200, {"status": "ok"})
        if path == "/actions":
            return Reply(200, [{"name": name} for name in self.runner.registry.names()])
        return await self.webhook(headers, body)

    async def webhook(self, headers: Mapping[str, str], body: bytes) -> Reply:
        try:
            call = json.loads(_decompress(body, headers.get("content-encoding", "")) or b"null")
        except (ValueError, zlib.error) as exc:
            logger.warning("webhook: unreadable body: %s", exc)
            return Reply(400, {"error": "Invalid body request"})
        if not isinstance(call, dict):
            return Reply(400, {"error": "Invalid body request"})
        if not call.get("next_action"):
            logger.warning("Received an action call without an action.")
            return Reply(200, None)
        name = call["next_action"]
        domain = self._domain_of(call)
        if domain is None:
            message = f"Domain context is missing. Please send the domain with the action '{name}'."
            return Reply(449, {"error": message, "action_name": name})
        try:
            outcome = await self.runner.run({**call, "domain": domain})
        except MalformedRequest as exc:
            logger.error("webhook: malformed action call: %s", exc)
            return Reply(500, {"error": str(exc), "request_body": call})
        if outcome.status == "success":
            return Reply(200, {"events": outcome.raw_events, "responses": outcome.responses})
        if outcome.status == "rejected":
            rejected = outcome.rejected_action or name
            return Reply(400, {"error": outcome.error, "action_name": rejected})
        if outcome.status == "not_found":
            message = f"No registered action found for name '{name}'."
            return Reply(404, {"error": message, "action_name": name})
        return Reply(500, {"error": outcome.error, "request_body": call})

    def _domain_of(self, call: Mapping[str, Any]) -> dict[str, Any] | None:
        # rasa-sdk >= 3.9: Rasa Pro may send only a digest of a domain it sent before.
        domain, digest = call.get("domain"), call.get("domain_digest")
        if isinstance(domain, dict):
            if domain:
                self._domain, self._domain_digest = domain, digest
            return domain
        if self._domain is not None and digest and digest == self._domain_digest:
            return self._domain
        return None


class WebhookServer:
    """Serves a `WebhookApp` on `host:port` (port 0: any free port, see `.port`)."""

    def __init__(self, app: WebhookApp, host: str = "0.0.0.0", port: int = 5055) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._idle: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._busy: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("action server (Rasa webhook) on http://%s:%d/webhook", self.host, self.port)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop listening, close idle connections, let requests in progress finish."""
        if self._server is None:
            return
        self._server.close()
        for writer in self._idle.values():
            writer.close()
        tasks = set(self._idle) | self._busy
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            while True:
                self._idle[task] = writer
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), KEEP_ALIVE_S)
                finally:
                    self._idle.pop(task, None)
                self._busy.add(task)
                try:
                    keep_alive = await self._exchange(head, reader, writer)
                finally:
                    self._busy.discard(task)
                if not keep_alive:
                    break
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _exchange(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3:
            await _respond(writer, Reply(400, {"error": "malformed request line"}), False)
            return False
        method, path, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        try:
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await asyncio.wait_for(_read_body(headers, reader), KEEP_ALIVE_S)
        except HttpError as exc:
            await _respond(writer, Reply(exc.status, {"error": str(exc)}), False)
            return False
        try:
            reply = await self.app(method, path, headers, body)
        except Exception as exc:  # answer 500 like rasa-sdk's Sanic handler, never drop the socket
            logger.exception("webhook: %s %s failed", method, path)
            reply = Reply(500, {"error": str(exc), "request_body": None})
        await _respond(writer, reply, keep_alive, head_only=method == "HEAD")
        return keep_alive


async def _read_body(headers: Mapping[str, str], reader: asyncio.StreamReader) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        size = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                length = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HttpError(400, "malformed chunk size") from None
            size += length
            if size > MAX_BODY_BYTES:
                raise HttpError(413, f"body over {MAX_BODY_BYTES} bytes")
            if length == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(await reader.readexactly(length))
            await reader.readexactly(2)
    raw_length = headers.get("content-length")
    if raw_length is None:
        return b""
    try:
        length = int(raw_length)
    except ValueError:
        raise HttpError(400, "malformed Content-Length") from None
    if length < 0:
        raise HttpError(400, "malformed Content-Length")
    if length > MAX_BODY_BYTES:
        raise HttpError(413, f"body over {MAX_BODY_BYTES} bytes")
    return await reader.readexactly(length)


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return _inflate(body, zlib.MAX_WBITS | 16)
    if encoding == "deflate":  # zlib-wrapped, as Rasa sends it; raw deflate from some clients
        try:
            return _inflate(body, zlib.MAX_WBITS)
        except zlib.error:
            return _inflate(body, -zlib.MAX_WBITS)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


def _inflate(body: bytes, wbits: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    data = inflater.decompress(body, MAX_BODY_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"decompressed body over {MAX_BODY_BYTES} bytes")
    return data


async def _respond(
    writer: asyncio.StreamWriter, reply: Reply, keep_alive: bool, *, head_only: bool = False
) -> None:
    payload = json.dumps(reply.body, separators=(",", ":")).encode()
    reason = REASONS.get(reply.status, "Error")
    head = (
        f"HTTP/1.1 {reply.status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    writer.write(head.encode() + (b"" if head_only else payload))
    await writer.drain()
