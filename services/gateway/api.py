"""Rasa's HTTP API, the compatible subset Parley serves (and documents in OpenAPI).

Conversations are read from the SQL archive; every change goes to the dialogue worker as an
input on `parley.dialogue` (it owns the conversation), and the answer waits for that input's
turn to complete, as Rasa's synchronous API does.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from schemas.envelopes import AppendEvents, ExternalTrigger
from schemas.events import AnyEvent, Event, UserUttered, parse_event
from schemas.topics import Topic
from services.common.version import RASA_COMPATIBLE_VERSION, VERSION
from services.gateway.deps import GatewayDeps
from services.gateway.errors import ApiError
from services.gateway.ports import INCLUDE_EVENTS, IncludeEvents

logger = logging.getLogger(__name__)


class TriggerIntent(BaseModel):
    """Rasa's `trigger_intent` body."""

    name: str = Field(min_length=1)
    entities: dict[str, Any] | list[dict[str, Any]] | None = None


class MessageBody(BaseModel):
    """Rasa's `/messages` body."""

    text: str = Field(max_length=1_000_000)
    sender: str = "user"
    parse_data: dict[str, Any] | None = None


class ParseBody(BaseModel):
    text: str = Field(max_length=1_000_000)
    message_id: str | None = None


def _verbosity(value: str) -> IncludeEvents:
    for known in INCLUDE_EVENTS:
        if value.upper() == known:
            return known
    raise ApiError(
        400, "BadRequest", f"include_events={value!r}: one of {', '.join(INCLUDE_EVENTS)}"
    )


def _channel(output_channel: str | None) -> str | None:
    """Rasa's `output_channel` query: a channel name, or `latest` (the dialogue worker's
    default: the channel the conversation last used)."""
    return None if output_channel in (None, "latest") else output_channel


def api_router(deps: GatewayDeps) -> APIRouter:
    router = APIRouter(tags=["http-api"])

    @router.get("/version", summary="Versions (Rasa's shape, plus Parley's)")
    async def version() -> dict[str, str]:
        return {
            "version": RASA_COMPATIBLE_VERSION,
            "minimum_compatible_version": "3.0.0",
            "parley": VERSION,
        }

    @router.get("/health", summary="Liveness: the gateway answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready", summary="Readiness: the bus and the stores answer (503 if not)")
    async def ready() -> JSONResponse:
        body = await deps.readiness()
        return JSONResponse(body, 200 if body["ready"] else 503)

    @router.get("/status", summary="The loaded model (Rasa's shape)")
    async def status(request: Request) -> dict[str, Any]:
        deps.require(request, "admin", "agent")
        body: dict[str, Any] = {"model_file": None, "model_id": None, "num_active_training_jobs": 0}
        if deps.parser is not None:
            body.update(deps.parser.status())
        return body

    @router.get("/conversations/{conversation_id}/tracker", summary="A conversation's tracker")
    async def tracker(
        conversation_id: str,
        request: Request,
        include_events: str = Query(
            "AFTER_RESTART", description="ALL, AFTER_RESTART, APPLIED or NONE"
        ),
    ) -> dict[str, Any]:
        deps.require(request, "admin", "agent", "user", conversation_id=conversation_id)
        return await deps.trackers.tracker(conversation_id, _verbosity(include_events))

    @router.post(
        "/conversations/{conversation_id}/trigger_intent",
        summary="Trigger an intent as if the user sent it (`EXTERNAL: <intent>`)",
    )
    async def trigger_intent(
        conversation_id: str,
        body: TriggerIntent,
        request: Request,
        output_channel: str | None = Query(None, description="a channel name, or 'latest'"),
        include_events: str = Query("AFTER_RESTART"),
    ) -> dict[str, Any]:
        deps.require(request, "admin", "agent")
        verbosity = _verbosity(include_events)

        async def send(message_id: str) -> None:
            await deps.publish(
                Topic.DIALOGUE,
                ExternalTrigger(
                    conversation_id=conversation_id,
                    message_id=message_id,
                    correlation_id=message_id,
                    sent_at=deps.clock.now(),
                    source="api",
                    intent=body.name,
                    entities=body.entities or [],
                    output_channel=_channel(output_channel),
                ),
            )

        waiter, complete = await deps.hub.ask(conversation_id, send, deps.settings.reply_timeout_s)
        if not complete:
            logger.warning("trigger_intent %s: turn not complete in time", body.name)
        return {
            "tracker": await deps.trackers.tracker(conversation_id, verbosity),
            "messages": waiter.messages,
        }

    async def append(
        conversation_id: str,
        events: list[Event],
        *,
        execute_side_effects: bool,
        output_channel: str | None,
        verbosity: IncludeEvents,
    ) -> dict[str, Any]:
        async def send(message_id: str) -> None:
            await deps.publish(
                Topic.DIALOGUE,
                AppendEvents(
                    conversation_id=conversation_id,
                    message_id=message_id,
                    correlation_id=message_id,
                    sent_at=deps.clock.now(),
                    events=cast(list[AnyEvent], events),
                    execute_side_effects=execute_side_effects,
                    output_channel=_channel(output_channel),
                ),
            )

        _, recorded = await deps.hub.ask(conversation_id, send, deps.settings.reply_timeout_s)
        if not recorded:
            raise ApiError(
                503,
                "Unavailable",
                "the dialogue worker did not record the events in time; they will be "
                "recorded when it catches up",
            )
        return await deps.trackers.tracker(conversation_id, verbosity)

    @router.post(
        "/conversations/{conversation_id}/tracker/events",
        summary="Append events (an event or a list) to a conversation; answers the tracker",
    )
    async def append_events(
        conversation_id: str,
        request: Request,
        body: Annotated[dict[str, Any] | list[dict[str, Any]], Body()],
        include_events: str = Query("AFTER_RESTART"),
        execute_side_effects: bool = Query(
            False, description="send the bot messages, schedule the reminders"
        ),
        output_channel: str | None = Query(None, description="a channel name, or 'latest'"),
    ) -> dict[str, Any]:
        deps.require(request, "admin", "agent")
        verbosity = _verbosity(include_events)
        items = body if isinstance(body, list) else [body]
        try:
            events = [parse_event(item) for item in items]
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"invalid event: {exc}") from exc
        if not events:
            raise ApiError(400, "BadRequest", "no events to append")
        return await append(
            conversation_id,
            events,
            execute_side_effects=execute_side_effects,
            output_channel=output_channel,
            verbosity=verbosity,
        )

    @router.post(
        "/conversations/{conversation_id}/messages",
        summary="Add a user message to a conversation without predicting (Rasa's /messages)",
    )
    async def add_message(
        conversation_id: str,
        body: MessageBody,
        request: Request,
        include_events: str = Query("AFTER_RESTART"),
    ) -> dict[str, Any]:
        deps.require(request, "admin", "agent", "user", conversation_id=conversation_id)
        verbosity = _verbosity(include_events)
        if body.sender != "user":
            raise ApiError(
                400, "BadRequest", f"sender {body.sender!r}: only 'user' messages can be added"
            )
        parse_data = body.parse_data
        if parse_data is None:
            if deps.parser is None:
                raise ApiError(409, "Conflict", "no NLU model is loaded: send `parse_data`")
            parse_data = await deps.parser.parse(body.text)
        user = UserUttered(
            timestamp=deps.clock.now().timestamp(),
            text=body.text,
            parse_data=parse_data,
            input_channel="rest",
        )
        return await append(
            conversation_id,
            [user],
            execute_side_effects=False,
            output_channel=None,
            verbosity=verbosity,
        )

    @router.post("/model/parse", summary="Parse a text with the loaded NLU model")
    async def parse(body: ParseBody, request: Request) -> dict[str, Any]:
        deps.require(request, "admin", "agent", "user")
        if deps.parser is None:
            raise ApiError(409, "Conflict", "no NLU model is loaded in this gateway")
        try:
            return await deps.parser.parse(body.text, body.message_id)
        except LookupError as exc:
            raise ApiError(409, "Conflict", str(exc)) from exc

    return router
