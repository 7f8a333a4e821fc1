"""The bus port: what services need from a message transport, and nothing of Kafka.

A handler is a plain async function from a schema model to the publications it wants
made; it never sees which transport carries it. Every subscription is at-least-once:
a partition's offset is committed only up to the first record whose handler has not
returned or whose publications were not yet acknowledged, so handlers must be idempotent
on the input's `message_id`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from schemas.envelopes import Envelope
from schemas.topics import Topic

M = TypeVar("M")


@dataclass(frozen=True)
class RawMessage:
    """Bytes to publish as they are, with their key (`parley.events` carries Rasa's event
    records, which are not envelopes)."""

    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Publication:
    """A message a handler wants published, addressed by logical topic."""

    topic: Topic
    message: Envelope | RawMessage


Handler = Callable[[M], Awaitable[Sequence[Publication] | None]]


@dataclass(frozen=True)
class RetryPolicy:
    """How often a `RetryableError` is retried in place before the message is dead-lettered."""

    attempts: int = 5
    first_delay: float = 0.05
    max_delay: float = 2.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff for the given (1-based) failed attempt."""
        return float(min(self.max_delay, self.first_delay * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Subscription(Generic[M]):
    """A handler for one topic in one consumer group.

    `payload` is the model (or annotated union of models) the topic carries.
    `concurrency` is how many calls of the handler this process runs at once (one consumer
    fetches for all of them); messages of one key (so of one conversation) are handled one
    after another, in offset order.
    """

    topic: Topic
    group: str
    handler: Handler[M]
    payload: Any
    concurrency: int = 1
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # A new consumer group starts at the end of the topic instead of its beginning: for
    # broadcast readers (each gateway replica) that only care about what comes next.
    from_latest: bool = False


@dataclass(frozen=True)
class RawRecord:
    """A record as it came off the transport, before decoding."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class Bus(Protocol):
    """A message transport: Kafka in production, memory in the embedded mode and fast tests."""

    def subscribe(self, subscription: Subscription[Any]) -> None:
        """Register a subscription; call before `start()`."""

    async def publish(self, topic: Topic, message: Envelope | RawMessage) -> None:
        """Publish keyed by the conversation id (a `RawMessage` by its own key); returns once
        the transport acknowledged it."""

    async def publish_bytes(self, topic: Topic, key: bytes | None, value: bytes) -> None:
        """Publish raw bytes (for bridges and tests of malformed input)."""

    async def start(self) -> None:
        """Create missing topics, connect, and start consuming."""

    async def stop(self) -> None:
        """Finish in-flight messages, commit, flush and disconnect."""
