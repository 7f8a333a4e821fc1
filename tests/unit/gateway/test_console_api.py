"""The handoff console over HTTP and its websocket: a fake publish that records the agents'
commands, a SQLite archive, and tracker events fed to the hub as `parley.events` would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from schemas.envelopes import BotMessage, ConsoleCommand, Envelope, OutboundMessage
from schemas.project.domain import Action, Domain, Response, ResponseVariation
from schemas.project.problems import Source
from schemas.topics import Topic
from services.common.errors import DependencyUnavailable
from services.dialogue.store.migrate import migrate
from services.dialogue.store.sql_archive import SqlArchive
from services.gateway.app import create_app
from services.gateway.auth import AgentDirectory, Authenticator
from services.gateway.console import console_router
from services.gateway.console.queue import PENDING_CLAIM_S
from services.gateway.deps import GatewayDeps
from services.gateway.replies import ReplyHub
from services.gateway.settings import GatewaySettings
from services.platform.adapters import ArchiveTrackers
from tests.support.clock import FakeClock

SECRET = "console-test-secret-0123456789abcdef"
T0 = 1_700_000_000.0
SRC = Source(Path("domain.yml"))


def user(text: str, ts: float, intent: str = "greet", confidence: float = 0.9) -> dict[str, Any]:
    return {
        "event": "user",
        "timestamp": ts,
        "text": text,
        "parse_data": {"intent": {"name": intent, "confidence": confidence}, "entities": []},
    }


def pause(ts: float, reason: str = "requested") -> dict[str, Any]:
    return {"event": "pause", "timestamp": ts, "metadata": {"handoff_reason": reason}}


def domain() -> Domain:
    def response(name: str, *texts: str) -> Response:
        return Response(name, SRC, tuple(ResponseVariation(SRC, text=t) for t in texts))

    return Domain(
        responses={
            "utter_greet": response("utter_greet", "Hi!", "Hello!", "Hi!"),
            "utter_bikes": response("utter_bikes", "We sell {bike_type} bikes."),
            "utter_image_only": Response(
                "utter_image_only", SRC, (ResponseVariation(SRC, image="https://x/y.png"),)
            ),
        },
        actions={"action_check_order": Action("action_check_order", SRC)},
    )


@dataclass
class Console:
    client: TestClient
    published: list[tuple[Topic, Envelope]]
    hub: ReplyHub
    archive: SqlArchive
    auth: Authenticator
    clock: FakeClock
    broken: list[bool]

    def token(self, who: str = "alice") -> dict[str, str]:
        response = self.client.post(
            "/console/api/login", json={"username": who, "password": f"{who}-pw"}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['token']}"}

    def post_to(self, cid: str) -> Callable[..., int]:
        """`post(command, agent, body)` on the conversation: the status code."""

        def post(command: str, agent: str, body: dict[str, Any] | None = None) -> int:
            path = f"/console/api/conversations/{cid}/{command}"
            return self.client.post(path, json=body, headers=self.token(agent)).status_code

        return post

    def event(self, cid: str, record: dict[str, Any]) -> None:
        """A tracker event as `parley.events` delivers it to the hub."""
        self.client.portal.call(self.hub.handle_event, {"sender_id": cid, **record})  # type: ignore[union-attr]

    def commands(self) -> list[ConsoleCommand]:
        out = []
        for topic, envelope in self.published:
            assert topic is Topic.DIALOGUE
            assert isinstance(envelope, ConsoleCommand)
            out.append(envelope)
        return out


SEEDED = {
    "waiting": [user("I want a person", T0, "human_handoff", 0.97), pause(T0 + 1)],
    "held": [
        pause(T0 + 2, "fallback"),
        {"event": "agent_action", "timestamp": T0 + 3, "command": "claim", "agent_id": "bob"},
    ],
    "resumed": [pause(T0), {"event": "resume", "timestamp": T0 + 1}],
    "chatting": [
        user("hello there", T0, "greet", 0.99),
        {"event": "bot", "timestamp": T0 + 1, "text": "Hi!"},
    ],
}


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}"
    asyncio.run(migrate(url))
    archive = SqlArchive(url)
    clock = FakeClock(datetime.now(UTC))
    hub = ReplyHub()
    published: list[tuple[Topic, Envelope]] = []
    broken: list[bool] = []

    async def publish(topic: Topic, envelope: Envelope) -> None:
        if broken:
            raise DependencyUnavailable("the bus is down")
        published.append((topic, envelope))

    async def seed() -> None:
        async with SqlArchive(url) as writer:
            for cid, events in SEEDED.items():
                await writer.write(cid, 0, events)

    agents = AgentDirectory()
    agents.add("alice", "alice-pw", "agent", "Alice")
    agents.add("bob", "bob-pw", "agent", "Bob")
    agents.add("root", "root-pw", "admin")
    auth = Authenticator(clock, jwt_secret=SECRET)
    deps = GatewayDeps(
        settings=GatewaySettings(jwt_secret=SECRET, max_message_chars=50),
        clock=clock,
        publish=publish,
        hub=hub,
        trackers=ArchiveTrackers(archive, {}),
        auth=auth,
        domain=domain(),
        agents=agents,
        archive=archive,
    )
    asyncio.run(seed())
    # Starting opens no connection: they are opened, and closed, in the app's event loop.
    asyncio.run(archive.start())
    app = create_app(deps, [console_router(deps)])
    with TestClient(app) as client:
        try:
            yield Console(client, published, hub, archive, auth, clock, broken)
        finally:
            client.portal.call(archive.close)  # type: ignore[union-attr]


async def test_served_without_a_lifespan_it_reads_the_archive_on_first_use(tmp_path: Path) -> None:
    """The gateway worker's uvicorn runs no lifespan: events that come before the first
    request wait, and the first request reads the archive."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}"
    await migrate(url)
    async with SqlArchive(url) as archive:
        await archive.write("waiting", 0, SEEDED["waiting"])
        hub = ReplyHub()
        clock = FakeClock(datetime.now(UTC))
        agents = AgentDirectory()
        agents.add("alice", "alice-pw")

        async def publish(topic: Topic, envelope: Envelope) -> None:
            raise AssertionError("nothing is published")

        deps = GatewayDeps(
            settings=GatewaySettings(jwt_secret=SECRET),
            clock=clock,
            publish=publish,
            hub=hub,
            trackers=ArchiveTrackers(archive, {}),
            auth=Authenticator(clock, jwt_secret=SECRET),
            domain=domain(),
            agents=agents,
            archive=archive,
        )
        app = create_app(deps, [console_router(deps)])
        await hub.handle_event({"sender_id": "live", **pause(T0 + 50, "fallback")})
        await hub.handle_event({"sender_id": "waiting", "event": "resume", "timestamp": T0 + 51})
        await hub.handle_event({"sender_id": "live2", **pause(T0 + 52)})
        headers = {"Authorization": f"Bearer {deps.auth.issue('alice', 'agent')}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as http:
            first = (await http.get("/console/api/queue", headers=headers)).json()
            await hub.handle_event({"sender_id": "live2", "event": "restart", "timestamp": T0 + 53})
            second = (await http.get("/console/api/queue", headers=headers)).json()
    assert [i["conversation_id"] for i in first["items"]] == ["live", "live2"]
    assert [i["conversation_id"] for i in second["items"]] == ["live"]


# -- auth -------------------------------------------------------------------------------------


def test_agents_log_in_and_every_route_needs_an_agent_or_admin_token(console: Console) -> None:
    client = console.client
    bad = client.post("/console/api/login", json={"username": "alice", "password": "nope"})
    assert bad.status_code == 401
    assert bad.json()["reason"] == "NotAuthenticated"

    response = client.post("/console/api/login", json={"username": "alice", "password": "alice-pw"})
    body = response.json()
    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["role"], claims["name"]) == ("alice", "agent", "Alice")
    assert body["agent"] == {"username": "alice", "name": "Alice", "role": "agent"}

    user_token = {"Authorization": f"Bearer {console.auth.issue('waiting', 'user')}"}
    for method, path in [
        ("GET", "/console/api/queue"),
        ("GET", "/console/api/me"),
        ("GET", "/console/api/responses"),
        ("GET", "/console/api/conversations"),
        ("GET", "/console/api/conversations/waiting"),
        ("GET", "/console/api/search?q=hi"),
        ("POST", "/console/api/conversations/waiting/claim"),
        ("POST", "/console/api/conversations/waiting/resolve"),
    ]:
        assert client.request(method, path).status_code == 401, path
        assert client.request(method, path, headers=user_token).status_code == 403, path
    assert console.published == []
    admin = client.get("/console/api/me", headers=console.token("root")).json()
    assert admin["role"] == "admin"


def test_me_lists_the_agents_and_the_follow_up_actions(console: Console) -> None:
    me = console.client.get("/console/api/me", headers=console.token()).json()
    assert (me["username"], me["name"], me["role"]) == ("alice", "Alice", "agent")
    assert [a["username"] for a in me["agents"]] == ["alice", "bob", "root"]
    assert me["followup_actions"] == [
        "action_check_order", "utter_bikes", "utter_greet", "utter_image_only",
    ]  # fmt: skip


# -- the queue --------------------------------------------------------------------------------


def test_the_queue_starts_from_the_archive_and_follows_the_live_events(console: Console) -> None:
    headers = console.token()
    snapshot = console.client.get("/console/api/queue", headers=headers).json()
    items = snapshot["items"]
    assert [(i["conversation_id"], i["reason"], i["claimed_by"]) for i in items] == [
        ("waiting", "requested", None),
        ("held", "fallback", "bob"),
    ]
    assert items[0]["paused_at"] == T0 + 1
    assert [m["text"] for m in items[0]["last_messages"]] == ["I want a person"]
    assert snapshot["now"] == pytest.approx(console.clock.now().timestamp())

    console.event("chatting", user("a human please", T0 + 10, "human_handoff"))
    console.event("chatting", pause(T0 + 11, "low_confidence"))
    console.event("held", {"event": "resume", "timestamp": T0 + 12})
    items = console.client.get("/console/api/queue", headers=headers).json()["items"]
    assert [(i["conversation_id"], i["reason"]) for i in items] == [
        ("waiting", "requested"),
        ("chatting", "low_confidence"),
    ]
    # Messages from before the gateway started are in the transcript, not in the queue's preview.
    assert [m["text"] for m in items[1]["last_messages"]] == ["a human please"]


# -- claiming ---------------------------------------------------------------------------------


def test_claim_publishes_a_console_command_and_a_second_agent_gets_409(console: Console) -> None:
    client = console.client
    alice, bob = console.token("alice"), console.token("bob")

    first = client.post("/console/api/conversations/waiting/claim", headers=alice)
    assert first.status_code == 202
    [command] = console.commands()
    assert (command.command, command.agent_id, command.conversation_id) == (
        "claim", "alice", "waiting",
    )  # fmt: skip
    assert command.key == b"waiting"
    assert first.json()["message_id"] == command.message_id

    # Before the claim's event comes back, the queue already shows it held (pending).
    item = client.get("/console/api/queue", headers=bob).json()["items"][0]
    assert (item["claimed_by"], item["pending"]) == ("alice", True)
    second = client.post("/console/api/conversations/waiting/claim", headers=bob)
    assert second.status_code == 409
    assert second.json()["reason"] == "Conflict"
    assert second.json()["details"] == {"claimed_by": "alice"}
    # Another agent's claim recorded elsewhere (another replica) is respected too.
    assert client.post("/console/api/conversations/held/claim", headers=alice).status_code == 409
    # Claiming again what one holds changes nothing.
    again = client.post("/console/api/conversations/waiting/claim", headers=alice)
    assert again.status_code == 202
    assert again.json()["status"] == "held"
    assert len(console.published) == 1


def test_a_claim_that_could_not_be_sent_or_never_came_back_holds_nothing(
    console: Console,
) -> None:
    post = console.post_to("waiting")
    console.broken.append(True)
    assert post("claim", "alice") == 503  # the bus is down: Rasa's error shape, 503
    console.broken.clear()
    item = console.client.get("/console/api/queue", headers=console.token()).json()["items"][0]
    assert (item["conversation_id"], item["claimed_by"], item["pending"]) == (
        "waiting",
        None,
        False,
    )

    # Sent, but its event never comes back (the handoff ended unseen, the worker was down).
    assert post("claim", "alice") == 202
    assert post("claim", "bob") == 409
    console.clock.advance(PENDING_CLAIM_S + 1)
    assert post("claim", "bob") == 202
    assert [(c.command, c.agent_id) for c in console.commands()] == [
        ("claim", "alice"),
        ("claim", "bob"),
    ]


def test_only_handed_off_conversations_can_be_claimed(console: Console) -> None:
    alice = console.token()
    for cid in ("resumed", "chatting", "unknown"):
        response = console.client.post(f"/console/api/conversations/{cid}/claim", headers=alice)
        assert response.status_code == 409
        assert response.json()["reason"] == "NotHandedOff"
    assert console.published == []


def test_concurrent_claims_on_one_replica_publish_one(console: Console) -> None:
    tokens = [console.token(who) for who in ("alice", "bob")]
    client = console.client

    async def race() -> list[int]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as http:
            responses = await asyncio.gather(
                *(http.post("/console/api/conversations/waiting/claim", headers=t) for t in tokens)
            )
        return sorted(r.status_code for r in responses)

    assert client.portal.call(race) == [202, 409]  # type: ignore[union-attr]
    assert len(console.commands()) == 1


# -- the agent's commands ---------------------------------------------------------------------


def test_reply_note_hand_back_and_resolve_go_to_the_dialogue_worker(console: Console) -> None:
    post = console.post_to("waiting")

    not_claimed = console.client.post(
        "/console/api/conversations/waiting/reply", json={"text": "hi"}, headers=console.token()
    )
    assert not_claimed.status_code == 409
    assert not_claimed.json()["reason"] == "NotClaimed"
    assert post("claim", "alice") == 202
    assert post("reply", "bob", {"text": "Hi, Bob here"}) == 409
    assert post("reply", "alice", {"text": "  "}) == 400
    assert post("reply", "alice", {"text": "x" * 51}) == 400
    assert post("reply", "alice", {"text": " Hi, Alice here "}) == 202
    # Any agent may leave a note, even on a conversation another agent holds.
    assert post("notes", "bob", {"text": "VIP customer"}) == 202
    assert post("hand_back", "alice", {"followup_action": "utter_nope"}) == 400
    assert post("hand_back", "bob", {}) == 409
    assert post("hand_back", "alice", {"followup_action": "utter_greet"}) == 202
    assert post("resolve", "alice") == 202

    assert [(c.command, c.agent_id, c.text, c.followup_action) for c in console.commands()] == [
        ("claim", "alice", None, None),
        ("reply", "alice", "Hi, Alice here", None),
        ("note", "bob", "VIP customer", None),
        ("hand_back", "alice", None, "utter_greet"),
        ("resolve", "alice", None, None),
    ]


def test_assign_gives_the_conversation_to_a_known_agent(console: Console) -> None:
    waiting, held = console.post_to("waiting"), console.post_to("held")

    assert waiting("assign", "alice", {"assignee": "carol"}) == 400
    assert waiting("assign", "alice", {"assignee": "bob"}) == 202
    # Bob holds it now: Alice may no longer reassign it, an admin may.
    assert waiting("assign", "alice", {"assignee": "alice"}) == 409
    assert waiting("reply", "bob", {"text": "Bob here"}) == 202
    assert held("assign", "root", {"assignee": "alice"}) == 202
    assert [(c.command, c.conversation_id, c.agent_id, c.assignee) for c in console.commands()] == [
        ("assign", "waiting", "alice", "bob"),
        ("reply", "waiting", "bob", None),
        ("assign", "held", "root", "alice"),
    ]


# -- transcripts, canned responses, the archive -----------------------------------------------


def test_the_transcript_has_messages_with_intent_and_confidence(console: Console) -> None:
    headers = console.token()
    body = console.client.get("/console/api/conversations/waiting", headers=headers).json()
    assert body["handoff"]["reason"] == "requested"
    assert [
        (e["kind"], e.get("text"), e.get("intent"), e.get("confidence")) for e in body["transcript"]
    ] == [
        ("user", "I want a person", "human_handoff", 0.97),
        ("handoff", None, None, None),
    ]
    other = console.client.get("/console/api/conversations/chatting?last=1", headers=headers).json()
    assert other["handoff"] is None
    assert [e["text"] for e in other["transcript"]] == ["Hi!"]


def test_canned_responses_are_the_domains_text_variants(console: Console) -> None:
    body = console.client.get("/console/api/responses", headers=console.token()).json()
    assert body == [
        {"name": "utter_bikes", "texts": ["We sell {bike_type} bikes."]},
        {"name": "utter_greet", "texts": ["Hi!", "Hello!"]},
    ]


def test_past_conversations_are_listed_and_searched(console: Console) -> None:
    headers = console.token()
    listed = console.client.get("/console/api/conversations?limit=10", headers=headers).json()
    assert {c["conversation_id"]: c["handed_off"] for c in listed} == {
        "waiting": True, "held": True, "resumed": False, "chatting": False,
    }  # fmt: skip
    hits = console.client.get("/console/api/search", params={"q": "HELLO"}, headers=headers).json()
    assert [(h["conversation_id"], h["kind"], h["text"]) for h in hits] == [
        ("chatting", "user", "hello there")
    ]
    assert console.client.get("/console/api/search?q=", headers=headers).status_code == 400


def test_the_page_and_its_assets_are_served(console: Console) -> None:
    page = console.client.get("/console")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'aria-live="polite"' in page.text
    assert '<label for="username">' in page.text
    script = console.client.get("/console/static/console.js")
    assert script.status_code == 200
    assert "text/javascript" in script.headers["content-type"]
    assert console.client.get("/console/static/console.css").status_code == 200
    assert console.client.get("/console/static/..%2Fapi.py").status_code == 404


# -- the websocket ----------------------------------------------------------------------------


def authed(ws: WebSocketTestSession, headers: dict[str, str]) -> dict[str, Any]:
    ws.send_json({"type": "auth", "token": headers["Authorization"].removeprefix("Bearer ")})
    frame: dict[str, Any] = ws.receive_json()
    return frame


def test_the_websocket_needs_a_token_in_its_first_frame(console: Console) -> None:
    user_token = console.auth.issue("waiting", "user")
    for first in ({"type": "watch", "conversation_id": "x"}, {"type": "auth", "token": "junk"},
                  {"type": "auth", "token": user_token}):  # fmt: skip
        with console.client.websocket_connect("/console/ws") as ws:
            ws.send_json(first)
            assert ws.receive_json()["type"] == "error"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1008


def test_the_websocket_pushes_the_queue_and_the_watched_transcript(console: Console) -> None:
    headers = console.token()
    with console.client.websocket_connect("/console/ws") as ws:
        snapshot = authed(ws, headers)
        assert snapshot["type"] == "queue"
        assert [i["conversation_id"] for i in snapshot["items"]] == ["waiting", "held"]

        ws.send_json({"type": "watch", "conversation_id": "waiting"})
        shown = ws.receive_json()
        assert (shown["type"], shown["handoff"]["reason"]) == ("transcript", "requested")
        assert [e["kind"] for e in shown["transcript"]] == ["user", "handoff"]

        # A claim through the API: every console hears the queue change.
        console.client.post("/console/api/conversations/waiting/claim", headers=headers)
        pending = ws.receive_json()
        assert pending["type"] == "queue_item"
        assert (pending["item"]["claimed_by"], pending["item"]["pending"]) == ("alice", True)

        # The dialogue worker records the claim and the agent's reply: live events.
        claim = {
            "event": "agent_action",
            "timestamp": T0 + 5,
            "command": "claim",
            "agent_id": "alice",
        }
        console.event("waiting", claim)
        confirmed = ws.receive_json()
        assert (confirmed["type"], confirmed["item"]["pending"]) == ("queue_item", False)
        assert ws.receive_json() == {
            "type": "event",
            "conversation_id": "waiting",
            "entry": {"kind": "action", "command": "claim", "assignee": None,
                      "agent_id": "alice", "timestamp": T0 + 5},
        }  # fmt: skip
        reply = {"event": "agent", "timestamp": T0 + 6, "text": "Hi", "data": {"agent_id": "alice"}}
        # Events of conversations nobody watches only move the queue when it shows them.
        console.event("chatting", user("unwatched", T0 + 6))
        console.event("waiting", reply)
        assert ws.receive_json()["type"] == "queue_item"  # its last message changed
        event = ws.receive_json()
        assert (event["type"], event["entry"]["kind"], event["entry"]["text"]) == (
            "event",
            "agent",
            "Hi",
        )
        outbound = OutboundMessage(
            conversation_id="waiting",
            sent_at=console.clock.now(),
            source="agent",
            messages=[BotMessage(text="Hi")],
        )
        console.client.portal.call(console.hub.handle, outbound)  # type: ignore[union-attr]
        assert ws.receive_json() == {
            "type": "delivered", "conversation_id": "waiting", "source": "agent", "texts": ["Hi"],
        }  # fmt: skip

        console.event("waiting", {"event": "resume", "timestamp": T0 + 7})
        assert ws.receive_json() == {"type": "queue_removed", "conversation_id": "waiting"}
        assert ws.receive_json()["entry"]["kind"] == "resume"

        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
        ws.send_json({"type": "dance"})
        assert ws.receive_json()["type"] == "error"


def test_the_websocket_is_closed_when_its_token_expires(console: Console) -> None:
    now = int(console.clock.now().timestamp())
    token = jwt.encode(
        {"sub": "alice", "role": "agent", "iat": now, "exp": now + 1}, SECRET, algorithm="HS256"
    )
    with console.client.websocket_connect("/console/ws") as ws:
        assert authed(ws, {"Authorization": f"Bearer {token}"})["type"] == "queue"
        expired = ws.receive_json()
        assert (expired["type"], expired["message"]) == ("error", "the token has expired")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008
