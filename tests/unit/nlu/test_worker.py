"""The NLU worker's handler on the memory bus: parse data out, bad input never fatal, backend
failures held (not lost, not reordered), new models picked up without a restart."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path

import pytest

from schemas.envelopes import DeadLetter, ParsedUserMessage, UserMessage
from schemas.topics import Topic
from services.common import codec
from services.common.bus import Subscription
from services.common.errors import RetryableError
from services.common.health import HealthServer
from services.common.memory_bus import MemoryBus
from services.nlu.archive import ArchiveError, ModelArchive
from services.nlu.inference import Logits, TokenIds
from services.nlu.interpreter import NluInterpreter
from services.nlu.loaders import InProcessLoader
from services.nlu.parse_data import ParseOptions
from services.nlu.worker import NluService
from tests.support.clock import FakeClock
from tests.support.recorder import Recorder

CLOCK = FakeClock()


def message(text: str, conversation: str = "c1", message_id: str | None = None) -> UserMessage:
    built = UserMessage(conversation_id=conversation, text=text, sent_at=CLOCK.now())
    return built.model_copy(update={"message_id": message_id}) if message_id else built


async def run_worker(
    service: NluService, inputs: list[UserMessage | bytes], expect: int
) -> tuple[list[ParsedUserMessage], list[DeadLetter]]:
    bus = MemoryBus(clock=CLOCK)
    parsed, dead = Recorder(), Recorder()
    bus.subscribe(Subscription(Topic.NLU, "nlu", service.handle, UserMessage, concurrency=4))
    bus.subscribe(Subscription(Topic.DIALOGUE, "probe", parsed, ParsedUserMessage))
    bus.subscribe(Subscription(Topic.DEAD_LETTERS, "probe", dead, DeadLetter))
    async with bus:
        for item in inputs:
            if isinstance(item, bytes):
                await bus.publish_bytes(Topic.NLU, b"c1", item)
            else:
                await bus.publish(Topic.NLU, item)
        await bus.drain()
    assert len(parsed.items) + len(dead.items) == expect
    return parsed.items, dead.items


@pytest.fixture
async def service(tiny_archive: Path, tmp_path: Path) -> NluService:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_archive, models / tiny_archive.name)
    nlu = NluService(models, InProcessLoader(), CLOCK)
    assert await nlu.reload_if_newer()
    return nlu


async def test_user_message_becomes_user_uttered_with_rasa_parse_data(
    service: NluService,
) -> None:
    source = message("hello there", message_id="m-1")
    parsed, dead = await run_worker(service, [source], 1)
    assert dead == []
    out = parsed[0]
    assert out.message_id == "m-1"
    assert out.correlation_id == "m-1"
    assert out.conversation_id == "c1"
    event = out.event.to_dict()
    assert event["event"] == "user"
    assert event["text"] == "hello there"
    assert event["parse_data"]["intent"]["name"] == "greet"
    assert event["message_id"] == "m-1"
    assert event["input_channel"] == "rest"


async def test_bad_input_gets_a_result_or_a_dead_letter_never_a_crash(
    service: NluService, caplog: pytest.LogCaptureFixture
) -> None:
    texts = [
        "",
        "   ",
        "fly to Berlin " * 8000,  # ~110 KB
        "🍕🍕 pizza 🍕 to Berlin",
        "我想飞往柏林",
        "Москва",
        "bye\x00\x07\x1b[31m\r\n",
    ]
    inputs: list[UserMessage | bytes] = [
        message(t, message_id=f"m{i}") for i, t in enumerate(texts)
    ]
    valid = codec.encode(message("PLACEHOLDER"))
    inputs.append(valid.replace(b"PLACEHOLDER", b"\xff\xfe broken utf-8"))
    inputs.append(valid.replace(b"PLACEHOLDER", b"fly to \\ud800 Berlin"))  # lone surrogate
    with caplog.at_level(logging.WARNING):
        parsed, dead = await run_worker(service, inputs, len(texts) + 2)
    by_id = {p.message_id: p.event.to_dict()["parse_data"] for p in parsed}
    assert sorted(by_id) == sorted(f"m{i}" for i in range(len(texts)))
    assert by_id["m0"]["intent"]["name"] == "nlu_fallback"  # no intent → below the threshold
    assert by_id["m2"]["intent"]["name"] == "book_flight"
    assert any("truncated" in r.getMessage() for r in caplog.records)
    for data in by_id.values():
        json.dumps(data)  # serialisable
        for entity in data["entities"]:
            assert data["text"][entity["start"] : entity["end"]] == entity["value"] or entity.get(
                "processors"
            )
    assert len(dead) == 2
    for letter in dead:
        assert letter.source_topic.endswith("nlu")
        assert "invalid json" in letter.reason.lower()


class FlakyModel:
    """Fails the first `failures` calls like an unreachable Triton, then delegates."""

    def __init__(self, inner: NluInterpreter, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0

    async def infer(self, input_ids: TokenIds, attention_mask: TokenIds) -> tuple[Logits, Logits]:
        self.calls += 1
        if self.calls <= self.failures:
            raise RetryableError("Triton at 127.0.0.1:1: connection refused")
        return await self.inner.model.infer(input_ids, attention_mask)


class FlakyLoader:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.model: FlakyModel | None = None

    async def load(self, archive: ModelArchive) -> NluInterpreter:
        inner = NluInterpreter.in_process(archive.nlu, ParseOptions.from_rules(archive.nlu.rules))
        self.model = FlakyModel(inner, self.failures)
        return NluInterpreter(archive.nlu, self.model, inner.options)

    async def ready(self, interpreter: NluInterpreter) -> tuple[bool, str]:
        return True, "fake backend"


async def test_backend_down_holds_messages_in_order_and_reports_not_ready(
    tiny_archive: Path,
) -> None:
    loader = FlakyLoader(failures=7)
    slept: list[float] = []
    readiness: list[bool] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        readiness.append((await nlu_service.ready())[0])
        await asyncio.sleep(0)

    nlu_service = NluService(tiny_archive, loader, CLOCK, attempts=3, first_delay=0.01, sleep=sleep)
    await nlu_service.reload_if_newer()
    inputs: list[UserMessage | bytes] = [
        message(t, message_id=f"m{i}") for i, t in enumerate(["hi", "fly to Oslo", "bye"])
    ]
    parsed, dead = await run_worker(nlu_service, inputs, 3)
    assert dead == []  # held and retried, never dead-lettered
    assert [p.message_id for p in parsed] == ["m0", "m1", "m2"]
    assert loader.model is not None
    assert loader.model.calls == 7 + 3
    assert False in readiness  # not ready while inference failed
    assert (await nlu_service.ready())[0]  # ready again once it works
    assert slept[:2] == [0.01, 0.02]  # bounded backoff inside the handler


async def test_a_newer_archive_is_picked_up_and_a_broken_one_ignored(
    service: NluService, tiny_archive: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert service.current is not None
    first = service.current.archive
    assert not await service.reload_if_newer()  # nothing new
    (service.models / "29990101-000000.tar.gz").write_bytes(b"not a tar file")
    with caplog.at_level(logging.ERROR):
        assert not await service.reload_if_newer()
    assert service.current.archive == first
    assert "not loaded" in caplog.text
    newer = service.models / "29990102-000000.tar.gz"
    shutil.copy(tiny_archive, newer)
    assert await service.reload_if_newer()
    assert service.current.archive == newer
    parsed, _ = await run_worker(service, [message("hello")], 1)
    assert parsed[0].event.to_dict()["parse_data"]["intent"]["name"] == "greet"


async def test_no_model_at_start_is_a_clear_error(tmp_path: Path) -> None:
    service = NluService(tmp_path, InProcessLoader(), CLOCK)
    with pytest.raises(ArchiveError, match="no model archive"):
        await service.reload_if_newer()
    assert await service.ready() == (False, "no model loaded")


async def test_health_endpoints_answer_live_and_ready() -> None:
    healthy = True

    async def check() -> tuple[bool, str]:
        return healthy, "fine" if healthy else "triton down"

    server = HealthServer("127.0.0.1", 0)
    server.add_check("model", check)
    await server.start()

    async def get(path: str) -> tuple[int, dict[str, object]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = await reader.read()
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)

    try:
        assert await get("/health/live") == (200, {"live": True})
        status, body = await get("/health/ready")
        assert status == 200
        assert body["ready"] is True
        healthy = False
        status, body = await get("/health/ready")
        assert status == 503
        assert body["checks"] == {"model": {"ok": False, "detail": "triton down"}}
        assert (await get("/nope"))[0] == 404
    finally:
        await server.stop()


def test_parse_data_of_a_user_uttered_is_byte_compatible_json(tiny_archive: Path) -> None:
    parsed = ParsedUserMessage.model_validate_json(
        codec.encode(
            ParsedUserMessage(
                conversation_id="c",
                sent_at=CLOCK.now(),
                event={"event": "user", "text": "x", "parse_data": {}},  # type: ignore[arg-type]
            )
        )
    )
    assert parsed.event.to_dict()["parse_data"]["intent"] == {}
