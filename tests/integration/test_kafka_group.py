"""Consumer-group behaviour over the real broker: two processes, one group, one of them killed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from schemas.envelopes import UserMessage
from schemas.topics import Topic
from services.common.kafka_bus import KafkaBus, ensure_topics
from tests.support.buses import bus_settings, kafka_bootstrap
from tests.support.clock import FakeClock

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MESSAGES = 1000
CONVERSATIONS = 8


@dataclass
class ConsumerProcess:
    name: str
    process: asyncio.subprocess.Process
    handled: list[tuple[str, int]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Condition = field(default_factory=asyncio.Condition)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode().strip()
            if line == "READY":
                self.ready.set()
                continue
            _, conversation, seq = line.split()
            async with self.progress:
                self.handled.append((conversation, int(seq)))
                self.progress.notify_all()

    async def wait_handled(self, count: int, within: float = 60) -> None:
        async def reached() -> None:
            async with self.progress:
                await self.progress.wait_for(lambda: len(self.handled) >= count)

        await asyncio.wait_for(reached(), within)


@dataclass
class Group:
    prefix: str
    log: Path
    consumers: list[ConsumerProcess] = field(default_factory=list)

    async def spawn(self, name: str, delay_ms: float) -> ConsumerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.bus_consumer",
            f"--bootstrap={kafka_bootstrap()}",
            f"--prefix={self.prefix}",
            "--group=workers",
            f"--name={name}",
            f"--log={self.log}",
            f"--delay-ms={delay_ms}",
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )
        consumer = ConsumerProcess(name, process)
        consumer.reader = asyncio.create_task(consumer.read())
        self.consumers.append(consumer)
        await asyncio.wait_for(consumer.ready.wait(), 60)
        return consumer

    def handled_in_order(self) -> list[tuple[str, str, int]]:
        rows = []
        for line in self.log.read_text().splitlines():
            name, conversation, seq = line.split()
            rows.append((name, conversation, int(seq)))
        return rows

    async def wait_all(self, within: float = 90) -> None:
        """Await until every message was handled by some consumer."""

        async def covered() -> None:
            while True:
                seen = {item for c in self.consumers for item in c.handled}
                if len(seen) >= MESSAGES:
                    return
                waiters = [
                    asyncio.create_task(_next_progress(c))
                    for c in self.consumers
                    if c.process.returncode is None
                ]
                if not waiters:
                    raise AssertionError(f"every consumer exited with {len(seen)} handled")
                _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()

        await asyncio.wait_for(covered(), within)


async def _next_progress(consumer: ConsumerProcess) -> None:
    async with consumer.progress:
        await consumer.progress.wait()


@pytest.fixture
async def group(unique_prefix: str, tmp_path: Path) -> AsyncIterator[Group]:
    settings = bus_settings("kafka", unique_prefix)
    await ensure_topics(settings, list(Topic))
    group = Group(unique_prefix, tmp_path / "handled.log")
    yield group
    for consumer in group.consumers:
        if consumer.process.returncode is None:
            consumer.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(consumer.process.wait(), 30)
        if consumer.reader is not None:
            await consumer.reader


async def publish_stream(prefix: str, on_sent: Callable[[int], object] | None = None) -> None:
    clock = FakeClock()
    async with KafkaBus(bus_settings("kafka", prefix), clock=clock) as bus:
        for i in range(MESSAGES):
            message = UserMessage(
                conversation_id=f"conv-{i % CONVERSATIONS}",
                text=str(i // CONVERSATIONS),
                sent_at=clock.now(),
            )
            await bus.publish(Topic.NLU, message)
            if on_sent is not None:
                on_sent(i)


def check_order_and_completeness(rows: list[tuple[str, str, int]]) -> Counter[tuple[str, int]]:
    """Every message handled, each conversation in order; returns the duplicate counts."""
    per_conversation: dict[str, list[int]] = defaultdict(list)
    seen: set[tuple[str, int]] = set()
    duplicates: Counter[tuple[str, int]] = Counter()
    for _, conversation, seq in rows:
        if (conversation, seq) in seen:
            duplicates[(conversation, seq)] += 1
            continue
        seen.add((conversation, seq))
        per_conversation[conversation].append(seq)
    expected = MESSAGES // CONVERSATIONS
    assert sorted(per_conversation) == [f"conv-{i}" for i in range(CONVERSATIONS)]
    for conversation, seqs in per_conversation.items():
        assert seqs == list(range(expected)), f"{conversation}: lost or out of order: {seqs}"
    return duplicates


async def test_two_consumers_share_partitions_and_keep_conversation_order(
    group: Group, record_property: Callable[[str, object], None]
) -> None:
    first = await group.spawn("c1", delay_ms=2)
    second = await group.spawn("c2", delay_ms=2)
    await publish_stream(group.prefix)
    await group.wait_all()

    rows = group.handled_in_order()
    duplicates = check_order_and_completeness(rows)
    by_consumer = Counter(name for name, _, _ in rows)
    record_property("handled_by_consumer", dict(by_consumer))
    record_property("duplicates", sum(duplicates.values()))
    print(f"\nhandled per consumer: {dict(by_consumer)}; duplicates: {sum(duplicates.values())}")
    assert by_consumer["c1"] > 0, "both members got partitions"
    assert by_consumer["c2"] > 0, "both members got partitions"
    assert len(first.handled) + len(second.handled) == len(rows)
    # Each conversation lives on one partition, and a partition belongs to one member at a time.
    owners = {(conv, name) for name, conv, _ in rows}
    assert len({conv for conv, _ in owners}) == CONVERSATIONS


async def test_killed_consumer_partitions_continue_on_the_other(
    group: Group, record_property: Callable[[str, object], None]
) -> None:
    victim = await group.spawn("victim", delay_ms=4)
    survivor = await group.spawn("survivor", delay_ms=4)
    publisher = asyncio.create_task(publish_stream(group.prefix))

    await victim.wait_handled(100)
    os.kill(victim.process.pid, signal.SIGKILL)
    await victim.process.wait()
    assert victim.process.returncode == -signal.SIGKILL
    killed_after = len(victim.handled)

    await publisher
    await group.wait_all()

    rows = group.handled_in_order()
    duplicates = check_order_and_completeness(rows)
    total_duplicates = sum(duplicates.values())
    record_property("victim_handled_before_kill", killed_after)
    record_property("survivor_handled", len(survivor.handled))
    record_property("duplicates", total_duplicates)
    print(
        f"\nvictim handled {killed_after} before SIGKILL, survivor {len(survivor.handled)}; "
        f"duplicates (redelivered after the kill): {total_duplicates} {sorted(duplicates)}"
    )
    assert all(name in ("victim", "survivor") for name, _, _ in rows)
    victim_rows = [(conv, seq) for name, conv, seq in rows if name == "victim"]
    assert len(victim_rows) >= killed_after
    assert len(survivor.handled) >= MESSAGES - len(set(victim_rows))
    # A duplicate is a redelivery of something the victim handled but had not committed.
    assert set(duplicates) <= set(victim_rows)


async def test_a_member_joining_mid_stream_takes_over_cleanly(
    group: Group, record_property: Callable[[str, object], None]
) -> None:
    """A rebalance while the first member works: it finishes its in-flight records and
    commits them before letting go, so the newcomer starts right after them: nothing lost,
    nothing handled twice, every conversation in order."""
    first = await group.spawn("first", delay_ms=4)
    publisher = asyncio.create_task(publish_stream(group.prefix))
    await first.wait_handled(50)
    second = await group.spawn("second", delay_ms=4)
    await publisher
    await group.wait_all()

    rows = group.handled_in_order()
    duplicates = check_order_and_completeness(rows)
    record_property("first_handled", len(first.handled))
    record_property("second_handled", len(second.handled))
    print(f"\nfirst {len(first.handled)}, second {len(second.handled)}; duplicates {duplicates}")
    assert len(second.handled) > 0, "the newcomer got partitions"
    assert not duplicates, "records committed on revoke are not delivered again"
