"""Issue 8's channels in both modes with Parley's example bot (examples/bikeshop):

- the Kafka mode: NLU, dialogue, actions and two gateway replicas as separate workers over real
  Kafka, Redis and PostgreSQL; REST and websocket conversations through the gateways' real
  HTTP servers, and a reply produced through one replica reaching the websocket held by the
  other;
- the embedded mode (`parley run`'s `EmbeddedPlatform`): the same conversations in one
  process on the memory bus and SQLite.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from schemas.project.loader import load_project
from services.actions.worker_cli import ActionsSettings, ActionsWorker
from services.common.kafka_bus import KafkaBus
from services.dialogue.store.settings import StoreSettings
from services.dialogue.store.sql_archive import SqlArchive
from services.dialogue.worker_cli import DialogueSettings, DialogueWorker, build_predictor
from services.gateway.settings import GatewaySettings
from services.gateway.worker import GatewayWorker
from services.nlu.worker_cli import NluSettings, NluWorker
from services.platform.adapters import NluParser, archive_trackers
from services.platform.embedded import EmbeddedOptions, EmbeddedPlatform
from tests.integration.test_tracker_store import REDIS_URL, pg_url  # noqa: F401 - fixture
from tests.support.buses import bus_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIKESHOP = REPO / "examples" / "bikeshop"
GREETINGS = {
    "Hi, this is Spoke & Chain, the bike repair shop. How can I help you today?",
    "Hello! You've reached the Spoke & Chain workshop assistant. What can I do for you?",
    "Hey there! Need a repair booked, a status check, or something else?",
}
ASK_DAY = {
    "Which day would you like to bring it in? We take bikes Monday to Saturday.",
    "When can you drop it off? Any day except Sunday works.",
}


def _forget_actions_package(saved_path: list[str]) -> None:
    sys.path[:] = saved_path
    for name in [n for n in sys.modules if n.split(".")[0] == "actions"]:
        del sys.modules[name]


async def _rest(client: httpx.AsyncClient, sender: str, text: str) -> list[dict[str, Any]]:
    response = await client.post("/webhooks/rest/webhook", json={"sender": sender, "message": text})
    assert response.status_code == 200, response.text
    assert "X-Parley-Turn" not in response.headers, "the turn did not complete in time"
    replies: list[dict[str, Any]] = response.json()
    assert all(r["recipient_id"] == sender for r in replies)
    return replies


async def _booking_over_rest(base_url: str) -> None:
    sender = f"rest-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        greeting = await _rest(client, sender, "hello")
        assert [r["text"] for r in greeting][-1] in GREETINGS
        asked = await _rest(client, sender, "my mtb has a flat tyre")
        assert asked[-1]["text"] in ASK_DAY
        booked = await _rest(client, sender, "saturday please")
        assert booked, "no confirmation"
        tracker = (await client.get(f"/conversations/{sender}/tracker")).json()
        assert tracker["slots"]["day"] == "saturday"
        assert tracker["slots"]["booking_ref"]
        assert tracker["slots"]["booking_ref"] in booked[-1]["text"]
        actions = [e.get("name") for e in tracker["events"] if e["event"] == "action"]
        assert "action_book_repair" in actions
        assert tracker["latest_input_channel"] == "rest"


async def _ws_session(url: str, sender: str) -> Any:
    ws = await websockets.connect(url)
    await ws.send(json.dumps({"type": "session_request", "sender": sender}))
    assert json.loads(await ws.recv()) == {"type": "session_confirm", "sender": sender}
    return ws


async def _bot_texts_until_complete(ws: Any) -> list[str]:
    texts: list[str] = []
    while True:
        frame = json.loads(await ws.recv())
        assert frame["type"] == "bot", frame
        texts += [m.get("text") for m in frame["messages"]]
        if frame["turn_complete"]:
            return texts


async def _greeting_over_websocket(ws_url: str) -> None:
    sender = f"ws-{uuid.uuid4().hex[:8]}"
    ws = await _ws_session(ws_url, sender)
    try:
        await ws.send(json.dumps({"type": "user_message", "message": "hello"}))
        assert (await _bot_texts_until_complete(ws))[-1] in GREETINGS
        await ws.send(json.dumps({"type": "user_message", "message": "my mtb has a flat tyre"}))
        assert (await _bot_texts_until_complete(ws))[-1] in ASK_DAY
    finally:
        await ws.close()


# -- the Kafka mode ------------------------------------------------------------------------------


@pytest.fixture
async def kafka_platform(
    bikeshop_model: Path,
    unique_prefix: str,
    pg_url: str,  # noqa: F811 - the fixture
) -> AsyncIterator[list[GatewayWorker]]:
    project = load_project(BIKESHOP)
    model = bikeshop_model
    kafka = bus_settings("kafka", unique_prefix)
    store = StoreSettings(redis_url=REDIS_URL, database_url=pg_url, key_prefix=unique_prefix)
    quiet: dict[str, Any] = {"health_host": "127.0.0.1", "health_port": 0}
    saved_path = list(sys.path)
    nlu = NluWorker(NluSettings(model=model, **quiet), KafkaBus(kafka))
    dialogue = DialogueWorker(
        DialogueSettings(project=BIKESHOP, **quiet),
        store,
        KafkaBus(kafka),
        project,
        predictor=build_predictor(project),
    )
    actions = ActionsWorker(
        ActionsSettings(package=str(BIKESHOP / "actions"), http_enabled=False, **quiet),
        KafkaBus(kafka),
    )
    archive = SqlArchive(pg_url)
    gateways = [
        GatewayWorker(
            GatewaySettings(
                project=BIKESHOP, host="127.0.0.1", port=0, replica_id=f"{unique_prefix}-{n}"
            ),
            KafkaBus(kafka),
            project,
            archive,
            archive_trackers(archive, project),
            parser=NluParser(nlu.service),
        )
        for n in (1, 2)
    ]
    started: list[Any] = []
    try:
        for worker in (actions, dialogue, nlu):
            await worker.start()
            started.append(worker)
        await archive.start()
        for gateway in gateways:
            await gateway.start()
            started.append(gateway)
        yield gateways
    finally:
        for worker in reversed(started):
            await worker.stop()
        await archive.close()
        _forget_actions_package(saved_path)


async def test_rest_and_websocket_conversations_over_kafka(
    kafka_platform: list[GatewayWorker],
) -> None:
    first, second = kafka_platform
    await _booking_over_rest(f"http://127.0.0.1:{first.port}")
    await _greeting_over_websocket(f"ws://127.0.0.1:{second.port}/webhooks/websocket/ws")


async def test_a_reply_reaches_the_replica_holding_the_users_connection(
    kafka_platform: list[GatewayWorker],
) -> None:
    """The user's websocket is on replica 2; an API call on replica 1 triggers an intent for
    that conversation: the bot's answer is pushed through replica 2's socket."""
    first, second = kafka_platform
    sender = f"ws-{uuid.uuid4().hex[:8]}"
    ws = await _ws_session(f"ws://127.0.0.1:{second.port}/webhooks/websocket/ws", sender)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{first.port}") as client:
            response = await client.post(
                f"/conversations/{sender}/trigger_intent", json={"name": "greet"}, timeout=30
            )
        assert response.status_code == 200, response.text
        answered = response.json()["messages"]
        assert answered[-1]["text"] in GREETINGS
        pushed = await _bot_texts_until_complete(ws)
        assert pushed == [m["text"] for m in answered]
    finally:
        await ws.close()


# -- the embedded mode ---------------------------------------------------------------------------


@pytest.fixture
async def embedded(bikeshop_model: Path, tmp_path: Path) -> AsyncIterator[EmbeddedPlatform]:
    saved_path = list(sys.path)
    platform = EmbeddedPlatform(
        EmbeddedOptions(project=BIKESHOP, model=bikeshop_model, port=0, data_dir=tmp_path)
    )
    await platform.start()
    try:
        yield platform
    finally:
        await platform.stop()
        _forget_actions_package(saved_path)


async def test_rest_and_websocket_conversations_embedded(embedded: EmbeddedPlatform) -> None:
    port = embedded.gateway.port
    await _booking_over_rest(f"http://127.0.0.1:{port}")
    await _greeting_over_websocket(f"ws://127.0.0.1:{port}/webhooks/websocket/ws")
    assert (embedded.options.data_dir or Path()).joinpath("archive.db").is_file()


def test_parley_shell_chats_in_the_terminal(bikeshop_model: Path, tmp_path: Path) -> None:
    """`parley shell`: piped lines are the user's; each turn's messages print before the next
    line is read."""
    import subprocess

    parley = Path(sys.executable).parent / "parley"
    done = subprocess.run(
        [
            str(parley),
            "--log-level",
            "WARNING",
            "shell",
            "--project",
            str(BIKESHOP),
            "--model",
            str(bikeshop_model),
            "--data",
            str(tmp_path),
            "--sender",
            "shell-test",
        ],
        input="hello\nmy mtb has a flat tyre\n/stop\n",
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    said = [
        line.removeprefix("bot: ") for line in done.stdout.splitlines() if line.startswith("bot: ")
    ]
    assert said[0] in GREETINGS, done.stdout
    assert said[1] in ASK_DAY, done.stdout


async def test_rest_feedback_reaches_parley_events_and_the_archive(
    kafka_platform: list[GatewayWorker], unique_prefix: str
) -> None:
    """Feedback over REST is a `user_feedback` event: on `parley.events` (Rasa's event-broker
    record) and in the SQL archive behind the tracker."""
    import asyncio

    from schemas.topics import Topic
    from services.common.bus import Subscription

    first, _ = kafka_platform
    records: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def record(body: dict[str, Any]) -> None:
        await records.put(body)

    probe = KafkaBus(bus_settings("kafka", unique_prefix))
    probe.subscribe(Subscription(Topic.EVENTS, "probe", record, dict[str, Any], from_latest=True))
    await probe.start()
    try:
        sender = f"fb-{uuid.uuid4().hex[:8]}"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{first.port}") as client:
            await _rest(client, sender, "hello")
            response = await client.post(
                "/webhooks/rest/feedback",
                json={"sender": sender, "rating": -1, "comment": "not helpful"},
                timeout=30,
            )
            assert response.json()["status"] == "recorded"
            tracker = (
                await client.get(f"/conversations/{sender}/tracker?include_events=ALL")
            ).json()
        assert tracker["events"][-1]["event"] == "user_feedback"
        while True:
            body = await asyncio.wait_for(records.get(), 30)
            if body["sender_id"] == sender and body["event"] == "user_feedback":
                break
        assert body["rating"] == -1
        assert body["comment"] == "not helpful"
        assert body["input_channel"] == "rest"
    finally:
        await probe.stop()
