"""The Kafka transport, on aiokafka.

Delivery semantics, declared:
- producer: idempotent, `acks=all`; every message keyed by its conversation id, so the
  Java-compatible murmur2 partitioner puts a conversation on one partition;
- consumer: one aiokafka consumer per subscription and process fetches; the handler runs
  up to `Subscription.concurrency` records at once, records of one key (a conversation)
  one after another in offset order (`services/common/lanes.py`);
- at-least-once: a partition's offset is committed only up to the first record not yet done
  (the dispatcher returned: handled, results published, or dead-lettered); a record whose
  publishing failed is delivered again in place, so its key waits;
- backpressure: a partition with `backlog` records fetched and not done is paused;
- rebalance: revoked partitions drop their queued records, wait up to `graceful_timeout_s`
  for the running ones (then cancel them) and commit what is done before the group moves on;
- shutdown: the same for every partition, then the producer is flushed and closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from contextlib import suppress
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.envelopes import Envelope
from schemas.topics import Topic
from services.common import codec
from services.common.bus import RawMessage, RawRecord, Subscription
from services.common.clock import Clock, SystemClock
from services.common.dispatch import Dispatcher
from services.common.errors import RetryableError
from services.common.lanes import Lanes, PartitionProgress, backlog, limited
from services.common.settings import BusSettings

logger = logging.getLogger(__name__)

REDELIVERY_DELAY_S = 0.05
FETCH_TIMEOUT_MS = 500  # how long an idle fetch waits before the loop checks it should stop
HEADERS = [("content-type", codec.CONTENT_TYPE.encode())]


class KafkaBus:
    """A `Bus` over a real Kafka cluster."""

    def __init__(self, settings: BusSettings, *, clock: Clock | None = None) -> None:
        self._settings = settings
        self._clock = clock or SystemClock()
        self._subscriptions: list[Subscription[Any]] = []
        self._producer: AIOKafkaProducer | None = None
        self._consumers: list[_GroupConsumer] = []

    def subscribe(self, subscription: Subscription[Any]) -> None:
        if self._producer is not None:
            raise RuntimeError("subscribe() must be called before start()")
        self._subscriptions.append(subscription)

    async def start(self) -> None:
        settings = self._settings
        await ensure_topics(settings, list(Topic))
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=settings.client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=settings.linger_ms,
        )
        await producer.start()
        self._producer = producer
        for subscription in self._subscriptions:
            dispatcher = Dispatcher(limited(subscription), self.publish, self._clock)
            consumer = _GroupConsumer(settings, subscription, dispatcher)
            self._consumers.append(consumer)
            await consumer.start()
        logger.info(
            "kafka bus started: %s, %d subscription(s)",
            settings.kafka_bootstrap_servers,
            len(self._subscriptions),
        )

    async def publish(self, topic: Topic, message: Envelope | RawMessage) -> None:
        if isinstance(message, RawMessage):
            await self.publish_bytes(topic, message.key, message.value)
        else:
            await self.publish_bytes(topic, message.key, codec.encode(message))

    async def publish_bytes(self, topic: Topic, key: bytes | None, value: bytes) -> None:
        if self._producer is None:
            raise RuntimeError("the bus is not started")
        await self._producer.send_and_wait(
            self._settings.physical(topic), value, key=key, headers=HEADERS
        )

    async def stop(self) -> None:
        consumers, self._consumers = self._consumers, []
        # Consumers first: their in-flight handlers still publish through the producer.
        await asyncio.gather(*(consumer.stop() for consumer in consumers))
        if self._producer is None:
            return
        producer, self._producer = self._producer, None
        await producer.stop()
        logger.info("kafka bus stopped")

    async def __aenter__(self) -> KafkaBus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, member: _GroupConsumer) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._member.let_go(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._member.take(set(assigned))


class _GroupConsumer:
    """One subscription's member of its consumer group: fetch, run in lanes, commit."""

    def __init__(
        self, settings: BusSettings, subscription: Subscription[Any], dispatcher: Dispatcher
    ) -> None:
        self._settings = settings
        self._subscription = subscription
        self._dispatcher = dispatcher
        self._backlog = backlog(subscription.concurrency)
        self._lanes: Lanes[Any] = Lanes(self._deliver)
        self._progress: dict[TopicPartition, PartitionProgress] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._leaving: set[TopicPartition] = set()
        self._commit_lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._assigned = asyncio.Event()

    async def start(self) -> None:
        settings = self._settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=settings.client_id,
            group_id=self._subscription.group,
            enable_auto_commit=False,
            auto_offset_reset="latest" if self._subscription.from_latest else "earliest",
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
        )
        consumer.subscribe([settings.physical(self._subscription.topic)], listener=_Rebalance(self))
        await consumer.start()
        self._consumer = consumer
        if self._subscription.from_latest:
            await self._settle_at_the_end(consumer)
        name = f"{self._subscription.group}:{self._subscription.topic}"
        self._tasks = [
            asyncio.create_task(self._fetch(consumer), name=f"kafka-fetch:{name}"),
            asyncio.create_task(self._commit_when_dirty(), name=f"kafka-commit:{name}"),
        ]

    async def _settle_at_the_end(self, consumer: AIOKafkaConsumer) -> None:
        """A group that starts at the end of its topic: wait for the assignment and resolve
        the positions now, so every message published after `start()` returns is read."""
        try:
            await asyncio.wait_for(
                self._assigned.wait(), 3 * self._settings.session_timeout_ms / 1000
            )
            for tp in consumer.assignment():
                await consumer.position(tp)
        except TimeoutError:
            logger.warning(
                "%s: no partitions assigned yet; messages before the assignment are skipped",
                self._subscription.group,
            )

    async def _fetch(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS)
            except KafkaError as exc:
                logger.error("fetching %s failed, retrying: %s", self._subscription.topic, exc)
                await asyncio.sleep(REDELIVERY_DELAY_S)
                continue
            for tp, records in batches.items():
                progress = self._progress.get(tp)
                if progress is None or tp in self._leaving:  # revoked meanwhile
                    continue
                for record in records:
                    if progress.fetched(record.offset):
                        self._lanes.submit((tp, record.key), record)
                if progress.outstanding >= self._backlog and tp not in self._paused:
                    consumer.pause(tp)
                    self._paused.add(tp)

    async def _deliver(self, record: Any) -> None:
        raw = RawRecord(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value if record.value is not None else b"",
        )
        while True:
            try:
                await self._dispatcher.handle(raw)
                break
            except Exception:  # only publishing fails here: the record comes again
                logger.exception(
                    "publishing for %s[%d]@%d failed; delivering it again in %.2fs",
                    raw.topic,
                    raw.partition,
                    raw.offset,
                    REDELIVERY_DELAY_S,
                )
                await asyncio.sleep(REDELIVERY_DELAY_S)
        tp = TopicPartition(record.topic, record.partition)
        progress = self._progress.get(tp)
        if progress is None:
            return
        if progress.completed(record.offset):
            self._dirty.set()
        if tp in self._paused and progress.outstanding <= self._backlog // 2:
            self._paused.discard(tp)
            if self._consumer is not None:
                self._consumer.resume(tp)

    async def _commit_when_dirty(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._commit()

    async def _commit(self) -> None:
        """Commit every partition's position that moved since its last commit."""
        async with self._commit_lock:
            offsets = {
                tp: progress.position
                for tp, progress in self._progress.items()
                if progress.position is not None and progress.position > self._committed.get(tp, -1)
            }
            if not offsets or self._consumer is None:
                return
            try:
                await self._consumer.commit(offsets)
            except KafkaError as exc:
                # The group moved on (or the broker is away): the next owner starts from the
                # last commit that succeeded, and records after it come again.
                logger.warning("committing %s failed: %s", offsets, exc)
                return
            self._committed.update(offsets)

    def take(self, partitions: set[TopicPartition]) -> None:
        """Partitions assigned: their records are fetched from the committed offsets."""
        for tp in partitions:
            self._progress.setdefault(tp, PartitionProgress())
        self._assigned.set()

    async def let_go(self, partitions: set[TopicPartition]) -> None:
        """Finish (or abandon) the partitions' running records and commit what is done."""
        if not partitions:
            return
        self._leaving |= partitions

        def of_partitions(lane: Hashable) -> bool:
            return isinstance(lane, tuple) and lane[0] in partitions

        abandoned = await self._lanes.close(of_partitions, self._settings.graceful_timeout_s)
        if abandoned:
            logger.warning(
                "%d record(s) still running after %.1fs on %s: abandoned, they come again",
                abandoned,
                self._settings.graceful_timeout_s,
                sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions),
            )
        await self._commit()
        for tp in partitions:
            self._progress.pop(tp, None)
            self._committed.pop(tp, None)
            self._paused.discard(tp)
        self._leaving -= partitions

    async def stop(self) -> None:
        if self._consumer is None:
            return
        fetch, committer = self._tasks
        fetch.cancel()
        with suppress(asyncio.CancelledError):
            await fetch
        await self.let_go(set(self._progress))
        committer.cancel()
        with suppress(asyncio.CancelledError):
            await committer
        consumer, self._consumer = self._consumer, None
        await consumer.stop()


async def ensure_topics(settings: BusSettings, topics: list[Topic]) -> list[str]:
    """Create the topics that are missing; returns the names it created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, client_id=settings.client_id
    )
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise RetryableError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers} ({exc}); start it with "
            "`make services-up` or point KAFKA_BOOTSTRAP_SERVERS at a running broker"
        ) from exc
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=settings.physical(topic),
                num_partitions=settings.partitions_of(topic),
                replication_factor=settings.replication_factor,
            )
            for topic in topics
            if settings.physical(topic) not in existing
        ]
        if not missing:
            return []
        try:
            await admin.create_topics(missing)
        except TopicAlreadyExistsError:
            logger.debug("another process created some topics first")
        created = [new.name for new in missing]
        logger.info("created topics %s", ", ".join(created))
        return created
    finally:
        await admin.close()
