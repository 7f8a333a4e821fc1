"""Bus benchmark: Parley's Kafka bus against raw aiokafka, same broker, same run.

    python -m benchmarks.bus [--bootstrap 127.0.0.1:19092] [--round-trips 500] [--messages 5000]

Every side gives the same guarantees: an idempotent producer with acks=all, messages
keyed by conversation, offsets committed only after the message is handled (at-least-once),
fetch wait 5 ms. Sides: raw aiokafka with 4 consumers committing after each record; Parley's
bus (one consumer, handler concurrency 4, commits coalesced); raw aiokafka with one consumer
committing once per fetched batch. Two measures, alternated side by side in `--repeats` rounds
so drift of a noisy machine hits all:
- round trip: one message in flight, publish -> consumed by the handler (p50/p99);
- throughput: publish N messages over 8 conversations while consuming them; messages/s
  from the first publish to the last handled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.envelopes import UserMessage
from schemas.topics import Topic
from services.common import codec
from services.common.bus import Publication, Subscription
from services.common.clock import SystemClock
from services.common.kafka_bus import KafkaBus, ensure_topics
from services.common.settings import BusSettings

WARMUP = 100


@dataclass
class Result:
    side: str
    round_trip_p50_ms: float
    round_trip_p99_ms: float
    throughput_msgs_per_s: float


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.changed = asyncio.Condition()

    async def bump(self) -> None:
        async with self.changed:
            self.count += 1
            self.changed.notify_all()

    async def reach(self, n: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.count >= n)


def message(i: int, clock: SystemClock) -> UserMessage:
    return UserMessage(conversation_id=f"conv-{i % 8}", text=f"message {i}", sent_at=clock.now())


async def parley_side(bootstrap: str, round_trips: int, messages: int) -> tuple[list[float], float]:
    clock = SystemClock()
    settings = BusSettings(
        kafka_bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}"
    )
    counter = Counter()

    async def handle(_: UserMessage) -> Sequence[Publication]:
        await counter.bump()
        return ()

    bus = KafkaBus(settings, clock=clock)
    bus.subscribe(Subscription(Topic.NLU, "bench", handle, UserMessage, concurrency=4))
    async with bus:
        await bus.publish(
            Topic.NLU, message(0, clock)
        )  # warm-up: group joined, partitions assigned
        await counter.reach(1)

        async def send(i: int) -> None:
            await bus.publish(Topic.NLU, message(i, clock))

        return await measure(send, counter, round_trips, messages)


async def raw_side(bootstrap: str, round_trips: int, messages: int) -> tuple[list[float], float]:
    clock = SystemClock()
    settings = BusSettings(
        kafka_bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}"
    )
    topic = settings.physical(Topic.NLU)
    await ensure_topics(settings, [Topic.NLU])
    counter = Counter()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=0
    )
    consumers = [
        AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id="bench",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
        )
        for _ in range(4)
    ]

    async def consume(consumer: AIOKafkaConsumer) -> None:
        async for record in consumer:
            codec.decode(record.value, UserMessage)  # the same decoding work as the bus does
            await counter.bump()
            await consumer.commit()

    await producer.start()
    await asyncio.gather(*(c.start() for c in consumers))
    tasks = [asyncio.create_task(consume(c)) for c in consumers]
    try:

        async def send(i: int) -> None:
            msg = message(i, clock)
            await producer.send_and_wait(topic, codec.encode(msg), key=msg.key)

        await send(0)
        await counter.reach(1)
        return await measure(send, counter, round_trips, messages)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.stop() for c in consumers))
        await producer.stop()


async def raw_batch_side(
    bootstrap: str, round_trips: int, messages: int
) -> tuple[list[float], float]:
    """Raw aiokafka as Parley's bus now consumes: one consumer, `getmany`, one commit after
    each fetched batch is handled (still at-least-once: committed only once handled)."""
    clock = SystemClock()
    settings = BusSettings(
        kafka_bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}"
    )
    topic = settings.physical(Topic.NLU)
    await ensure_topics(settings, [Topic.NLU])
    counter = Counter()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=0
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id="bench",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )

    async def consume() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    codec.decode(record.value, UserMessage)
                    await counter.bump()
            if batches:
                await consumer.commit()

    await producer.start()
    await consumer.start()
    task = asyncio.create_task(consume())
    try:

        async def send(i: int) -> None:
            msg = message(i, clock)
            await producer.send_and_wait(topic, codec.encode(msg), key=msg.key)

        await send(0)
        await counter.reach(1)
        return await measure(send, counter, round_trips, messages)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()


async def measure(
    send: Callable[[int], Awaitable[None]], counter: Counter, round_trips: int, messages: int
) -> tuple[list[float], float]:
    latencies = []
    for i in range(WARMUP + round_trips):
        target = counter.count + 1
        started = time.perf_counter()
        await send(i)
        await counter.reach(target)
        if i >= WARMUP:  # the first round trips wait for the group to settle
            latencies.append((time.perf_counter() - started) * 1000)
    base = counter.count
    started = time.perf_counter()
    window = asyncio.Semaphore(64)  # publishes in flight, as several producers would have

    async def one(i: int) -> None:
        async with window:
            await send(i)

    await asyncio.gather(*(one(i) for i in range(messages)))
    await counter.reach(base + messages)
    rate = messages / (time.perf_counter() - started)
    return latencies, rate


async def run(args: argparse.Namespace) -> dict[str, object]:
    sides: dict[str, Callable[[str, int, int], Awaitable[tuple[list[float], float]]]] = {
        "raw aiokafka": raw_side,
        "parley bus": parley_side,
        "raw aiokafka, batch commit": raw_batch_side,
    }
    latencies: dict[str, list[float]] = {name: [] for name in sides}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for round_no in range(args.repeats):
        for name, side in sides.items():
            lat, rate = await side(args.bootstrap, args.round_trips, args.messages)
            latencies[name].extend(lat)
            rates[name].append(rate)
            print(
                f"round {round_no + 1}/{args.repeats} {name}: p50 "
                f"{statistics.median(lat):.2f} ms, {rate:.0f} msg/s",
                flush=True,
            )
    results = [
        Result(
            side=name,
            round_trip_p50_ms=round(percentile(latencies[name], 0.50), 3),
            round_trip_p99_ms=round(percentile(latencies[name], 0.99), 3),
            throughput_msgs_per_s=round(statistics.median(rates[name]), 1),
        )
        for name in sides
    ]
    raw, parley, raw_batch = results
    ratios = {
        "p50_latency_parley_over_raw": round(parley.round_trip_p50_ms / raw.round_trip_p50_ms, 3),
        "p99_latency_parley_over_raw": round(parley.round_trip_p99_ms / raw.round_trip_p99_ms, 3),
        "throughput_parley_over_raw": round(
            parley.throughput_msgs_per_s / raw.throughput_msgs_per_s, 3
        ),
        "p50_latency_parley_over_raw_batch": round(
            parley.round_trip_p50_ms / raw_batch.round_trip_p50_ms, 3
        ),
        "throughput_parley_over_raw_batch": round(
            parley.throughput_msgs_per_s / raw_batch.throughput_msgs_per_s, 3
        ),
    }
    return {
        "benchmark": "bus",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "bootstrap": args.bootstrap,
        "round_trips": args.round_trips * args.repeats,
        "messages": args.messages,
        "repeats": args.repeats,
        "results": [asdict(r) for r in results],
        "ratios": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    )
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
