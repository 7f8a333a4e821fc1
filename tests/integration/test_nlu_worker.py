"""The NLU worker end to end on real services: Kafka in, Triton (the local tritonserver, python
flavour) for inference, Kafka out; a new archive deployed to Triton as version 2 without a
restart; a real outage of Triton (a proxy cut in front of it) holds messages in order and
reports not ready, and nothing is lost when Triton is back."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.envelopes import DeadLetter, ParsedUserMessage, UserMessage
from schemas.topics import Topic
from services.common.bus import Subscription
from services.common.kafka_bus import KafkaBus
from services.nlu.archive import ModelArchive, write_archive
from services.nlu.worker_cli import NluSettings, NluWorker
from tests.integration.test_triton_nlu import TRITON_GRPC_URL, TRITON_MODEL_REPOSITORY
from tests.support.buses import bus_settings
from tests.support.recorder import Recorder
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration
WAIT_S = 60.0


async def until(
    condition: Callable[[], Awaitable[bool]], what: str, within: float = WAIT_S
) -> None:
    """Await a condition that has no event to wait on (readiness of a remote server)."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g}s")
        await asyncio.sleep(0.05)


def renamed(archive_path: Path, models: Path, stamp: str) -> Path:
    """The same network with other intent names: which archive answered shows in the output."""
    archive = ModelArchive.read(archive_path)
    nlu = archive.nlu
    intents = [f"v2_{name}" for name in nlu.intents]
    return write_archive(
        models,
        created_at=datetime.strptime(stamp, "%Y%m%d-%H%M%S").replace(tzinfo=UTC),
        metadata={k: v for k, v in archive.metadata.items() if k not in ("format", "created_at")},
        onnx=nlu.onnx,
        tokenizer_json=nlu.tokenizer_json,
        labels={"intents": intents, "entity_labels": nlu.entity_labels},
        rules=nlu.rules,
    )


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    host, port = TRITON_GRPC_URL.rsplit(":", 1)
    server = TcpProxy(host, int(port))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def model_name() -> AsyncIterator[str]:
    from tritonclient.grpc.aio import InferenceServerClient

    name = f"test_worker_{uuid.uuid4().hex[:8]}"
    yield name
    client = InferenceServerClient(url=TRITON_GRPC_URL)
    try:
        await client.unload_model(name)
    finally:
        await client.close()
        shutil.rmtree(TRITON_MODEL_REPOSITORY / name, ignore_errors=True)


async def test_worker_over_kafka_and_triton_reloads_and_survives_an_outage(
    tiny_archive: Path, tmp_path: Path, unique_prefix: str, proxy: TcpProxy, model_name: str
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_archive, models / tiny_archive.name)
    settings = NluSettings(
        model=models,
        backend="triton",
        triton_grpc_url=f"127.0.0.1:{proxy.port}",
        triton_model_name=model_name,
        triton_repository=TRITON_MODEL_REPOSITORY,
        triton_timeout_s=2.0,
        reload_interval_s=0.2,
        health_host="127.0.0.1",
        health_port=0,
        concurrency=4,
    )
    kafka = bus_settings("kafka", unique_prefix)
    worker = NluWorker(settings, KafkaBus(kafka))
    probe = KafkaBus(kafka)
    parsed, dead = Recorder(), Recorder()
    probe.subscribe(Subscription(Topic.DIALOGUE, "probe", parsed, ParsedUserMessage))
    probe.subscribe(Subscription(Topic.DEAD_LETTERS, "probe", dead, DeadLetter))
    stop = asyncio.Event()
    await worker.start()
    runner = asyncio.create_task(worker.run(stop))
    try:
        await probe.start()
        ready = await worker.health.readiness()
        assert ready["ready"], ready
        assert "v1 ready" in ready["checks"]["model"]["detail"]

        def say(text: str, conversation: str = "alice") -> UserMessage:
            return UserMessage(conversation_id=conversation, text=text, sent_at=datetime.now(UTC))

        for text in ("hello", "book a flight to Berlin", "bye bye"):
            await probe.publish(Topic.NLU, say(text))
        await probe.publish_bytes(Topic.NLU, b"alice", b"\x00 not json")
        first = await parsed.wait_for(3)
        intents = [m.event.to_dict()["parse_data"]["intent"]["name"] for m in first]
        assert intents == ["greet", "book_flight", "goodbye"]
        city = first[1].event.to_dict()["parse_data"]["entities"]
        assert [(e["entity"], e["value"]) for e in city] == [("city", "Berlin")]
        (letter,) = await dead.wait_for(1)
        assert "undecodable" in letter.reason
        assert letter.source_topic == f"{unique_prefix}.nlu"

        # A newer archive: deployed to Triton as version 2 and used, without a restart.
        newer = renamed(tiny_archive, models, "29990101-000000")

        async def swapped() -> bool:
            current = worker.service.current
            return current is not None and current.archive == newer

        await until(swapped, "the newer archive loaded")
        assert (TRITON_MODEL_REPOSITORY / model_name / "2" / "model.py").is_file()
        await probe.publish(Topic.NLU, say("hello"))
        (after_reload,) = (await parsed.wait_for(4))[3:]
        assert after_reload.event.to_dict()["parse_data"]["intent"]["name"] == "v2_greet"

        # Triton unreachable: messages are held, readiness says so, then all arrive in order.
        await proxy.cut()
        for text in ("hi", "fly to Oslo", "goodbye"):
            await probe.publish(Topic.NLU, say(text, conversation="bob"))

        async def not_ready() -> bool:
            return not (await worker.health.readiness())["ready"]

        await until(not_ready, "readiness reporting Triton down")
        assert len(parsed.items) == 4  # nothing got through, nothing was dead-lettered
        assert len(dead.items) == 1
        await proxy.restore()
        held = (await parsed.wait_for(7, within=WAIT_S))[4:]
        assert [m.event.to_dict()["text"] for m in held] == ["hi", "fly to Oslo", "goodbye"]
        assert [m.event.to_dict()["parse_data"]["intent"]["name"] for m in held] == [
            "v2_greet",
            "v2_book_flight",
            "v2_goodbye",
        ]

        async def ready_again() -> bool:
            return bool((await worker.health.readiness())["ready"])

        await until(ready_again, "readiness after Triton is back")
        assert len(dead.items) == 1
    finally:
        stop.set()
        await runner
        await probe.stop()
