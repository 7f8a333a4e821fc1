"""Remote mode: forward action calls to an external rasa-sdk action server over HTTP.

`RemoteActionRunner.run` takes the same webhook body as `ActionRunner.run`, `POST`s it as JSON
to the server's webhook URL (`action_endpoint.url` of `endpoints.yml`) and maps the answer
(RASA_COMPAT §2.2-2.3) to an `Outcome`, so `ActionsService` publishes the same `ActionResult`
in either mode:

- 200 → `success` with the parsed events and responses; a body that is not valid Rasa events
  and responses → `failed`.
- 400 with `{"action_name", "error"}` → `rejected`; 404 → `not_found` with the server's error;
  any other status (500: the action raised) → `failed`.
- The server unreachable (connection refused or reset, connect timeout, 502/503 from a proxy in
  front of it): the request never reached the action, so it is retried with exponential backoff
  a bounded number of times (each failure a `RetryableError`), then → `failed`.
- No answer within `timeout_s` → `timeout`, not retried: the action may have run already.

Nothing raises but `MalformedRequest` (a call without an action name), as in local mode.

HTTP goes through aiohttp when it is installed, else through a small HTTP/1.1 client on
asyncio streams (no dependency either way).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Mapping
from importlib.util import find_spec
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from services.actions.executor import (
    MalformedRequest,
    Outcome,
    check_events,
    check_responses,
)
from services.common.errors import RetryableError

logger = logging.getLogger(__name__)

# Statuses of a proxy in front of the action server that say the call never reached it.
UNREACHABLE_STATUSES = frozenset({502, 503})
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
HEALTH_TIMEOUT_S = 2.0


class ServerUnreachable(RetryableError):
    """The request could not be delivered to the action server (it did not run the action)."""


class ResponseTimeout(Exception):
    """The action server took the request but did not answer in time."""


class TransportError(Exception):
    """The exchange broke after the request was sent (the action may have run)."""


class HttpTransport(Protocol):
    """Just enough HTTP for the action server: raises the three errors above, nothing else."""

    async def request(
        self, method: str, url: str, body: bytes | None, timeout_s: float, connect_timeout_s: float
    ) -> tuple[int, bytes]:
        """Send one request; the response's status and body."""

    async def aclose(self) -> None:
        """Release connections."""


def default_transport() -> HttpTransport:
    """aiohttp's client when installed, else the asyncio streams client."""
    if find_spec("aiohttp") is not None:
        return AiohttpTransport()
    return StreamsTransport()


class AiohttpTransport:
    """aiohttp with one pooled session, created on first use (inside the event loop)."""

    def __init__(self) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self, method: str, url: str, body: bytes | None, timeout_s: float, connect_timeout_s: float
    ) -> tuple[int, bytes]:
        aiohttp = self._aiohttp
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=timeout
            ) as response:
                return response.status, await response.read()
        except aiohttp.ConnectionTimeoutError as exc:  # before TimeoutError: it is one too
            raise ServerUnreachable(f"connect timeout after {connect_timeout_s:g}s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise ResponseTimeout(f"no answer within {timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class StreamsTransport:
    """A one-request-per-connection HTTP/1.1 client on asyncio streams."""

    async def request(
        self, method: str, url: str, body: bytes | None, timeout_s: float, connect_timeout_s: float
    ) -> tuple[int, bytes]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError(f"not an http(s) URL: {url!r}")
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    parts.hostname, port, ssl=ssl.create_default_context() if secure else None
                ),
                min(connect_timeout_s, timeout_s),
            )
        except TimeoutError as exc:
            raise ServerUnreachable(f"connect timeout after {connect_timeout_s:g}s") from exc
        except OSError as exc:
            raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from exc
        try:
            path = parts.path or "/"
            if parts.query:
                path = f"{path}?{parts.query}"
            host = parts.netloc.rsplit("@", 1)[-1]
            head = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
            if body is not None:
                head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
            try:
                return await asyncio.wait_for(
                    self._response(reader, writer), max(0.0, deadline - loop.time())
                )
            except TimeoutError as exc:
                raise ResponseTimeout(f"no answer within {timeout_s:g}s") from exc
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            except ValueError as exc:
                raise TransportError(f"bad HTTP response: {exc}") from exc
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _response(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[int, bytes]:
        await writer.drain()
        status_line = (await reader.readuntil(b"\r\n")).decode("latin-1").split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
            raise ValueError(f"status line {' '.join(status_line).strip()!r}")
        status = int(status_line[1])
        headers: dict[str, str] = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return status, await _chunked(reader)
        if "content-length" in headers:
            length = int(headers["content-length"])
            if length > MAX_RESPONSE_BYTES:
                raise ValueError(f"body of {length} bytes")
            return status, await reader.readexactly(length)
        return status, await reader.read(MAX_RESPONSE_BYTES)

    async def aclose(self) -> None:
        return None


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        if len(body) > MAX_RESPONSE_BYTES:
            raise ValueError(f"body over {MAX_RESPONSE_BYTES} bytes")
        await reader.readexactly(2)


def health_url(webhook_url: str) -> str:
    """The action server's `GET /health` beside its webhook (`.../webhook` → `.../health`)."""
    return urljoin(webhook_url, "health")


class RemoteActionRunner:
    """Runs actions on an external rasa-sdk server: `run(call) -> Outcome`, as `ActionRunner`."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        concurrency: int = 32,
        attempts: int = 3,
        backoff_s: float = 0.2,
        max_backoff_s: float = 2.0,
        connect_timeout_s: float = 3.0,
        transport: HttpTransport | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.url = url
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.connect_timeout_s = connect_timeout_s
        self.transport = transport or default_transport()
        self._slots = asyncio.Semaphore(concurrency)
        self._last_unreachable: str | None = None

    def delay(self, attempt: int) -> float:
        """Backoff after the given (1-based) failed attempt."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))

    async def run(self, call: Mapping[str, Any]) -> Outcome:
        """Forward a webhook body (`next_action`, `sender_id`, `tracker`, `domain`, `version`)."""
        name = call.get("next_action")
        if not isinstance(name, str) or not name:
            raise MalformedRequest(f"'next_action' must be a non-empty string, not {name!r}")
        try:
            body = json.dumps(dict(call), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise MalformedRequest(f"the action call is not JSON: {exc}") from exc
        async with self._slots:
            return await self._send(name, body)

    async def _send(self, name: str, body: bytes) -> Outcome:
        attempt = 1
        while True:
            try:
                status, answer = await self._post(body)
            except ServerUnreachable as exc:
                self._last_unreachable = str(exc)
                if attempt >= self.attempts:
                    logger.error(
                        "action '%s': action server %s unreachable after %d attempt(s): %s",
                        name,
                        self.url,
                        attempt,
                        exc,
                    )
                    return Outcome(
                        name,
                        "failed",
                        error=f"action server {self.url} unreachable after {attempt} "
                        f"attempt(s): {exc}",
                    )
                delay = exc.delay if exc.delay is not None else self.delay(attempt)
                logger.warning(
                    "action '%s': action server unreachable (attempt %d of %d), retrying in "
                    "%.2fs: %s",
                    name,
                    attempt,
                    self.attempts,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                attempt += 1
                continue
            except ResponseTimeout as exc:
                logger.error("action '%s': %s at %s", name, exc, self.url)
                return Outcome(name, "timeout", error=f"action '{name}' timed out: {exc}")
            except TransportError as exc:
                logger.error("action '%s': exchange with %s failed: %s", name, self.url, exc)
                return Outcome(name, "failed", error=f"action server {self.url}: {exc}")
            self._last_unreachable = None
            return outcome_of(name, status, answer)

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        status, answer = await self.transport.request(
            "POST", self.url, body, self.timeout_s, self.connect_timeout_s
        )
        if status in UNREACHABLE_STATUSES:
            raise ServerUnreachable(f"HTTP {status}: {_error_text(answer)}")
        return status, answer

    async def ready(self) -> tuple[bool, str]:
        """Readiness: the action server answers `GET /health` with 200."""
        url = health_url(self.url)
        try:
            status, _ = await self.transport.request(
                "GET", url, None, HEALTH_TIMEOUT_S, HEALTH_TIMEOUT_S
            )
        except (ServerUnreachable, ResponseTimeout, TransportError) as exc:
            return False, f"action server {url}: {exc}"
        if status != 200:
            return False, f"action server {url}: HTTP {status}"
        return True, f"action server {self.url}"

    async def aclose(self) -> None:
        await self.transport.aclose()


def outcome_of(name: str, status: int, answer: bytes) -> Outcome:
    """The outcome of an action server's answer (RASA_COMPAT §2.2-2.3)."""
    if status == 200:
        try:
            body = json.loads(answer) if answer.strip() else None
        except ValueError as exc:
            return _garbage(name, f"a body that is not JSON: {exc}")
        if body is None:  # the action returned nothing
            return Outcome(name, "success")
        if not isinstance(body, dict):
            return _garbage(name, f"a {type(body).__name__} instead of an object")
        try:
            raw_events, events = check_events(body.get("events"))
            responses = check_responses(_list(body.get("responses"), "responses"))
        except ValueError as exc:
            return _garbage(name, str(exc))
        return Outcome(name, "success", events, raw_events, responses)
    error = _error_text(answer)
    if status == 400:
        rejected = _json_object(answer).get("action_name")
        if isinstance(rejected, str):
            logger.info("action '%s' rejected execution: %s", name, error)
            return Outcome(name, "rejected", error=error, rejected_action=rejected)
    if status == 404:
        return Outcome(name, "not_found", error=error)
    logger.error("action '%s': action server answered HTTP %d: %s", name, status, error)
    return Outcome(name, "failed", error=f"action server answered HTTP {status}: {error}")


def _garbage(name: str, what: str) -> Outcome:
    logger.error("action '%s': the action server returned %s", name, what)
    return Outcome(name, "failed", error=f"action '{name}' returned {what}")


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{what} as {type(value).__name__} instead of a list")
    return value


def _json_object(answer: bytes) -> dict[str, Any]:
    try:
        body = json.loads(answer)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_text(answer: bytes) -> str:
    """The `error` of rasa-sdk's error body, else the start of the body."""
    error = _json_object(answer).get("error")
    if isinstance(error, str):
        return error
    text = answer[:500].decode("utf-8", "replace").strip()
    return text or "(empty body)"
