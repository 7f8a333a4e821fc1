"""The one runtime wrapper around every handler: decode, handle, publish, or dead-letter.

Both transports hand each record to a `Dispatcher`. It decides what a failure means:
undecodable bytes and permanent errors go to the dead-letter topic at once; a
`RetryableError` is retried in place with backoff, then dead-lettered; a
`DependencyUnavailable` is retried until it succeeds (the partition waits). The consumer
never dies on one bad message. Only a failure to publish (the results or the dead
letter) escapes, so the transport does not commit and the record is delivered again.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from schemas.envelopes import DeadLetter, Envelope
from schemas.topics import Topic
from services.common import codec
from services.common.bus import RawMessage, RawRecord, Subscription
from services.common.clock import Clock
from services.common.correlation import correlated
from services.common.errors import (
    DecodeError,
    DependencyUnavailable,
    ParleyError,
    RetryableError,
)
from services.common.metrics import DeadLetterReason, DispatchMetrics, default_metrics

logger = logging.getLogger(__name__)

PublishFn = Callable[[Topic, Envelope | RawMessage], Awaitable[None]]
SleepFn = Callable[[float], Awaitable[None]]

UNKNOWN_CONVERSATION = "<unknown>"


class Dispatcher:
    """Runs one subscription's handler on raw records."""

    def __init__(
        self,
        subscription: Subscription[Any],
        publish: PublishFn,
        clock: Clock,
        sleep: SleepFn = asyncio.sleep,
        metrics: DispatchMetrics | None = None,
    ) -> None:
        self._subscription = subscription
        self._publish = publish
        self._clock = clock
        self._sleep = sleep
        metrics = metrics or default_metrics()
        labels = (subscription.topic.value, subscription.group)
        self._handled = metrics.handled.labels(*labels)
        self._failed = {
            kind: metrics.failed.labels(*labels, kind)
            for kind in ("retryable", "dependency", "permanent")
        }
        self._dead_lettered = {
            reason: metrics.dead_lettered.labels(*labels, reason)
            for reason in ("undecodable", "retries_exhausted", "permanent")
        }
        self._latency = metrics.latency.labels(*labels)
        self._in_progress = metrics.in_progress.labels(*labels)

    async def handle(self, record: RawRecord) -> None:
        """Handle one record completely; raises only if publishing failed."""
        started = time.perf_counter()
        with self._in_progress.track_inprogress():
            try:
                message = codec.decode(record.value, self._subscription.payload)
            except DecodeError as exc:
                await self._dead_letter(record, exc, attempts=1, reason="undecodable")
                return
            conversation_id = getattr(message, "conversation_id", None)
            with correlated(conversation_id, getattr(message, "message_id", None)):
                await self._handle_decoded(record, message)
            self._latency.observe(time.perf_counter() - started)

    async def _handle_decoded(self, record: RawRecord, message: Any) -> None:
        retry = self._subscription.retry
        attempt = 1
        while True:
            try:
                publications = await self._subscription.handler(message)
            except DependencyUnavailable as exc:
                self._failed["dependency"].inc()
                delay = exc.delay if exc.delay is not None else retry.max_delay
                logger.error(
                    "dependency unavailable (attempt %d), holding the message and retrying in "
                    "%.2fs: %s",
                    attempt,
                    delay,
                    exc,
                )
                await self._sleep(delay)
                attempt += 1
                continue
            except RetryableError as exc:
                self._failed["retryable"].inc()
                if attempt >= retry.attempts:
                    await self._dead_letter(
                        record, exc, attempts=attempt, reason="retries_exhausted"
                    )
                    return
                delay = exc.delay if exc.delay is not None else retry.delay(attempt)
                logger.warning(
                    "retryable failure (attempt %d of %d), retrying in %.2fs: %s",
                    attempt,
                    retry.attempts,
                    delay,
                    exc,
                )
                await self._sleep(delay)
                attempt += 1
                continue
            except Exception as exc:  # noqa: BLE001 - the one place a handler's failure is caught
                self._failed["permanent"].inc()
                await self._dead_letter(record, exc, attempts=attempt, reason="permanent")
                return
            for publication in publications or ():
                await self._publish(publication.topic, publication.message)
            self._handled.inc()
            return

    async def _dead_letter(
        self, record: RawRecord, exc: BaseException, *, attempts: int, reason: DeadLetterReason
    ) -> None:
        await self._send_dead_letter(record, exc, attempts=attempts)
        self._dead_lettered[reason].inc()

    async def _send_dead_letter(
        self, record: RawRecord, exc: BaseException, *, attempts: int
    ) -> None:
        reason = str(exc) or type(exc).__name__
        if not isinstance(exc, ParleyError):
            reason = f"handler raised {type(exc).__name__}: {reason}"
        key = _decode_key(record.key)
        logger.error(
            "dead-lettering %s[%d]@%d after %d attempt(s): %s",
            record.topic,
            record.partition,
            record.offset,
            attempts,
            reason,
            exc_info=not isinstance(exc, DecodeError),
        )
        letter = DeadLetter(
            conversation_id=(key or UNKNOWN_CONVERSATION)[:512],
            sent_at=self._clock.now(),
            reason=reason,
            error_type=type(exc).__name__,
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            consumer_group=self._subscription.group,
            attempts=attempts,
            key_b64=base64.b64encode(record.key).decode() if record.key is not None else None,
            original_b64=base64.b64encode(record.value).decode(),
        )
        await self._publish(Topic.DEAD_LETTERS, letter)


def _decode_key(key: bytes | None) -> str | None:
    if not key:
        return None
    try:
        return key.decode()
    except UnicodeDecodeError:
        return None
