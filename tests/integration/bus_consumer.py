"""A consumer process for the group tests: `python -m tests.integration.bus_consumer ...`.

It joins a consumer group through Parley's Kafka bus and, for every message handled,
appends `<name> <conversation> <seq>` to a shared log file (one O_APPEND write, so the
file's order is the true order of handling across processes) and prints the same line
on stdout so the test can await progress.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from schemas.envelopes import UserMessage
from schemas.topics import Topic
from services.common.bus import Publication, Subscription
from services.common.clock import SystemClock
from services.common.correlation import configure_logging
from services.common.kafka_bus import KafkaBus
from services.common.settings import BusSettings


async def run(args: argparse.Namespace) -> None:
    fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def handle(message: UserMessage) -> Sequence[Publication]:
        if args.delay_ms:
            await asyncio.sleep(args.delay_ms / 1000)  # simulated work, so the stream lasts
        line = f"{args.name} {message.conversation_id} {message.text}\n"
        os.write(fd, line.encode())
        sys.stdout.write(line)
        sys.stdout.flush()
        return ()

    settings = BusSettings(
        kafka_bootstrap_servers=args.bootstrap,
        topic_prefix=args.prefix,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
        client_id=args.name,
    )
    bus = KafkaBus(settings, clock=SystemClock())
    bus.subscribe(Subscription(Topic.NLU, args.group, handle, UserMessage, concurrency=2))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await bus.start()
    print("READY", flush=True)
    await stop.wait()
    await bus.stop()
    os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    # Rebalances are what these tests provoke: aiokafka's warnings about them are expected.
    configure_logging(logging.ERROR)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
