"""The Kafka transport: FastStream on aiokafka.

Delivery semantics, declared:
- producer: idempotent, `acks=all`; every message keyed by its conversation id, so the
  Java-compatible murmur2 partitioner puts a conversation on one partition;
- consumer: `AckPolicy.NACK_ON_ERROR` - the offset is committed only after the
  dispatcher returned (handled, results published, or dead-lettered); if publishing
  failed the consumer seeks back and the record comes again (at-least-once);
- ordering: sequential within a partition, concurrent across partitions
  (`Subscription.concurrency` consumers of the group in this process);
- shutdown: FastStream waits up to `graceful_timeout_s` for in-flight handlers, then the
  producer is flushed and closed.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from schemas.envelopes import Envelope
from schemas.topics import Topic
from services.common import codec
from services.common.bus import RawMessage, RawRecord, Subscription
from services.common.clock import Clock, SystemClock
from services.common.dispatch import Dispatcher
from services.common.errors import RetryableError
from services.common.settings import BusSettings

logger = logging.getLogger(__name__)


class KafkaBus:
    """A `Bus` over a real Kafka cluster."""

    def __init__(self, settings: BusSettings, *, clock: Clock | None = None) -> None:
        self._settings = settings
        self._clock = clock or SystemClock()
        self._subscriptions: list[Subscription[Any]] = []
        self._broker: KafkaBroker | None = None

    def subscribe(self, subscription: Subscription[Any]) -> None:
        if self._broker is not None:
            raise RuntimeError("subscribe() must be called before start()")
        self._subscriptions.append(subscription)

    async def start(self) -> None:
        settings = self._settings
        await ensure_topics(settings, list(Topic))
        broker = KafkaBroker(
            settings.kafka_bootstrap_servers,
            client_id=settings.client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=settings.linger_ms,
            graceful_timeout=settings.graceful_timeout_s,
            # Parley logs through its dispatcher; FastStream's per-message log lines would
            # cost more than the work on a busy partition.
            logger=None,
            # Handlers take the raw record and nothing injected: skip FastDepends.
            apply_types=False,
        )
        for subscription in self._subscriptions:
            self._register(broker, subscription)
        self._broker = broker
        await broker.start()
        logger.info(
            "kafka bus started: %s, %d subscription(s)",
            settings.kafka_bootstrap_servers,
            len(self._subscriptions),
        )

    def _register(self, broker: KafkaBroker, subscription: Subscription[Any]) -> None:
        settings = self._settings
        dispatcher = Dispatcher(subscription, self.publish, self._clock)

        async def on_record(record: Any) -> None:
            await dispatcher.handle(record)

        broker.subscriber(
            settings.physical(subscription.topic),
            group_id=subscription.group,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            max_workers=subscription.concurrency,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            decoder=_raw_record,
            no_reply=True,
        )(on_record)

    async def publish(self, topic: Topic, message: Envelope | RawMessage) -> None:
        if isinstance(message, RawMessage):
            await self.publish_bytes(topic, message.key, message.value)
        else:
            await self.publish_bytes(topic, message.key, codec.encode(message))

    async def publish_bytes(self, topic: Topic, key: bytes | None, value: bytes) -> None:
        if self._broker is None:
            raise RuntimeError("the bus is not started")
        await self._broker.publish(
            value,
            topic=self._settings.physical(topic),
            key=key,
            headers={"content-type": codec.CONTENT_TYPE},
        )

    async def stop(self) -> None:
        if self._broker is None:
            return
        broker, self._broker = self._broker, None
        await broker.stop()
        logger.info("kafka bus stopped")

    async def __aenter__(self) -> KafkaBus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def _raw_record(message: Any) -> RawRecord:
    # Decoding is the dispatcher's job (so undecodable bytes can be dead-lettered), so
    # FastStream hands the handler the raw record. Taking it as the "body" rather than
    # through FastStream's Context keeps dependency resolution off the thread pool.
    record = message.raw_message
    return RawRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value if record.value is not None else b"",
    )


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
