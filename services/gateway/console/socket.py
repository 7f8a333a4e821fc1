"""The console's websocket (`/console/ws`), JSON frames.

- client → `{"type": "auth", "token": "<jwt>"}` first (never in the URL: URLs end up in access
  logs), within `AUTH_TIMEOUT_S`; a bad or missing token closes the socket (1008);
- server → `{"type": "queue", "now", "items"}`, the whole queue, then live
  `{"type": "queue_item", "item"}` and `{"type": "queue_removed", "conversation_id"}`;
- client → `{"type": "watch", "conversation_id"}` (the conversation on screen; replaces the
  previous one) → `{"type": "transcript", "conversation_id", "handoff", "transcript"}`, then
  live `{"type": "event", "conversation_id", "entry"}` and `{"type": "delivered",
  "conversation_id", "source", "texts"}` (messages that went out to the user);
- client → `{"type": "ping"}` → `{"type": "pong"}`; a bad frame → `{"type": "error"}`;
- when the token expires the server sends an error and closes the socket (1008).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import jwt
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from services.gateway.auth import AuthError, Principal
from services.gateway.console.live import Console, Viewer
from services.gateway.console.transcript import transcript
from services.gateway.deps import GatewayDeps

logger = logging.getLogger(__name__)
AUTH_TIMEOUT_S = 10.0
POLICY_VIOLATION = 1008


async def _refuse(ws: WebSocket, exc: AuthError) -> None:
    await ws.send_json({"type": "error", "reason": exc.reason, "message": str(exc)})
    await ws.close(code=POLICY_VIOLATION)


def _expiry(token: str) -> float | None:
    """When an (already verified) JWT expires; None for the operator's static token."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None


async def _authenticate(ws: WebSocket, deps: GatewayDeps) -> tuple[Principal, float | None] | None:
    try:
        hello = await asyncio.wait_for(ws.receive_json(), AUTH_TIMEOUT_S)
    except (TimeoutError, ValueError, KeyError):
        hello = None
    token = hello.get("token") if isinstance(hello, dict) and hello.get("type") == "auth" else None
    try:
        if not isinstance(token, str) or not token:
            raise AuthError(401, "NotAuthenticated", 'send {"type": "auth", "token": ...} first')
        principal = deps.auth.authenticate(f"Bearer {token}")
        return deps.auth.require(principal, "admin", "agent"), _expiry(token)
    except AuthError as exc:
        await _refuse(ws, exc)
        return None


async def _write(ws: WebSocket, viewer: Viewer) -> None:
    while (frame := await viewer.outbox.get()) is not None:
        await ws.send_json(frame)


async def _read(ws: WebSocket, viewer: Viewer, deps: GatewayDeps, console: Console) -> None:
    while True:
        try:
            frame: Any = await ws.receive_json()
        except ValueError:
            viewer.offer({"type": "error", "message": "frames must be JSON"})
            continue
        kind = frame.get("type") if isinstance(frame, dict) else None
        cid = frame.get("conversation_id") if isinstance(frame, dict) else None
        if kind == "ping":
            viewer.offer({"type": "pong"})
        elif kind == "watch" and isinstance(cid, str) and cid:
            viewer.watching = {cid}
            events = await deps.archive.read(cid) if deps.archive is not None else []
            handoff = console.get(cid)
            viewer.offer(
                {
                    "type": "transcript",
                    "conversation_id": cid,
                    "handoff": handoff.to_json() if handoff else None,
                    "transcript": transcript(events),
                }
            )
        elif kind == "unwatch":
            viewer.watching = set()
        else:
            viewer.offer({"type": "error", "message": f"unknown frame type {kind!r}"})


def console_socket(deps: GatewayDeps, console: Console) -> APIRouter:
    router = APIRouter()

    @router.websocket("/console/ws")
    async def console_ws(ws: WebSocket) -> None:
        await ws.accept()
        try:
            authenticated = await _authenticate(ws, deps)
        except WebSocketDisconnect:
            return
        if authenticated is None:
            return
        principal, expires_at = authenticated
        await console.ready()
        viewer = Viewer(principal)
        viewer.offer(console.snapshot())
        console.viewers.add(viewer)
        writer = asyncio.create_task(_write(ws, viewer))
        reader = asyncio.create_task(_read(ws, viewer, deps, console))
        left = None if expires_at is None else max(0.0, expires_at - deps.clock.now().timestamp())
        try:
            done, _ = await asyncio.wait(
                {writer, reader}, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                # The token expired: the console logs in again.
                console.viewers.discard(viewer)
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
                await _refuse(ws, AuthError(401, "NotAuthenticated", "the token has expired"))
        finally:
            console.viewers.discard(viewer)
            for task in (writer, reader):
                task.cancel()
            for task in (writer, reader):
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                    await task
            if viewer.dropped:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await ws.close(code=1013)

    return router
