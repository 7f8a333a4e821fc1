"""The user-facing channels: Rasa's REST webhook and a websocket channel with a chat page.

REST (`POST /webhooks/rest/webhook`, `{sender, message, metadata}`) answers with Rasa's list
of bot messages once the turn is complete (or, after `reply_timeout_s`, with what arrived so
far and `X-Parley-Turn: incomplete`; the rest waits in the conversation's mailbox).

Websocket (`/webhooks/websocket/ws`), JSON frames:

- client → `{"type": "session_request", "sender": "<id>"}` (optional `"token"` when the
  channel requires auth; no id: the gateway makes one) → `{"type": "session_confirm",
  "sender": ...}`; then `{"type": "user_message", "message": "...", "metadata": {}}`;
- server → `{"type": "bot", "source": "bot"|"agent"|"system", "messages": [...],
  "turn_complete": bool, "in_reply_to": ...}` for every outbound batch of the conversation,
  proactive ones included; `{"type": "error", "message": ...}` for a bad frame (the
  connection stays open);
- client → `{"type": "feedback", "rating": 1 | -1, "message_text": "...", "comment": ...}`
  (or `"scale": "stars"` with 1 to 5): the user's rating of a bot message, recorded as
  Parley's `user_feedback` event. REST users post it to `POST /webhooks/rest/feedback`.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from schemas.envelopes import AppendEvents, OutboundMessage, UserMessage, new_message_id
from schemas.events import UserFeedback
from schemas.topics import Topic
from services.gateway.auth import AuthError
from services.gateway.deps import GatewayDeps
from services.gateway.errors import ApiError

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def _as_str(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


SenderId = Annotated[str, BeforeValidator(_as_str), Field(min_length=1, max_length=512)]


class RestMessage(BaseModel):
    """Rasa's REST channel body."""

    sender: SenderId = "default"
    message: str = Field(max_length=1_000_000)
    metadata: dict[str, Any] | None = None


class FeedbackIn(BaseModel):
    """A user's rating of a bot message (Parley's `user_feedback` event)."""

    rating: int = Field(description="1 or -1 on the thumbs scale; 1 to 5 on stars")
    scale: Literal["thumbs", "stars"] = "thumbs"
    comment: str | None = Field(default=None, max_length=5_000)
    message_text: str | None = Field(default=None, description="the rated bot message's text")
    message_timestamp: float | None = None


class RestFeedback(FeedbackIn):
    sender: SenderId = "default"


class BotMessageOut(BaseModel):
    """One bot message as Rasa's REST channel answers it (keys present only when set)."""

    recipient_id: str
    text: str | None = None
    image: str | None = None
    buttons: list[dict[str, Any]] | None = None
    attachment: dict[str, Any] | str | None = None
    custom: dict[str, Any] | None = None


def channels_router(deps: GatewayDeps) -> APIRouter:
    router = APIRouter(tags=["channels"])
    settings = deps.settings

    def check_length(text: str) -> None:
        if len(text) > settings.max_message_chars:
            raise ApiError(
                400,
                "BadRequest",
                f"the message has {len(text)} characters; the limit is "
                f"{settings.max_message_chars} (PARLEY_GATEWAY_MAX_MESSAGE_CHARS)",
            )

    async def send_user_message(
        sender: str,
        text: str,
        channel: str,
        metadata: dict[str, Any] | None,
        message_id: str,
    ) -> None:
        await deps.publish(
            Topic.NLU,
            UserMessage(
                conversation_id=sender,
                message_id=message_id,
                correlation_id=message_id,
                sent_at=deps.clock.now(),
                text=text,
                input_channel=channel,
                metadata=metadata or {},
            ),
        )

    def feedback_event(body: FeedbackIn, channel: str) -> UserFeedback:
        try:
            return UserFeedback(
                timestamp=deps.clock.now().timestamp(),
                rating=body.rating,
                scale=body.scale,
                comment=body.comment,
                message_text=body.message_text,
                message_timestamp=body.message_timestamp,
                input_channel=channel,
            )
        except ValidationError as exc:
            message = exc.errors()[0].get("msg", "invalid feedback")
            raise ApiError(400, "BadRequest", f"invalid feedback: {message}") from exc

    async def send_feedback(sender: str, event: UserFeedback, message_id: str) -> None:
        await deps.publish(
            Topic.DIALOGUE,
            AppendEvents(
                conversation_id=sender,
                message_id=message_id,
                correlation_id=message_id,
                sent_at=deps.clock.now(),
                events=[event],
                execute_side_effects=True,
            ),
        )

    @router.get("/webhooks/rest/", summary="REST channel health (Rasa)")
    async def rest_health() -> dict[str, str]:
        return {"status": "ok"}

    @router.post(
        "/webhooks/rest/webhook",
        summary="Send a user message; answers with the bot's messages of that turn (Rasa)",
        response_model=list[BotMessageOut],
        response_model_exclude_none=True,
    )
    async def rest_webhook(
        body: RestMessage, request: Request, response: Response
    ) -> list[dict[str, Any]]:
        if settings.channel_auth:
            deps.require(request, "admin", "user", conversation_id=body.sender)
        check_length(body.message)
        pending = deps.hub.take_mailbox(body.sender)

        async def send(message_id: str) -> None:
            await send_user_message(body.sender, body.message, "rest", body.metadata, message_id)

        waiter, complete = await deps.hub.ask(body.sender, send, settings.reply_timeout_s)
        if not complete:
            logger.warning(
                "turn of %s not complete after %.1fs: answering what arrived",
                body.sender,
                settings.reply_timeout_s,
            )
            response.headers["X-Parley-Turn"] = "incomplete"
        return pending + waiter.messages

    @router.post(
        "/webhooks/rest/feedback",
        summary="Rate a bot message (Parley): recorded as a `user_feedback` event",
    )
    async def rest_feedback(body: RestFeedback, request: Request) -> dict[str, Any]:
        if settings.channel_auth:
            deps.require(request, "admin", "user", conversation_id=body.sender)
        event = feedback_event(body, "rest")

        async def send(message_id: str) -> None:
            await send_feedback(body.sender, event, message_id)

        waiter, recorded = await deps.hub.ask(body.sender, send, settings.reply_timeout_s)
        # the bot may answer it (negative feedback can hand the conversation to a human)
        return {"status": "recorded" if recorded else "accepted", "messages": waiter.messages}

    @router.get(
        "/webhooks/rest/inbox/{sender}",
        summary="Messages for a REST user that arrived between requests (reminders, agents)",
        response_model=list[BotMessageOut],
        response_model_exclude_none=True,
    )
    async def rest_inbox(sender: str, request: Request) -> list[dict[str, Any]]:
        if settings.channel_auth:
            deps.require(request, "admin", "user", conversation_id=sender)
        deps.hub.remember(sender)
        return deps.hub.take_mailbox(sender)

    @router.websocket("/webhooks/websocket/ws")
    async def websocket_channel(ws: WebSocket) -> None:
        await ws.accept()
        try:
            hello = await ws.receive_json()
        except (WebSocketDisconnect, json.JSONDecodeError, KeyError):
            await ws.close(code=1003)
            return
        if not isinstance(hello, dict) or hello.get("type") != "session_request":
            await ws.send_json({"type": "error", "message": "send a session_request first"})
            await ws.close(code=1008)
            return
        sender = str(hello.get("sender") or uuid.uuid4().hex)
        if settings.channel_auth:
            try:
                token = hello.get("token")
                principal = deps.auth.authenticate(f"Bearer {token}" if token else None)
                deps.auth.require(principal, "admin", "user", conversation_id=sender)
            except AuthError as exc:
                await ws.send_json({"type": "error", "message": str(exc)})
                await ws.close(code=1008)
                return

        async def push(outbound: OutboundMessage) -> None:
            await ws.send_json(
                {
                    "type": "bot",
                    "source": outbound.source,
                    "messages": [m.to_rest(sender) for m in outbound.messages],
                    "turn_complete": outbound.turn_complete,
                    "in_reply_to": outbound.in_reply_to,
                }
            )

        disconnect = deps.hub.connect(sender, push)
        try:
            await ws.send_json({"type": "session_confirm", "sender": sender})
            waiting = deps.hub.take_mailbox(sender)
            if waiting:
                await ws.send_json(
                    {"type": "bot", "source": "bot", "messages": waiting, "turn_complete": True}
                )
            while True:
                try:
                    frame = await ws.receive_json()
                except json.JSONDecodeError:
                    await ws.send_json({"type": "error", "message": "frames must be JSON"})
                    continue
                if isinstance(frame, dict) and frame.get("type") == "feedback":
                    try:
                        body = FeedbackIn.model_validate(frame)
                        await send_feedback(
                            sender, feedback_event(body, "websocket"), new_message_id()
                        )
                    except (ValidationError, ApiError) as exc:
                        await ws.send_json({"type": "error", "message": f"feedback: {exc}"})
                    continue
                text = frame.get("message") if isinstance(frame, dict) else None
                if frame.get("type") != "user_message" or not isinstance(text, str):
                    await ws.send_json(
                        {
                            "type": "error",
                            "message": 'expected {"type": "user_message", "message": "..."}',
                        }
                    )
                    continue
                metadata = frame.get("metadata")
                try:
                    check_length(text)
                    await send_user_message(
                        sender,
                        text,
                        "websocket",
                        metadata if isinstance(metadata, dict) else None,
                        new_message_id(),
                    )
                except ApiError as exc:
                    await ws.send_json({"type": "error", "message": str(exc)})
        except WebSocketDisconnect:
            pass
        finally:
            disconnect()

    @router.get("/", include_in_schema=False)
    @router.get("/chat", include_in_schema=False)
    async def chat_page() -> HTMLResponse:
        return HTMLResponse((STATIC / "chat.html").read_text(encoding="utf-8"))

    return router
