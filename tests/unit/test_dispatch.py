"""The runtime wrapper: what each kind of failure becomes, and the log lines it writes."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from schemas.envelopes import DeadLetter, Envelope, UserMessage
from schemas.topics import Topic
from services.common import codec
from services.common.bus import Publication, RawMessage, RawRecord, RetryPolicy, Subscription
from services.common.dispatch import Dispatcher
from services.common.errors import PermanentError, RetryableError
from tests.support.clock import FakeClock

CLOCK = FakeClock()


class Sink:
    def __init__(self, fail: bool = False) -> None:
        self.published: list[tuple[Topic, Envelope | RawMessage]] = []
        self.fail = fail

    async def __call__(self, topic: Topic, message: Envelope | RawMessage) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.published.append((topic, message))


def record(message: UserMessage | bytes, key: bytes | None = b"c1") -> RawRecord:
    value = message if isinstance(message, bytes) else codec.encode(message)
    return RawRecord("parley.nlu", 3, 17, key, value)


def hello() -> UserMessage:
    return UserMessage(conversation_id="c1", text="hello", sent_at=CLOCK.now())


async def test_results_are_published_in_order() -> None:
    async def handler(message: UserMessage) -> Sequence[Publication]:
        return [Publication(Topic.OUTBOUND, message), Publication(Topic.EVENTS, message)]

    sink = Sink()
    await Dispatcher(Subscription(Topic.NLU, "g", handler, UserMessage), sink, CLOCK).handle(
        record(hello())
    )
    assert [topic for topic, _ in sink.published] == [Topic.OUTBOUND, Topic.EVENTS]


async def test_retryable_error_uses_its_own_delay_then_the_policy() -> None:
    slept: list[float] = []
    calls = 0

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def handler(message: UserMessage) -> Sequence[Publication]:
        nonlocal calls
        calls += 1
        raise RetryableError("triton is down", delay=0.7 if calls == 1 else None)

    sink = Sink()
    policy = RetryPolicy(attempts=4, first_delay=0.1, max_delay=0.15)
    dispatcher = Dispatcher(
        Subscription(Topic.NLU, "g", handler, UserMessage, retry=policy), sink, CLOCK, sleep=sleep
    )
    await dispatcher.handle(record(hello()))
    assert calls == 4
    assert slept == [0.7, 0.15, 0.15]
    [(topic, letter)] = sink.published
    assert topic is Topic.DEAD_LETTERS
    assert isinstance(letter, DeadLetter)
    assert (letter.attempts, letter.reason, letter.partition, letter.offset) == (
        4,
        "triton is down",
        3,
        17,
    )


async def test_permanent_error_is_dead_lettered_at_once(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(message: UserMessage) -> Sequence[Publication]:
        raise PermanentError("text is empty")

    sink = Sink()
    with caplog.at_level(logging.ERROR, logger="services.common.dispatch"):
        await Dispatcher(Subscription(Topic.NLU, "g", handler, UserMessage), sink, CLOCK).handle(
            record(hello())
        )
    [(_, letter)] = sink.published
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "text is empty"
    assert letter.attempts == 1
    assert "dead-lettering parley.nlu[3]@17 after 1 attempt(s): text is empty" in caplog.text


async def test_undecodable_record_with_binary_key() -> None:
    async def handler(message: UserMessage) -> Sequence[Publication]:
        raise AssertionError("never called")

    sink = Sink()
    await Dispatcher(Subscription(Topic.NLU, "g", handler, UserMessage), sink, CLOCK).handle(
        record(b"{", key=b"\xff\xfe")
    )
    [(_, letter)] = sink.published
    assert isinstance(letter, DeadLetter)
    assert letter.conversation_id == "<unknown>"
    assert letter.key_b64 == "//4="
    assert letter.reason.startswith("undecodable message: <message>: Invalid JSON")


async def test_a_publish_failure_escapes_so_the_record_is_redelivered() -> None:
    async def handler(message: UserMessage) -> Sequence[Publication]:
        return [Publication(Topic.OUTBOUND, message)]

    dispatcher = Dispatcher(
        Subscription(Topic.NLU, "g", handler, UserMessage), Sink(fail=True), CLOCK
    )
    with pytest.raises(ConnectionError):
        await dispatcher.handle(record(hello()))


async def test_log_lines_carry_the_conversation(caplog: pytest.LogCaptureFixture) -> None:
    from services.common.correlation import CorrelationFilter

    log = logging.getLogger("tests.handler")

    async def handler(message: UserMessage) -> Sequence[Publication]:
        log.warning("handling %s", message.text)
        return ()

    message = hello()
    caplog.handler.addFilter(CorrelationFilter())
    with caplog.at_level(logging.WARNING, logger="tests.handler"):
        await Dispatcher(Subscription(Topic.NLU, "g", handler, UserMessage), Sink(), CLOCK).handle(
            record(message)
        )
    [line] = caplog.records
    assert line.conversation_id == "c1"  # type: ignore[attr-defined]
    assert line.message_id == message.message_id  # type: ignore[attr-defined]
