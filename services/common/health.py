"""Health endpoints every worker serves: `GET /health/live`, `GET /health/ready` and
`GET /metrics`.

A tiny asyncio HTTP/1.1 server (stdlib only), for Kubernetes probes and for tests:

- `/health/live`: 200 while the process's event loop answers;
- `/health/ready`: 200 when every readiness check passes, else 503; the body lists each
  check (`{"ready": false, "checks": {"triton": {"ok": false, "detail": "..."}}}`);
- `/metrics`: the process's Prometheus metrics (`services.common.metrics`) in the text format.

A check is an async callable returning `(ok, detail)`; it must be quick (it runs per probe,
with a timeout).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from services.common.metrics import exposition

logger = logging.getLogger(__name__)

Check = Callable[[], Awaitable[tuple[bool, str]]]
CHECK_TIMEOUT_S = 2.0


class HealthServer:
    """Serves the health endpoints on `host:port` (port 0: any free port, see `.port`)."""

    def __init__(
        self, host: str = "0.0.0.0", port: int = 0, registry: CollectorRegistry = REGISTRY
    ) -> None:
        self.host = host
        self.port = port
        self.registry = registry
        self._checks: dict[str, Check] = {}
        self._server: asyncio.Server | None = None

    def add_check(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def readiness(self) -> dict[str, Any]:
        """Run every check; `{"ready": bool, "checks": {name: {"ok", "detail"}}}`."""
        results: dict[str, Any] = {}
        for name, check in self._checks.items():
            try:
                ok, detail = await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            except TimeoutError:
                ok, detail = False, f"no answer in {CHECK_TIMEOUT_S:g}s"
            except Exception as exc:  # noqa: BLE001 - a failing check is "not ready", not a crash
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            results[name] = {"ok": ok, "detail": detail}
        return {"ready": all(r["ok"] for r in results.values()), "checks": results}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info(
            "health endpoints on http://%s:%d/health/{live,ready} and /metrics",
            self.host,
            self.port,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _respond(self, method: str, path: str) -> tuple[int, bytes, str]:
        body: dict[str, Any]
        if method != "GET":
            status, body = 405, {"error": "only GET"}
        elif path == "/health/live":
            status, body = 200, {"live": True}
        elif path == "/health/ready":
            body = await self.readiness()
            status = 200 if body["ready"] else 503
        elif path.split("?", 1)[0] == "/metrics":
            return (200, *exposition(self.registry))
        else:
            status, body = 404, {"error": f"no such endpoint {path}"}
        return status, json.dumps(body).encode(), "application/json"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            parts = request.split(b"\r\n", 1)[0].decode("latin-1").split()
            method, path = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
            status, payload, content_type = await self._respond(method, path)
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}.get(
                status, "Service Unavailable"
            )
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
