"""The gateway's channels and HTTP API over a fake dialogue (a publish that answers)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from schemas.envelopes import (
    AppendEvents,
    BotMessage,
    Envelope,
    ExternalTrigger,
    OutboundMessage,
    UserMessage,
)
from schemas.project.domain import Domain
from schemas.topics import Topic
from services.dialogue.store.migrate import migrate
from services.dialogue.store.sql_archive import SqlArchive
from services.gateway.app import OPENAPI_FILE, create_app, render_openapi
from services.gateway.auth import Authenticator
from services.gateway.deps import GatewayDeps
from services.gateway.openapi_app import documented_app
from services.gateway.replies import ReplyHub
from services.gateway.settings import GatewaySettings
from services.platform.adapters import ArchiveTrackers
from tests.support.clock import FakeClock

SECRET = "s3cret-for-tests-only-0123456789abcdef"


class FakeDialogue:
    """Records publications; answers each user message / trigger with one bot message,
    split over two batches (the second marks the turn complete)."""

    def __init__(self, hub: ReplyHub, clock: FakeClock, archive: SqlArchive) -> None:
        self.hub = hub
        self.clock = clock
        self.archive = archive
        self.published: list[tuple[Topic, Envelope]] = []
        self.silent = False

    async def publish(self, topic: Topic, message: Envelope) -> None:
        self.published.append((topic, message))
        if self.silent:
            return
        if isinstance(message, AppendEvents):  # recorded as the dialogue worker would
            cid = message.conversation_id
            seq = await self.archive.last_seq(cid) + 1
            await self.archive.write(cid, seq, [e.to_dict() for e in message.events])
            await self.hub.handle(
                OutboundMessage(
                    conversation_id=cid,
                    sent_at=self.clock.now(),
                    in_reply_to=message.message_id,
                    turn_complete=True,
                )
            )
            return
        text = message.text if isinstance(message, UserMessage) else None
        if isinstance(message, ExternalTrigger):
            text = f"EXTERNAL: {message.intent}"
        for index, part in enumerate(("you said", text)):
            await self.hub.handle(
                OutboundMessage(
                    conversation_id=message.conversation_id,
                    sent_at=self.clock.now(),
                    messages=[BotMessage(text=f"{part}")],
                    in_reply_to=message.message_id,
                    turn_complete=index == 1,
                )
            )

    async def proactive(self, cid: str, text: str, source: str = "bot") -> None:
        await self.hub.handle(
            OutboundMessage(
                conversation_id=cid,
                sent_at=self.clock.now(),
                messages=[BotMessage(text=text)],
                source=source,  # type: ignore[arg-type]
                turn_complete=False,
            )
        )


class FakeParser:
    async def parse(self, text: str, message_id: str | None = None) -> dict[str, Any]:
        return {"text": text, "intent": {"name": "greet", "confidence": 0.9}, "entities": []}

    def status(self) -> dict[str, Any]:
        return {"model_file": "m.tar.gz", "model_id": "m"}


@pytest.fixture
def archive(tmp_path: Path) -> SqlArchive:
    url = f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}"
    asyncio.run(migrate(url))
    archive = SqlArchive(url)
    asyncio.run(archive.start())
    events = [
        {"event": "action", "timestamp": 1.0, "name": "action_session_start"},
        {"event": "session_started", "timestamp": 1.0},
        {"event": "action", "timestamp": 1.0, "name": "action_listen"},
        {
            "event": "user",
            "timestamp": 2.0,
            "text": "hi",
            "parse_data": {"intent": {"name": "greet", "confidence": 0.97}, "entities": []},
        },
        {"event": "slot", "timestamp": 2.0, "name": "name", "value": "Ada"},
    ]
    asyncio.run(archive.write("alice", 0, events))
    return archive


def build(
    archive: SqlArchive, **settings: Any
) -> tuple[TestClient, FakeDialogue, Authenticator, ReplyHub]:
    clock = FakeClock()
    hub = ReplyHub()
    fake = FakeDialogue(hub, clock, archive)
    config = GatewaySettings(reply_timeout_s=0.5, **settings)
    auth = Authenticator(
        clock,
        auth_token=config.auth_token.get_secret_value() if config.auth_token else None,
        jwt_secret=config.jwt_secret.get_secret_value() if config.jwt_secret else None,
        allow_query_token=config.allow_query_token,
    )
    domain = Domain()
    deps = GatewayDeps(
        settings=config,
        clock=clock,
        publish=fake.publish,
        hub=hub,
        trackers=ArchiveTrackers(archive, {"name": None}),
        auth=auth,
        domain=domain,
        parser=FakeParser(),
        archive=archive,
    )
    return TestClient(create_app(deps)), fake, auth, hub


def test_rest_webhook_answers_the_whole_turn_in_rasas_shape(archive: SqlArchive) -> None:
    client, fake, _, _ = build(archive)
    response = client.post(
        "/webhooks/rest/webhook", json={"sender": 42, "message": "hello", "metadata": {"a": 1}}
    )
    assert response.status_code == 200
    assert response.json() == [
        {"recipient_id": "42", "text": "you said"},
        {"recipient_id": "42", "text": "hello"},
    ]
    [(topic, message)] = fake.published
    assert topic is Topic.NLU
    assert isinstance(message, UserMessage)
    assert (message.conversation_id, message.input_channel, message.metadata) == (
        "42",
        "rest",
        {"a": 1},
    )
    assert client.get("/webhooks/rest/").json() == {"status": "ok"}


def test_rest_webhook_times_out_with_what_it_has_and_keeps_the_rest(
    archive: SqlArchive,
) -> None:
    client, fake, _, _ = build(archive)
    fake.silent = True
    with client:
        response = client.post("/webhooks/rest/webhook", json={"sender": "bob", "message": "hi"})
        assert response.status_code == 200
        assert response.json() == []
        assert response.headers["X-Parley-Turn"] == "incomplete"
        # a reminder (or the late rest of the turn) waits for bob's next request or his inbox
        client.portal.call(fake.proactive, "bob", "Remember to call John!")  # type: ignore[union-attr]
        assert client.get("/webhooks/rest/inbox/bob").json() == [
            {"recipient_id": "bob", "text": "Remember to call John!"}
        ]
        assert client.get("/webhooks/rest/inbox/bob").json() == []


def test_bad_bodies_get_rasas_error_shape(archive: SqlArchive) -> None:
    client, fake, _, _ = build(archive, max_message_chars=5)
    response = client.post("/webhooks/rest/webhook", json={"sender": "x"})
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "failure"
    assert body["code"] == 400
    assert body["reason"] == "BadRequest"
    assert "message" in body["message"]
    too_long = client.post("/webhooks/rest/webhook", json={"sender": "x", "message": "x" * 6})
    assert too_long.status_code == 400
    assert "limit is 5" in too_long.json()["message"]
    assert fake.published == []
    assert client.get("/nowhere").json()["reason"] == "NotFound"


def test_tracker_is_rasas_current_state_from_the_archive(archive: SqlArchive) -> None:
    client, _, _, _ = build(archive)
    tracker = client.get("/conversations/alice/tracker").json()
    assert tracker["sender_id"] == "alice"
    assert tracker["slots"] == {"name": "Ada"}
    assert tracker["latest_message"]["intent"]["name"] == "greet"
    assert [e["event"] for e in tracker["events"]] == [
        "action",
        "session_started",
        "action",
        "user",
        "slot",
    ]
    none = client.get("/conversations/alice/tracker", params={"include_events": "NONE"}).json()
    assert none["events"] is None
    bad = client.get("/conversations/alice/tracker", params={"include_events": "SOME"})
    assert bad.status_code == 400
    assert "AFTER_RESTART" in bad.json()["message"]
    unknown = client.get("/conversations/nobody/tracker").json()
    assert unknown["events"] == []
    assert unknown["slots"] == {"name": None}


def test_static_token_guards_the_api_but_not_the_channels(archive: SqlArchive) -> None:
    client, _, _, _ = build(archive, auth_token="tok")
    assert client.get("/conversations/alice/tracker").status_code == 401
    assert client.get("/conversations/alice/tracker?token=tok").status_code == 401  # no query
    ok = client.get("/conversations/alice/tracker", headers={"Authorization": "Bearer tok"})
    assert ok.status_code == 200
    wrong = client.get("/conversations/alice/tracker", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["reason"] == "NotAuthenticated"
    assert client.post("/webhooks/rest/webhook", json={"message": "hi"}).status_code == 200


def test_query_tokens_only_when_allowed(archive: SqlArchive) -> None:
    client, _, _, _ = build(archive, auth_token="tok", allow_query_token=True)
    assert client.get("/conversations/alice/tracker?token=tok").status_code == 200


def test_jwt_roles_limit_a_user_to_their_own_conversation(archive: SqlArchive) -> None:
    client, _, auth, _ = build(archive, jwt_secret=SECRET)
    user = auth.issue("alice", "user")
    mine = client.get("/conversations/alice/tracker", headers={"Authorization": f"Bearer {user}"})
    assert mine.status_code == 200
    other = client.get("/conversations/bob/tracker", headers={"Authorization": f"Bearer {user}"})
    assert other.status_code == 403
    assert other.json()["reason"] == "NotAuthorized"
    trigger = client.post(
        "/conversations/alice/trigger_intent",
        json={"name": "greet"},
        headers={"Authorization": f"Bearer {user}"},
    )
    assert trigger.status_code == 403
    agent = auth.issue("ann", "agent")
    assert (
        client.get(
            "/conversations/bob/tracker", headers={"Authorization": f"Bearer {agent}"}
        ).status_code
        == 200
    )
    expired = jwt.encode({"sub": "alice", "role": "user", "exp": 1}, SECRET, algorithm="HS256")
    late = client.get(
        "/conversations/alice/tracker", headers={"Authorization": f"Bearer {expired}"}
    )
    assert late.status_code == 401
    assert "expired" in late.json()["message"]
    forged = jwt.encode({"sub": "a", "role": "admin", "exp": 2**40}, "x" * 40, algorithm="HS256")
    assert (
        client.get(
            "/conversations/alice/tracker", headers={"Authorization": f"Bearer {forged}"}
        ).status_code
        == 401
    )


def test_channel_auth_requires_the_users_own_token(archive: SqlArchive) -> None:
    client, _, auth, _ = build(archive, jwt_secret=SECRET, channel_auth=True)
    body = {"sender": "alice", "message": "hi"}
    assert client.post("/webhooks/rest/webhook", json=body).status_code == 401
    bob = auth.issue("bob", "user")
    assert (
        client.post(
            "/webhooks/rest/webhook", json=body, headers={"Authorization": f"Bearer {bob}"}
        ).status_code
        == 403
    )
    alice = auth.issue("alice", "user")
    assert (
        client.post(
            "/webhooks/rest/webhook", json=body, headers={"Authorization": f"Bearer {alice}"}
        ).status_code
        == 200
    )


def test_trigger_intent_publishes_an_external_trigger_and_returns_the_turn(
    archive: SqlArchive,
) -> None:
    client, fake, _, _ = build(archive)
    response = client.post(
        "/conversations/alice/trigger_intent?output_channel=latest",
        json={"name": "remind", "entities": {"person": "John"}},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["messages"][-1]["text"] == "EXTERNAL: remind"
    assert body["tracker"]["sender_id"] == "alice"
    [(topic, trigger)] = fake.published
    assert topic is Topic.DIALOGUE
    assert isinstance(trigger, ExternalTrigger)
    assert (trigger.source, trigger.intent, trigger.entities, trigger.output_channel) == (
        "api",
        "remind",
        {"person": "John"},
        None,
    )


def test_parse_status_health_and_version(archive: SqlArchive) -> None:
    client, _, _, _ = build(archive)
    parsed = client.post("/model/parse", json={"text": "hey"}).json()
    assert parsed["intent"]["name"] == "greet"
    assert parsed["text"] == "hey"
    assert client.get("/status").json()["model_file"] == "m.tar.gz"
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/version").json()["version"].startswith("3.")
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True


def test_websocket_carries_messages_both_ways_and_proactive_ones(archive: SqlArchive) -> None:
    client, fake, _, hub = build(archive)
    with client, client.websocket_connect("/webhooks/websocket/ws") as ws:
        ws.send_json({"type": "session_request", "sender": "wendy"})
        assert ws.receive_json() == {"type": "session_confirm", "sender": "wendy"}
        ws.send_json({"type": "user_message", "message": "hello"})
        first, second = ws.receive_json(), ws.receive_json()
        assert first["messages"] == [{"recipient_id": "wendy", "text": "you said"}]
        assert second["messages"][0]["text"] == "hello"
        assert second["turn_complete"] is True
        [(_, message)] = fake.published
        assert isinstance(message, UserMessage)
        assert message.input_channel == "websocket"

        client.portal.call(fake.proactive, "wendy", "an agent here", "agent")  # type: ignore[union-attr]
        pushed = ws.receive_json()
        assert pushed["source"] == "agent"
        assert pushed["messages"][0]["text"] == "an agent here"

        ws.send_text("not json")
        assert ws.receive_json()["type"] == "error"
        ws.send_json({"type": "typing"})
        assert "user_message" in ws.receive_json()["message"]
    assert not hub.connected("wendy")


def test_the_committed_openapi_document_is_current() -> None:
    rendered = render_openapi(documented_app())
    assert OPENAPI_FILE.read_text(encoding="utf-8") == rendered, (
        "services/gateway/openapi.json is stale: run `make schemas`"
    )
    paths = json.loads(rendered)["paths"]
    for path in (
        "/webhooks/rest/webhook",
        "/conversations/{conversation_id}/tracker",
        "/conversations/{conversation_id}/trigger_intent",
        "/model/parse",
        "/status",
        "/health",
        "/ready",
    ):
        assert path in paths


def test_json_bodies_are_read_without_a_json_content_type(archive: SqlArchive) -> None:
    client, _, _, _ = build(archive)
    response = client.post(
        "/webhooks/rest/webhook",
        content=b'{"sender": "c", "message": "curl"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert response.json()[-1]["text"] == "curl"


def test_events_are_appended_through_the_dialogue_worker(archive: SqlArchive) -> None:
    client, fake, _, _ = build(archive)
    with client:
        response = client.post(
            "/conversations/alice/tracker/events?execute_side_effects=true",
            json=[
                {"event": "slot", "name": "name", "value": "Grace", "timestamp": 3.0},
                {"event": "resume", "timestamp": 3.0},
            ],
        )
        assert response.status_code == 200, response.text
        assert response.json()["slots"] == {"name": "Grace"}
        [(topic, message)] = fake.published
        assert topic is Topic.DIALOGUE
        assert isinstance(message, AppendEvents)
        assert [e.event for e in message.events] == ["slot", "resume"]
        assert message.execute_side_effects is True
        one = client.post("/conversations/alice/tracker/events", json={"event": "pause"})
        assert one.json()["paused"] is True
        bad = client.post("/conversations/alice/tracker/events", json={"event": "no_such"})
        assert bad.status_code == 400
        assert "invalid event" in bad.json()["message"]


def test_messages_are_parsed_and_added_without_prediction(archive: SqlArchive) -> None:
    client, fake, _, _ = build(archive)
    with client:
        response = client.post("/conversations/carol/messages", json={"text": "hey there"})
        assert response.status_code == 200, response.text
        tracker = response.json()
        assert tracker["latest_message"]["text"] == "hey there"
        assert tracker["latest_message"]["intent"]["name"] == "greet"
        [(_, message)] = fake.published
        assert isinstance(message, AppendEvents)
        assert message.execute_side_effects is False
        bot = client.post("/conversations/carol/messages", json={"text": "x", "sender": "bot"})
        assert bot.status_code == 400


def test_feedback_over_rest_and_websocket_becomes_a_user_feedback_event(
    archive: SqlArchive,
) -> None:
    client, fake, _, _ = build(archive)
    with client:
        response = client.post(
            "/webhooks/rest/feedback",
            json={"sender": "alice", "rating": -1, "message_text": "Hello!", "comment": "meh"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "recorded"
        [(topic, message)] = fake.published
        assert topic is Topic.DIALOGUE
        assert isinstance(message, AppendEvents)
        assert message.execute_side_effects is True
        [event] = message.events
        assert event.to_dict() == {
            "event": "user_feedback",
            "timestamp": event.timestamp,
            "rating": -1,
            "scale": "thumbs",
            "comment": "meh",
            "message_text": "Hello!",
            "input_channel": "rest",
        }
        off_scale = client.post("/webhooks/rest/feedback", json={"sender": "a", "rating": 3})
        assert off_scale.status_code == 400
        assert "thumbs scale" in off_scale.json()["message"]

        with client.websocket_connect("/webhooks/websocket/ws") as ws:
            ws.send_json({"type": "session_request", "sender": "wendy"})
            ws.receive_json()
            ws.send_json({"type": "feedback", "rating": 5, "scale": "stars"})
            assert ws.receive_json()["type"] == "bot"  # the recorded input's completion
            ws.send_json({"type": "feedback", "rating": 9, "scale": "stars"})
            error = ws.receive_json()
            assert error["type"] == "error"
            assert "stars scale" in error["message"]
        last = fake.published[-1][1]
        assert isinstance(last, AppendEvents)
        assert last.conversation_id == "wendy"
        assert last.events[0].to_dict()["rating"] == 5
        assert last.events[0].to_dict()["input_channel"] == "websocket"


def test_prometheus_metrics_are_served(archive: SqlArchive) -> None:
    client, _, _, _ = build(archive)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "process_" in response.text or "python_" in response.text


def test_unavailable_dependencies_and_crashes_answer_in_rasas_shape(archive: SqlArchive) -> None:
    from services.common.errors import DependencyUnavailable

    built, _, _, _ = build(archive)
    client = TestClient(built.app, raise_server_exceptions=False)
    deps: GatewayDeps = built.app.state.deps  # type: ignore[attr-defined]

    class Down:
        async def tracker(self, conversation_id: str, include_events: str = "") -> dict[str, Any]:
            raise DependencyUnavailable("the archive does not answer")

    class Broken:
        async def tracker(self, conversation_id: str, include_events: str = "") -> dict[str, Any]:
            raise RuntimeError("boom")

    deps.trackers = Down()
    down = client.get("/conversations/alice/tracker")
    assert down.status_code == 503
    assert down.json()["reason"] == "Unavailable"
    deps.trackers = Broken()
    broken = client.get("/conversations/alice/tracker")
    assert broken.status_code == 500
    assert broken.json()["status"] == "failure"
    assert "RuntimeError" in broken.json()["message"]


async def test_a_request_that_could_not_be_published_leaves_no_waiter_behind() -> None:
    hub = ReplyHub()

    async def down(message_id: str) -> None:
        raise ConnectionError("the bus is down")

    with pytest.raises(ConnectionError):
        await hub.ask("alice", down, 1.0)
    assert hub._waiters == {}
