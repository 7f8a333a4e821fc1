"""The in-memory transport: the same `Bus` in one process, for the embedded mode and fast tests.

It keeps Kafka's shape where behaviour depends on it: topics have partitions, keys are
hashed with Kafka's own murmur2 partitioner, each consumer group reads each partition
in order and commits after the dispatcher returned. Messages travel as bytes, through
the same codec and dispatcher as on Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka.partitioner import murmur2

from schemas.envelopes import Envelope
from schemas.topics import Topic
from services.common import codec
from services.common.bus import RawMessage, RawRecord, Subscription
from services.common.clock import Clock, SystemClock
from services.common.dispatch import Dispatcher
from services.common.settings import BusSettings

logger = logging.getLogger(__name__)

REDELIVERY_DELAY_S = 0.05


def partition_for(key: bytes | None, partitions: int, counter: int) -> int:
    """Kafka's default partitioner: murmur2 of the key; keyless records round-robin."""
    if key is None:
        return counter % partitions
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass
class _Log:
    partitions: list[list[tuple[bytes | None, bytes]]]
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    published: int = 0


class MemoryBroker:
    """The in-process "cluster": topic logs and each group's committed offsets.

    Several `MemoryBus` clients may share one broker, as services share a Kafka cluster.
    """

    def __init__(self, settings: BusSettings | None = None) -> None:
        self.settings = settings or BusSettings(transport="memory")
        self.logs: dict[Topic, _Log] = {
            topic: _Log([[] for _ in range(self.settings.partitions_of(topic))]) for topic in Topic
        }
        self.committed: dict[tuple[str, Topic, int], int] = {}
        self.progress = asyncio.Condition()

    async def append(self, topic: Topic, key: bytes | None, value: bytes) -> None:
        log = self.logs[topic]
        partition = partition_for(key, len(log.partitions), log.published)
        async with log.changed:
            log.partitions[partition].append((key, value))
            log.published += 1
            log.changed.notify_all()

    async def commit(self, position: tuple[str, Topic, int], offset: int) -> None:
        async with self.progress:
            self.committed[position] = offset
            self.progress.notify_all()

    async def drain(self, groups: list[tuple[str, Topic]]) -> None:
        """Wait until each (group, topic) has handled everything published to the topic."""

        def handled() -> bool:
            return all(
                self.committed.get((group, topic, partition), 0) >= len(records)
                for group, topic in groups
                for partition, records in enumerate(self.logs[topic].partitions)
            )

        async with self.progress:
            await self.progress.wait_for(handled)


class MemoryBus:
    """A `Bus` client of a `MemoryBroker` in this process's memory."""

    def __init__(self, broker: MemoryBroker | None = None, *, clock: Clock | None = None) -> None:
        self._broker = broker or MemoryBroker()
        self._clock = clock or SystemClock()
        self._subscriptions: list[Subscription[Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def subscribe(self, subscription: Subscription[Any]) -> None:
        if self._tasks:
            raise RuntimeError("subscribe() must be called before start()")
        if any(
            (s.topic, s.group) == (subscription.topic, subscription.group)
            for s in self._subscriptions
        ):
            raise ValueError(f"group {subscription.group!r} already consumes {subscription.topic}")
        self._subscriptions.append(subscription)

    async def start(self) -> None:
        for subscription in self._subscriptions:
            dispatcher = Dispatcher(subscription, self.publish, self._clock)
            for partition in range(len(self._broker.logs[subscription.topic].partitions)):
                task = asyncio.create_task(
                    self._consume(subscription, dispatcher, partition),
                    name=f"memory-bus:{subscription.group}:{subscription.topic}:{partition}",
                )
                self._tasks.append(task)

    async def publish(self, topic: Topic, message: Envelope | RawMessage) -> None:
        if isinstance(message, RawMessage):
            await self._broker.append(topic, message.key, message.value)
        else:
            await self._broker.append(topic, message.key, codec.encode(message))

    async def publish_bytes(self, topic: Topic, key: bytes | None, value: bytes) -> None:
        await self._broker.append(topic, key, value)

    async def drain(self) -> None:
        """Wait until this bus's subscriptions have handled everything published (burst mode)."""
        await self._broker.drain([(s.group, s.topic) for s in self._subscriptions])

    async def _consume(
        self, subscription: Subscription[Any], dispatcher: Dispatcher, partition: int
    ) -> None:
        broker = self._broker
        log = broker.logs[subscription.topic]
        records = log.partitions[partition]
        position = (subscription.group, subscription.topic, partition)
        physical = broker.settings.physical(subscription.topic)
        while True:
            offset = broker.committed.get(position, 0)

            def ready(offset: int = offset) -> bool:
                return self._stopping or offset < len(records)

            async with log.changed:
                await log.changed.wait_for(ready)
            if self._stopping:
                return
            key, value = records[offset]
            try:
                await dispatcher.handle(RawRecord(physical, partition, offset, key, value))
            except Exception:
                logger.exception("redelivering %s[%d]@%d", physical, partition, offset)
                await asyncio.sleep(REDELIVERY_DELAY_S)
                continue
            await broker.commit(position, offset + 1)

    async def stop(self) -> None:
        """Let in-flight handlers finish (they are never cancelled mid-message), then stop."""
        self._stopping = True
        for log in self._broker.logs.values():
            async with log.changed:
                log.changed.notify_all()
        if self._tasks:
            _, pending = await asyncio.wait(
                self._tasks, timeout=self._broker.settings.graceful_timeout_s
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()

    async def __aenter__(self) -> MemoryBus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
