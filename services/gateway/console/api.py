"""The console's JSON API (`/console/api/...`): login, the queue, transcripts, agents' commands,
canned responses and the archive's search. Every route but login needs an agent's or an
admin's token (`Authorization: Bearer`).

Commands go to the dialogue worker as `ConsoleCommand`s on `parley.dialogue` and are answered
202: the worker records them as events, which come back to every console over the websocket.
Who holds a conversation is checked here first, so that two agents never both own one.
"""

# No `from __future__ import annotations`: FastAPI must see the routes' `Agent` dependency,
# a local name, as an object rather than a string it would look up in the module.
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from schemas.envelopes import ConsoleCommand, new_message_id
from schemas.topics import Topic
from services.common.correlation import correlated
from services.gateway.auth import AuthError, Principal
from services.gateway.console.live import Console
from services.gateway.console.transcript import transcript
from services.gateway.deps import GatewayDeps
from services.gateway.errors import ApiError

logger = logging.getLogger(__name__)
Command = Literal["claim", "assign", "reply", "note", "hand_back", "resolve"]


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=1024)


class Text(BaseModel):
    text: str = Field(min_length=1)


class Assign(BaseModel):
    assignee: str = Field(min_length=1, max_length=256)


class HandBack(BaseModel):
    followup_action: str | None = None


def canned_responses(deps: GatewayDeps) -> list[dict[str, Any]]:
    """The domain's responses that have text, each with its distinct text variants."""
    out = []
    for name, response in sorted(deps.domain.responses.items()):
        texts = list(dict.fromkeys(v.text for v in response.variations if v.text))
        if texts:
            out.append({"name": name, "texts": texts})
    return out


def console_api(deps: GatewayDeps, console: Console) -> APIRouter:
    router = APIRouter(prefix="/console/api", tags=["console"])

    def current_agent(request: Request) -> Principal:
        principal = deps.principal(request)
        if principal is None:
            raise AuthError(401, "NotAuthenticated", "log in to the console first")
        return deps.auth.require(principal, "admin", "agent")

    Agent = Annotated[Principal, Depends(current_agent)]

    def archive() -> Any:
        if deps.archive is None:
            raise ApiError(503, "ServiceUnavailable", "this gateway has no conversation archive")
        return deps.archive

    async def publish(
        cid: str, command: Command, agent: Principal, **fields: Any
    ) -> dict[str, Any]:
        message_id = new_message_id()
        with correlated(cid, message_id):
            await deps.publish(
                Topic.DIALOGUE,
                ConsoleCommand(
                    conversation_id=cid,
                    message_id=message_id,
                    correlation_id=message_id,
                    sent_at=deps.clock.now(),
                    command=command,
                    agent_id=agent.subject,
                    **fields,
                ),
            )
            logger.info("console: %s by %s", command, agent.subject)
        return {"status": "accepted", "command": command, "message_id": message_id}

    async def held(cid: str, agent: Principal, *, unclaimed_ok: bool) -> None:
        """Refuse (409) unless `agent` holds the handed-off conversation (an admin may act on
        any; `unclaimed_ok`: nobody holding it is fine too)."""
        await console.ready()
        handoff = console.get(cid)
        if handoff is None:
            raise ApiError(409, "NotHandedOff", f"conversation {cid!r} is not handed to an agent")
        holder = handoff.holder(console.now())
        if holder == agent.subject or agent.role == "admin":
            return
        if holder is None:
            if unclaimed_ok:
                return
            raise ApiError(409, "NotClaimed", f"claim conversation {cid!r} first")
        raise ApiError(
            409, "Conflict", f"{holder} holds conversation {cid!r}", {"claimed_by": holder}
        )

    def checked_text(text: str) -> str:
        text = text.strip()
        limit = deps.settings.max_message_chars
        if not text or len(text) > limit:
            raise ApiError(400, "BadRequest", f"the text must have 1 to {limit} characters")
        return text

    @router.post("/login", summary="Log an agent in: a bearer token for the console")
    async def login(body: Login) -> dict[str, Any]:
        agent = deps.agents.verify(body.username, body.password)
        if agent is None:
            raise AuthError(401, "NotAuthenticated", "unknown username or wrong password")
        return {
            "token": deps.auth.issue(agent.username, agent.role, agent.name),
            "token_type": "bearer",
            "expires_in": deps.settings.jwt_ttl_s,
            "agent": {"username": agent.username, "name": agent.name, "role": agent.role},
        }

    @router.get("/me", summary="The agent, the other agents, and the follow-up actions")
    async def me(agent: Agent) -> dict[str, Any]:
        domain = deps.domain
        return {
            "username": agent.subject,
            "name": agent.name,
            "role": agent.role,
            "agents": [
                {"username": a.username, "name": a.name} for a in deps.agents.agents.values()
            ],
            "followup_actions": sorted({*domain.responses, *domain.actions}),
        }

    @router.get("/queue", summary="Conversations handed to agents, unclaimed first")
    async def queue(agent: Agent) -> dict[str, Any]:
        await console.ready()
        return console.snapshot()

    @router.get("/responses", summary="Canned responses: the domain's text responses")
    async def responses(agent: Agent) -> list[dict[str, Any]]:
        return canned_responses(deps)

    @router.get("/conversations", summary="Archived conversations, most recent first")
    async def conversations(
        agent: Agent,
        since: float | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[dict[str, Any]]:
        await console.ready()
        rows = await archive().conversations(since=since, limit=limit, offset=offset)
        return [
            {
                "conversation_id": r.sender_id,
                "events": r.events,
                "first_timestamp": r.first_timestamp,
                "last_timestamp": r.last_timestamp,
                "latest_intent": r.latest_intent,
                "handed_off": console.get(r.sender_id) is not None,
            }
            for r in rows
        ]

    @router.get("/conversations/{cid}", summary="A conversation's transcript and handoff")
    async def conversation(
        cid: str, agent: Agent, last: Annotated[int, Query(ge=1, le=5000)] = 500
    ) -> dict[str, Any]:
        await console.ready()
        entries = transcript(await archive().read(cid))
        handoff = console.get(cid)
        return {
            "conversation_id": cid,
            "handoff": handoff.to_json() if handoff else None,
            "transcript": entries[-last:],
        }

    @router.get("/search", summary="User and bot messages of the archive containing a text")
    async def search(
        agent: Agent,
        q: Annotated[str, Query(min_length=1, max_length=200)],
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> list[dict[str, Any]]:
        hits = await archive().search(q, limit)
        return [
            {
                "conversation_id": h.sender_id,
                "seq": h.seq,
                "kind": h.type_name,
                "timestamp": h.timestamp,
                "text": h.text,
            }
            for h in hits
        ]

    @router.post("/conversations/{cid}/claim", status_code=202, summary="Take a conversation")
    async def claim(cid: str, agent: Agent) -> dict[str, Any]:
        await console.ready()
        # One claim at a time on this replica, so the check and the mark cannot interleave.
        async with console.claims:
            handoff = console.get(cid)
            if handoff is None:
                raise ApiError(
                    409, "NotHandedOff", f"conversation {cid!r} is not handed to an agent"
                )
            holder = handoff.holder(console.now())
            if holder == agent.subject:
                return {"status": "held", "command": "claim", "message_id": None}
            if holder is not None:
                raise ApiError(
                    409, "Conflict", f"{holder} holds conversation {cid!r}", {"claimed_by": holder}
                )
            async with console.claiming(cid, agent.subject):
                return await publish(cid, "claim", agent)

    @router.post("/conversations/{cid}/assign", status_code=202, summary="Give it to an agent")
    async def assign(cid: str, body: Assign, agent: Agent) -> dict[str, Any]:
        if body.assignee not in deps.agents.agents:
            raise ApiError(400, "BadRequest", f"no agent named {body.assignee!r}")
        async with console.claims:
            await held(cid, agent, unclaimed_ok=True)
            async with console.claiming(cid, body.assignee):
                return await publish(cid, "assign", agent, assignee=body.assignee)

    @router.post("/conversations/{cid}/reply", status_code=202, summary="Answer the user")
    async def reply(cid: str, body: Text, agent: Agent) -> dict[str, Any]:
        await held(cid, agent, unclaimed_ok=False)
        return await publish(cid, "reply", agent, text=checked_text(body.text))

    @router.post("/conversations/{cid}/notes", status_code=202, summary="An internal note")
    async def note(cid: str, body: Text, agent: Agent) -> dict[str, Any]:
        return await publish(cid, "note", agent, text=checked_text(body.text))

    @router.post("/conversations/{cid}/hand_back", status_code=202, summary="Back to the bot")
    async def hand_back(cid: str, body: HandBack, agent: Agent) -> dict[str, Any]:
        action = body.followup_action or None
        if action is not None and not deps.domain.is_known_action(action):
            raise ApiError(400, "BadRequest", f"the domain has no action {action!r}")
        await held(cid, agent, unclaimed_ok=True)
        return await publish(cid, "hand_back", agent, followup_action=action)

    @router.post("/conversations/{cid}/resolve", status_code=202, summary="Close the handoff")
    async def resolve(cid: str, agent: Agent) -> dict[str, Any]:
        await held(cid, agent, unclaimed_ok=True)
        return await publish(cid, "resolve", agent)

    return router
