"""The in-memory transport: the same `Bus` in one process, for the embedded mode and fast tests.

It keeps Kafka's shape where behaviour depends on it: topics have partitions, keys are
hashed with Kafka's own murmur2 partitioner, each consumer group reads each partition
in order, runs a key's records one after another, and commits a partition up to its first
record not yet done. Messages travel as bytes, through
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
from services.common.lanes import Lanes, PartitionProgress, backlog, limited
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
            # Records of different keys finish out of order: a commit never moves back.
            self.committed[position] = max(offset, self.committed.get(position, 0))
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
    """A `Bus` client of a `MemoryBroker` in this process's memory.

    Consumption follows the Kafka bus: per subscription, records are read in order from every
    partition and the handler runs up to `concurrency` at once, a key's one after another
    (`services/common/lanes.py`); a partition's committed offset is the first record not done.
    """

    def __init__(self, broker: MemoryBroker | None = None, *, clock: Clock | None = None) -> None:
        self._broker = broker or MemoryBroker()
        self._clock = clock or SystemClock()
        self._subscriptions: list[Subscription[Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._lanes: list[Lanes[Any]] = []
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
            dispatcher = Dispatcher(limited(subscription), self.publish, self._clock)
            lanes: Lanes[_Delivery] = Lanes(self._deliver)
            self._lanes.append(lanes)
            log = self._broker.logs[subscription.topic]
            for partition in range(len(log.partitions)):
                position = (subscription.group, subscription.topic, partition)
                if subscription.from_latest and position not in self._broker.committed:
                    # a new group that only wants what comes next starts at the end of the log
                    self._broker.committed[position] = len(log.partitions[partition])
                task = asyncio.create_task(
                    self._read(subscription, dispatcher, lanes, partition),
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

    async def _read(
        self,
        subscription: Subscription[Any],
        dispatcher: Dispatcher,
        lanes: Lanes[_Delivery],
        partition: int,
    ) -> None:
        broker = self._broker
        log = broker.logs[subscription.topic]
        records = log.partitions[partition]
        position = (subscription.group, subscription.topic, partition)
        physical = broker.settings.physical(subscription.topic)
        progress = PartitionProgress()
        limit = backlog(subscription.concurrency)
        offset = broker.committed.get(position, 0)

        def ready() -> bool:
            return self._stopping or (offset < len(records) and progress.outstanding < limit)

        while True:
            async with log.changed:
                await log.changed.wait_for(ready)
            if self._stopping:
                return
            key, value = records[offset]
            progress.fetched(offset)
            record = RawRecord(physical, partition, offset, key, value)
            lanes.submit((partition, key), _Delivery(dispatcher, record, progress, position))
            offset += 1

    async def _deliver(self, delivery: _Delivery) -> None:
        record = delivery.record
        while True:
            try:
                await delivery.dispatcher.handle(record)
                break
            except Exception:  # only publishing fails here: the record comes again
                logger.exception(
                    "redelivering %s[%d]@%d", record.topic, record.partition, record.offset
                )
                await asyncio.sleep(REDELIVERY_DELAY_S)
        progress = delivery.progress
        if progress.completed(record.offset) and progress.position is not None:
            await self._broker.commit(delivery.position, progress.position)
        log = self._broker.logs[delivery.position[1]]
        async with log.changed:  # room in the partition's backlog for its reader
            log.changed.notify_all()

    async def stop(self) -> None:
        """Let in-flight handlers finish (up to the graceful timeout, then they are cancelled);
        records read but not started are dropped, uncommitted, as on Kafka."""
        self._stopping = True
        for log in self._broker.logs.values():
            async with log.changed:
                log.changed.notify_all()
        await asyncio.gather(*self._tasks)
        self._tasks.clear()
        grace = self._broker.settings.graceful_timeout_s
        for lanes in self._lanes:
            await lanes.close(lambda _: True, grace)
        self._lanes.clear()

    async def __aenter__(self) -> MemoryBus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


@dataclass(frozen=True)
class _Delivery:
    dispatcher: Dispatcher
    record: RawRecord
    progress: PartitionProgress
    position: tuple[str, Topic, int]
