"""One set of bus tests, run against the in-memory transport and against the real Kafka broker."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from schemas.envelopes import DeadLetter, ParsedUserMessage, UserMessage
from schemas.events import UserUttered
from schemas.topics import Topic
from services.common.bus import Bus, Publication, RetryPolicy, Subscription
from services.common.errors import RetryableError
from tests.support.clock import FakeClock
from tests.support.recorder import Recorder

BusFactory = Callable[[], Bus]
TRANSPORTS = ["memory", pytest.param("kafka", marks=pytest.mark.integration)]


@pytest.fixture(params=TRANSPORTS)
async def make_bus(request: pytest.FixtureRequest, unique_prefix: str) -> AsyncIterator[BusFactory]:
    """Builds buses that share one set of topics (one test's worth), and stops them after."""
    async for factory in _factory(request.param, unique_prefix):
        yield factory


@pytest.fixture(params=TRANSPORTS)
async def make_one_partition_bus(
    request: pytest.FixtureRequest, unique_prefix: str
) -> AsyncIterator[BusFactory]:
    """The same, with one partition per topic and a short grace for in-flight handlers."""
    async for factory in _factory(
        request.param, unique_prefix, partitions=1, graceful_timeout_s=0.5
    ):
        yield factory


async def _factory(transport: str, prefix: str, **overrides: Any) -> AsyncIterator[BusFactory]:
    from tests.support.buses import bus_settings, new_bus

    settings = bus_settings(transport, prefix, **overrides)  # type: ignore[arg-type]
    shared: dict[str, Any] = {}
    made: list[Bus] = []

    def factory() -> Bus:
        bus = new_bus(settings, clock=FakeClock(), shared=shared)
        made.append(bus)
        return bus

    yield factory
    for bus in reversed(made):
        await bus.stop()


def user_message(conversation: str, seq: int) -> UserMessage:
    clock = FakeClock()
    return UserMessage(conversation_id=conversation, text=str(seq), sent_at=clock.now())


async def test_every_message_arrives_in_order_per_conversation(make_bus: BusFactory) -> None:
    recorder = Recorder()
    bus = make_bus()
    bus.subscribe(Subscription(Topic.NLU, "nlu", recorder, UserMessage, concurrency=4))
    await bus.start()

    sent = [user_message(f"conv-{i % 8}", i // 8) for i in range(200)]
    for message in sent:
        await bus.publish(Topic.NLU, message)

    received = await recorder.wait_for(len(sent))
    assert sorted(m.message_id for m in received) == sorted(m.message_id for m in sent)
    for conversation in {m.conversation_id for m in sent}:
        seqs = [int(m.text) for m in received if m.conversation_id == conversation]
        assert seqs == list(range(25)), f"{conversation} out of order: {seqs}"


async def test_conversations_stay_in_order_while_handled_concurrently(
    make_bus: BusFactory,
) -> None:
    """Handlers that take turns yielding: records of other keys overtake, a key's never do."""
    recorder = Recorder()
    running: set[str] = set()
    clashes: list[str] = []
    overlapped: list[str] = []

    async def record(message: UserMessage) -> Sequence[Publication]:
        conversation = message.conversation_id
        if conversation in running:
            clashes.append(conversation)
        running.add(conversation)
        if len(running) > 1:
            overlapped.append(conversation)
        for _ in range(int(message.text) % 5 + 1):
            await asyncio.sleep(0)
        running.discard(conversation)
        return await recorder(message)

    bus = make_bus()
    bus.subscribe(Subscription(Topic.NLU, "nlu", record, UserMessage, concurrency=8))
    await bus.start()
    sent = [user_message(f"conv-{i % 16}", i // 16) for i in range(320)]
    await asyncio.gather(*(bus.publish(Topic.NLU, message) for message in sent))

    received = await recorder.wait_for(len(sent), within=60)
    assert not clashes, f"two records of one conversation at once: {clashes}"
    assert sorted(m.message_id for m in received) == sorted(m.message_id for m in sent)
    for conversation in {m.conversation_id for m in sent}:
        seqs = [int(m.text) for m in received if m.conversation_id == conversation]
        assert seqs == list(range(20)), f"{conversation} out of order: {seqs}"
    assert overlapped, "records of different conversations ran at once"


async def test_the_handler_runs_up_to_concurrency_records_at_once(make_bus: BusFactory) -> None:
    running, peak = 0, 0
    all_in, gate = asyncio.Event(), asyncio.Event()
    recorder = Recorder()

    async def gated(message: UserMessage) -> Sequence[Publication]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 3:
            all_in.set()
        await gate.wait()
        running -= 1
        return await recorder(message)

    bus = make_bus()
    bus.subscribe(Subscription(Topic.NLU, "nlu", gated, UserMessage, concurrency=3))
    await bus.start()
    for i in range(7):  # seven conversations: seven lanes, three slots
        await bus.publish(Topic.NLU, user_message(f"lane-{i}", 0))

    await asyncio.wait_for(all_in.wait(), 30)
    gate.set()
    await recorder.wait_for(7)
    assert peak == 3


async def test_the_commit_stops_at_the_first_record_not_done(
    make_one_partition_bus: BusFactory,
) -> None:
    """One partition: bob's later records finish while alice's is stuck; a stop abandons
    alice's after the grace, and the next member gets it again with everything after it."""
    stuck, first = asyncio.Event(), Recorder()

    async def sticky(message: UserMessage) -> Sequence[Publication]:
        if message.conversation_id == "alice":
            stuck.set()
            await asyncio.Event().wait()  # never returns: abandoned by stop()
        return await first(message)

    bus = make_one_partition_bus()
    bus.subscribe(Subscription(Topic.NLU, "nlu", sticky, UserMessage, concurrency=2))
    await bus.start()
    for conversation, seq in [("bob", 0), ("alice", 1), ("bob", 2), ("bob", 3)]:
        await bus.publish(Topic.NLU, user_message(conversation, seq))
    handled = await first.wait_for(3)
    assert [m.text for m in handled] == ["0", "2", "3"]
    await asyncio.wait_for(stuck.wait(), 30)
    await asyncio.wait_for(bus.stop(), 30)

    again = Recorder()
    second = make_one_partition_bus()
    second.subscribe(Subscription(Topic.NLU, "nlu", again, UserMessage, concurrency=2))
    await second.start()
    await second.publish(Topic.NLU, user_message("carol", 4))
    redelivered = await again.wait_for(4)
    assert sorted(m.text for m in redelivered) == ["1", "2", "3", "4"]
    assert [m.text for m in redelivered if m.conversation_id == "bob"] == ["2", "3"]


async def test_handler_publications_reach_the_next_topic(make_bus: BusFactory) -> None:
    downstream = Recorder()

    async def parse(message: UserMessage) -> Sequence[Publication]:
        event = UserUttered(text=message.text, parse_data={"intent": {"name": "greet"}})
        parsed = ParsedUserMessage(
            conversation_id=message.conversation_id,
            correlation_id=message.message_id,
            sent_at=message.sent_at,
            event=event,
        )
        return [Publication(Topic.DIALOGUE, parsed)]

    bus = make_bus()
    bus.subscribe(Subscription(Topic.NLU, "nlu", parse, UserMessage))
    bus.subscribe(Subscription(Topic.DIALOGUE, "dialogue", downstream, ParsedUserMessage))
    await bus.start()
    original = user_message("alice", 1)
    await bus.publish(Topic.NLU, original)

    [parsed] = await downstream.wait_for(1)
    assert parsed.correlation_id == original.message_id
    assert parsed.event.intent_name == "greet"
    assert parsed.conversation_id == "alice"


async def test_undecodable_bytes_are_dead_lettered_and_consumption_goes_on(
    make_bus: BusFactory,
) -> None:
    handled, dead = Recorder(), Recorder()
    bus = make_bus()
    bus.subscribe(Subscription(Topic.NLU, "nlu", handled, UserMessage))
    bus.subscribe(Subscription(Topic.DEAD_LETTERS, "ops", dead, DeadLetter))
    await bus.start()

    garbage = b"\xff\xfe not json at all"
    await bus.publish_bytes(Topic.NLU, b"bob", garbage)
    await bus.publish_bytes(Topic.NLU, b"bob", b'{"kind": "user_message", "text": 5}')
    await bus.publish(Topic.NLU, user_message("bob", 7))

    [ok] = await handled.wait_for(1)
    assert ok.text == "7"
    letters = await dead.wait_for(2)
    by_original = {letter.original: letter for letter in letters}
    first = by_original[garbage]
    assert first.reason.startswith("undecodable message: ")
    assert first.error_type == "DecodeError"
    assert first.source_topic.endswith(".nlu")
    assert first.consumer_group == "nlu"
    assert first.conversation_id == "bob"
    assert first.key_b64 == base64.b64encode(b"bob").decode()
    assert first.offset >= 0
    assert first.partition >= 0
    second = by_original[b'{"kind": "user_message", "text": 5}']
    assert "conversation_id: Field required" in second.reason
    assert "text: Input should be a valid string" in second.reason
    assert second.offset == first.offset + 1, "same key, same partition, next offset"


async def test_a_failing_handler_dead_letters_only_that_message(make_bus: BusFactory) -> None:
    handled, dead = Recorder(), Recorder()

    async def picky(message: UserMessage) -> Sequence[Publication]:
        if message.text == "boom":
            raise ValueError("cannot handle boom")
        await handled.add(message)
        return ()

    bus = make_bus()
    bus.subscribe(Subscription(Topic.NLU, "nlu", picky, UserMessage))
    bus.subscribe(Subscription(Topic.DEAD_LETTERS, "ops", dead, DeadLetter))
    await bus.start()
    boom = UserMessage(conversation_id="carol", text="boom", sent_at=FakeClock().now())
    await bus.publish(Topic.NLU, boom)
    await bus.publish(Topic.NLU, user_message("carol", 2))

    [after] = await handled.wait_for(1)
    assert after.text == "2"
    [letter] = await dead.wait_for(1)
    assert letter.reason == "handler raised ValueError: cannot handle boom"
    assert letter.error_type == "ValueError"
    assert UserMessage.model_validate_json(letter.original) == boom


async def test_retryable_errors_are_retried_then_dead_lettered(make_bus: BusFactory) -> None:
    attempts: dict[str, int] = {}
    handled, dead = Recorder(), Recorder()

    async def flaky(message: UserMessage) -> Sequence[Publication]:
        attempts[message.text] = attempts.get(message.text, 0) + 1
        if message.text == "never" or attempts[message.text] < 3:
            raise RetryableError("dependency unavailable", delay=0.0)
        await handled.add(message)
        return ()

    retry = RetryPolicy(attempts=4, first_delay=0.0)
    bus = make_bus()
    bus.subscribe(Subscription(Topic.NLU, "nlu", flaky, UserMessage, retry=retry))
    bus.subscribe(Subscription(Topic.DEAD_LETTERS, "ops", dead, DeadLetter))
    await bus.start()
    await bus.publish(
        Topic.NLU, UserMessage(conversation_id="d", text="never", sent_at=FakeClock().now())
    )
    await bus.publish(
        Topic.NLU, UserMessage(conversation_id="d", text="third", sent_at=FakeClock().now())
    )

    [ok] = await handled.wait_for(1)
    assert ok.text == "third"
    assert attempts == {"never": 4, "third": 3}
    [letter] = await dead.wait_for(1)
    assert letter.attempts == 4
    assert letter.error_type == "RetryableError"


async def test_stop_finishes_in_flight_work_and_commits_it(make_bus: BusFactory) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def slow(message: UserMessage) -> Sequence[Publication]:
        started.set()
        await release.wait()
        finished.append(message.text)
        return ()

    first = make_bus()
    first.subscribe(Subscription(Topic.NLU, "nlu", slow, UserMessage))
    await first.start()
    await first.publish(Topic.NLU, user_message("erin", 1))
    await asyncio.wait_for(started.wait(), 30)

    stopping = asyncio.create_task(first.stop())
    await asyncio.sleep(0)  # let stop() begin while the handler is still running
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 30)
    assert finished == ["1"]

    # A new member of the same group starts after the committed offset: no redelivery.
    again = Recorder()
    second = make_bus()
    second.subscribe(Subscription(Topic.NLU, "nlu", again, UserMessage))
    await second.start()
    await second.publish(Topic.NLU, user_message("erin", 2))
    [only] = await again.wait_for(1)
    assert only.text == "2"


async def test_memory_bus_drain_returns_once_everything_is_handled() -> None:
    """Burst mode: a test can await the whole backlog instead of sleeping."""
    from services.common.memory_bus import MemoryBus

    recorder, downstream = Recorder(), Recorder()

    async def forward(message: UserMessage) -> Sequence[Publication]:
        await recorder.add(message)
        return [Publication(Topic.OUTBOUND, message)]

    bus = MemoryBus(clock=FakeClock())
    bus.subscribe(Subscription(Topic.NLU, "nlu", forward, UserMessage))
    bus.subscribe(Subscription(Topic.OUTBOUND, "gateway", downstream, UserMessage))
    async with bus:
        for i in range(50):
            await bus.publish(Topic.NLU, user_message(f"c{i % 5}", i))
        await asyncio.wait_for(bus.drain(), 10)
        assert len(recorder.items) == 50
        assert len(downstream.items) == 50


async def test_raw_publications_go_out_as_given(make_bus: BusFactory) -> None:
    """A handler may publish bytes as they are (Rasa event records on parley.events)."""
    from schemas.envelopes import OutboundMessage
    from services.common import codec
    from services.common.bus import RawMessage

    downstream = Recorder()
    outbound = OutboundMessage(conversation_id="bob", sent_at=FakeClock().now())

    async def forward(message: UserMessage) -> Sequence[Publication]:
        return [Publication(Topic.OUTBOUND, RawMessage(b"bob", codec.encode(outbound)))]

    bus = make_bus()
    bus.subscribe(Subscription(Topic.NLU, "nlu", forward, UserMessage))
    bus.subscribe(Subscription(Topic.OUTBOUND, "gateway", downstream, OutboundMessage))
    await bus.start()
    await bus.publish(Topic.NLU, user_message("alice", 1))
    [received] = await downstream.wait_for(1)
    assert received == outbound


async def test_a_group_from_latest_reads_only_what_comes_after_it_started(
    make_bus: BusFactory,
) -> None:
    """Broadcast readers (each gateway replica) start at the end of the topic: what was
    published before they joined is not theirs; everything after `start()` returns is."""
    publisher = make_bus()
    await publisher.start()
    before = [user_message(f"conv-{i}", 0) for i in range(8)]
    for message in before:
        await publisher.publish(Topic.OUTBOUND, message)
    recorder = Recorder()
    reader = make_bus()
    reader.subscribe(
        Subscription(Topic.OUTBOUND, "replica-1", recorder, UserMessage, from_latest=True)
    )
    await reader.start()
    after = [user_message(f"conv-{i}", 1) for i in range(8)]
    for message in after:
        await publisher.publish(Topic.OUTBOUND, message)
    received = await recorder.wait_for(len(after))
    assert sorted(m.message_id for m in received) == sorted(m.message_id for m in after)
