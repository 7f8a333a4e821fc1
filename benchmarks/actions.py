"""Actions worker benchmark: `ActionRequest` on parley.actions -> `ActionResult` on
parley.dialogue, through the real worker (`ActionsWorker`) over the real Kafka.

    python -m benchmarks.actions [--bootstrap 127.0.0.1:19092] [--round-trips 300]
        [--requests 200] [--concurrency 32] [--partitions 32] [--conversations 64]
        [--repeats 3] [--out results/bench-actions.json]

Two measures:
- round trip: one request in flight, published by a probe bus -> its result consumed by the
  probe (p50/p99), for a trivial async action (`action_bench_noop`). Alternated request by
  request with a baseline: the same bus subscription and `ActionsService`, but a runner that
  answers at once without running any action (the bare bus: two Kafka hops and the codec).
- throughput: `--requests` requests published as fast as possible, spread over
  `--conversations` conversations, to a synchronous action that blocks 50 ms
  (`time.sleep(0.05)` in `run`); wall time from the first publish to the last result, against
  the ideal `ceil(requests / concurrency) * 0.05 s`.

A conversation is one Kafka key, so it is one partition, and its requests are handled in
order (other conversations' requests on the same partition run beside them): the topics are
created with `--partitions` partitions and the conversation ids are chosen so that successive
requests cycle through the partitions (as many requests per partition as the murmur2
partitioner allows; "balanced"). The same measure with naive ids `conv-0..conv-N` (whatever
the partitioner makes of them; "hashed") is reported beside it, with each one's busiest
partition; so is the baseline (no action run) on the balanced ids: the bus's own cost for the
same traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka.partitioner import murmur2

from schemas.envelopes import ActionRequest, ActionResult
from schemas.topics import Topic
from services.actions.executor import Outcome
from services.actions.worker import ActionsService
from services.actions.worker_cli import GROUP, ActionsSettings, ActionsWorker
from services.common.bus import Publication, Subscription
from services.common.clock import SystemClock
from services.common.kafka_bus import KafkaBus
from services.common.settings import BusSettings

PACKAGE = Path(__file__).resolve().parent / "actions_pkg"
NOOP = "action_bench_noop"
SLEEP = "action_bench_sleep"
SLEEP_S = 0.05
WARMUP_ROUNDS = 2  # round trips per conversation before measuring (group joined, all warm)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def partition_of(conversation: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives this conversation's key."""
    return int((murmur2(conversation.encode()) & 0x7FFFFFFF) % partitions)


def balanced_conversations(count: int, partitions: int) -> list[str]:
    """`count` conversation ids such that id k lands on partition k % partitions."""
    per_partition: dict[int, list[str]] = {p: [] for p in range(partitions)}
    needed = math.ceil(count / partitions)
    k = 0
    while any(len(ids) < needed for ids in per_partition.values()):
        name = f"bench-conv-{k}"
        slot = per_partition[partition_of(name, partitions)]
        if len(slot) < needed:
            slot.append(name)
        k += 1
    return [per_partition[i % partitions][i // partitions] for i in range(count)]


def max_partition_load(conversations: Sequence[str], partitions: int) -> int:
    return max(Counter(partition_of(c, partitions) for c in conversations).values())


def action_request(action: str, conversation: str) -> ActionRequest:
    tracker = {
        "sender_id": conversation,
        "slots": {},
        "latest_message": {"intent": {"name": "greet"}, "entities": []},
        "events": [],
        "paused": False,
        "followup_action": None,
        "active_loop": {},
        "latest_action_name": "action_listen",
    }
    return ActionRequest(
        conversation_id=conversation,
        correlation_id=f"bench-{uuid.uuid4().hex[:8]}",
        sent_at=SystemClock().now(),
        next_action=action,
        tracker=tracker,
        domain={"responses": {}, "slots": {}},
        version="3.6.21",
    )


class Probe:
    """Publishes requests and waits for their results (recorded on arrival)."""

    def __init__(self, settings: BusSettings) -> None:
        self.bus = KafkaBus(settings)
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.bus.subscribe(Subscription(Topic.DIALOGUE, "bench-probe", self.arrived, ActionResult))

    async def arrived(self, result: ActionResult) -> Sequence[Publication]:
        now = time.perf_counter()
        future = self.waiting.pop(result.request_id, None)
        if future is not None and not future.done():
            if result.status != "success":
                future.set_exception(RuntimeError(f"{result.action_name}: {result.status}"))
            else:
                future.set_result(now)
        return ()

    def expect(self, request: ActionRequest) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[request.message_id] = future
        return future

    async def round_trip(self, action: str, conversation: str, within: float = 60.0) -> float:
        request = action_request(action, conversation)
        arrived = self.expect(request)
        started = time.perf_counter()
        await self.bus.publish(Topic.ACTIONS, request)
        return await asyncio.wait_for(arrived, within) - started


class InstantRunner:
    """The baseline's runner: answers success at once, runs nothing."""

    async def run(self, call: Mapping[str, Any]) -> Outcome:
        return Outcome(action_name=call["next_action"], status="success")


class Side:
    """A worker (real or baseline) on its own topics, with its probe."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        self.settings = BusSettings(
            kafka_bootstrap_servers=args.bootstrap,
            topic_prefix=f"benchact{uuid.uuid4().hex[:8]}",
            partitions=args.partitions,
            session_timeout_ms=6_000,
            heartbeat_interval_ms=500,
        )
        self.probe = Probe(self.settings)
        self.stop_event = asyncio.Event()
        self.worker: ActionsWorker | None = None
        self.bare: KafkaBus | None = None
        self.runner: asyncio.Task[None] | None = None
        if name == "worker":
            self.worker = ActionsWorker(
                ActionsSettings(
                    package=str(PACKAGE),
                    timeout_s=10.0,
                    concurrency=args.concurrency,
                    http_enabled=False,
                    health_host="127.0.0.1",
                    health_port=0,
                ),
                KafkaBus(self.settings),
            )
        else:
            self.bare = KafkaBus(self.settings)
            service = ActionsService(InstantRunner(), SystemClock())
            self.bare.subscribe(
                Subscription(
                    Topic.ACTIONS,
                    GROUP,
                    service.handle,
                    ActionRequest,
                    concurrency=args.concurrency,
                )
            )

    async def start(self) -> None:
        if self.worker is not None:
            await self.worker.start()
            self.runner = asyncio.create_task(self.worker.run(self.stop_event))
        elif self.bare is not None:
            await self.bare.start()
        await self.probe.bus.start()

    async def stop(self) -> None:
        await self.probe.bus.stop()
        if self.runner is not None:
            self.stop_event.set()
            await self.runner
        elif self.bare is not None:
            await self.bare.stop()


async def throughput(probe: Probe, conversations: Sequence[str], requests: int) -> float:
    """Seconds from the first publish to the last result of `requests` sleeping actions."""
    sent = [action_request(SLEEP, conversations[i % len(conversations)]) for i in range(requests)]
    arrivals = [probe.expect(r) for r in sent]
    started = time.perf_counter()
    await asyncio.gather(*(probe.bus.publish(Topic.ACTIONS, r) for r in sent))
    done = await asyncio.wait_for(asyncio.gather(*arrivals), 120)
    return max(done) - started


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sides = {"worker": Side("worker", args), "baseline": Side("baseline", args)}
    balanced = balanced_conversations(args.conversations, args.partitions)
    hashed = [f"conv-{i}" for i in range(args.conversations)]
    latencies: dict[str, list[float]] = {name: [] for name in sides}
    walls: dict[str, list[float]] = {"balanced": [], "hashed": [], "baseline": []}
    try:
        for side in sides.values():
            await side.start()
        for _ in range(WARMUP_ROUNDS):
            for conversation in balanced + hashed:
                for side in sides.values():
                    await side.probe.round_trip(NOOP, conversation)
        print("warm-up done", file=sys.stderr, flush=True)
        names = list(sides)
        for i in range(args.round_trips):
            conversation = balanced[i % len(balanced)]
            for name in names if i % 2 == 0 else names[::-1]:
                latency = await sides[name].probe.round_trip(NOOP, conversation)
                latencies[name].append(latency * 1000)
        for name, values in latencies.items():
            print(
                f"round trip {name}: p50 {percentile(values, 0.5):.2f} ms, "
                f"p99 {percentile(values, 0.99):.2f} ms",
                file=sys.stderr,
                flush=True,
            )
        await throughput(sides["worker"].probe, balanced, args.requests)  # warm-up: threads
        for repeat in range(1, args.repeats + 1):
            for kind, conversations in (
                ("balanced", balanced),
                ("hashed", hashed),
                ("baseline", balanced),
            ):
                side = sides["worker" if kind != "baseline" else "baseline"]
                wall = await throughput(side.probe, conversations, args.requests)
                walls[kind].append(wall)
                print(
                    f"throughput repeat {repeat} {kind}: {wall:.3f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for side in sides.values():
            await side.stop()

    ideal = math.ceil(args.requests / args.concurrency) * SLEEP_S
    worker_p50 = percentile(latencies["worker"], 0.5)
    base_p50 = percentile(latencies["baseline"], 0.5)

    def throughput_figures(kind: str, conversations: Sequence[str]) -> dict[str, Any]:
        wall = statistics.median(walls[kind])
        load = max_partition_load(
            [conversations[i % len(conversations)] for i in range(args.requests)],
            args.partitions,
        )
        return {
            "wall_s_median": round(wall, 3),
            "wall_s_all": [round(w, 3) for w in walls[kind]],
            "requests_per_s": round(args.requests / wall, 1),
            "ideal_over_wall": round(ideal / wall, 3),
            "busiest_partition_requests": load,
            "partition_bound_s": round(load * SLEEP_S, 3),
        }

    return {
        "benchmark": "actions",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"{platform.platform()}, Python {platform.python_version()}",
        "bootstrap": args.bootstrap,
        "partitions": args.partitions,
        "concurrency": args.concurrency,
        "round_trip": {
            "action": NOOP,
            "count": args.round_trips,
            "warmup_per_side": WARMUP_ROUNDS * (len(balanced) + len(hashed)),
            "worker_p50_ms": round(worker_p50, 3),
            "worker_p99_ms": round(percentile(latencies["worker"], 0.99), 3),
            "baseline_p50_ms": round(base_p50, 3),
            "baseline_p99_ms": round(percentile(latencies["baseline"], 0.99), 3),
            "p50_worker_over_baseline": round(worker_p50 / base_p50, 3),
            "p50_worker_minus_baseline_ms": round(worker_p50 - base_p50, 3),
        },
        "throughput": {
            "action": SLEEP,
            "sleep_s": SLEEP_S,
            "requests": args.requests,
            "conversations": args.conversations,
            "repeats": args.repeats,
            "ideal_s": round(ideal, 3),
            "target_ideal_over_wall": 0.9,
            "balanced": throughput_figures("balanced", balanced),
            "hashed": throughput_figures("hashed", hashed),
            "baseline_no_action_balanced": throughput_figures("baseline", balanced),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    )
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=ActionsSettings().concurrency)
    parser.add_argument("--partitions", type=int, default=32)
    parser.add_argument("--conversations", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("results/bench-actions.json"))
    args = parser.parse_args(argv)
    if args.conversations < args.partitions:
        parser.error("--conversations must be at least --partitions")
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
