"""Scheduler benchmark: N reminders in the real scheduler on a fresh PostgreSQL database.

    python -m benchmarks.scheduler [--reminders 100000] [--near 2000] [--spread 10]

The real `SchedulerService` (APScheduler's asyncio loop running, `process=True`, default
settings but for the database URL), with a publish function that timestamps each trigger
instead of Kafka: `handle` is called directly, no bus. Three measures:
- scheduling rate: `ReminderRequest`s handed to one `SchedulerService.handle`, one after the
  other (`--concurrency 1`, the default) or `--concurrency` at a time; reminders/s over the
  wall time, and over the time spent inside `handle` alone (building requests excluded);
- firing lateness: all but `--near` of the reminders are due far in the future (they load the
  job table); the `--near` ones, scheduled last, fall due spread evenly over `--spread`
  seconds starting a little after they are all scheduled; for each, `published_at - due`
  (p50/p99/max), `published_at` taken by the publish function;
- memory: this process's peak RSS (`VmHWM`) after scheduling and after firing, and the
  PostgreSQL sizes of the jobs table and the fired ledger (`pg_total_relation_size`).
The database is created for the run and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from schemas.envelopes import Envelope, ExternalTrigger, ReminderRequest
from schemas.events import ReminderScheduled
from schemas.topics import Topic
from services.common.bus import RawMessage
from services.common.clock import SystemClock
from services.scheduler.settings import SchedulerSettings
from services.scheduler.worker import SchedulerService

DEFAULT_URL = "postgresql+asyncpg://parley@127.0.0.1:15432/parley"
FAR = datetime(2100, 1, 1, tzinfo=UTC)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def peak_rss_mib() -> float:
    """VmHWM from /proc (Linux); ru_maxrss otherwise."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def request(conversation: str, due: datetime) -> ReminderRequest:
    event = ReminderScheduled(
        intent="EXTERNAL_remind",
        date_time=due,
        name="bench",
        entities=[{"entity": "item", "value": "bike"}],
        timestamp=time.time(),
    )
    return ReminderRequest(
        conversation_id=conversation,
        correlation_id=uuid.uuid4().hex,
        sent_at=datetime.now(UTC),
        event=event,
        output_channel="socketio",
    )


def dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def table_sizes(url: str, prefix: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn(url), timeout=10)
    try:
        sizes: dict[str, Any] = {}
        for table in (f"{prefix}_jobs", f"{prefix}_fired"):
            size = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            rows = await conn.fetchval(f'SELECT count(*) FROM "{table}"')
            sizes[table] = {"rows": rows, "total_mib": round(size / 2**20, 1)}
        return sizes
    finally:
        await conn.close()


async def schedule_all(
    service: SchedulerService, items: Sequence[tuple[str, datetime]], concurrency: int
) -> float:
    """Handle one request per item; returns the seconds spent inside `handle`."""
    inside = 0.0
    if concurrency == 1:
        for conversation, due in items:
            message = request(conversation, due)
            started = time.perf_counter()
            await service.handle(message)
            inside += time.perf_counter() - started
        return inside
    window = asyncio.Semaphore(concurrency)

    async def one(conversation: str, due: datetime) -> None:
        nonlocal inside
        async with window:
            message = request(conversation, due)
            started = time.perf_counter()
            await service.handle(message)
            inside += time.perf_counter() - started  # overlapping: a sum of latencies

    await asyncio.gather(*(one(c, d) for c, d in items))
    return inside


async def bench(args: argparse.Namespace, url: str) -> dict[str, Any]:
    near = min(args.near, args.reminders)
    far = args.reminders - near
    published: dict[str, float] = {}
    all_fired = asyncio.Event()

    async def publish(topic: Topic, message: Envelope | RawMessage) -> None:
        stamp = time.time()
        if topic is Topic.DIALOGUE and isinstance(message, ExternalTrigger):
            published[message.conversation_id] = stamp
            if len(published) >= near:
                all_fired.set()

    settings = SchedulerSettings(database_url=url, replica_id="bench")
    service = SchedulerService(settings, publish, SystemClock())
    await service.start()
    try:
        rss_start = peak_rss_mib()
        wall_started = time.perf_counter()
        inside = 0.0
        chunk = 10_000
        for base in range(0, far, chunk):
            items = [(f"far-{i}", FAR) for i in range(base, min(far, base + chunk))]
            inside += await schedule_all(service, items, args.concurrency)
            done = base + len(items)
            elapsed = time.perf_counter() - wall_started
            print(f"scheduled {done}/{args.reminders}: {done / elapsed:.0f}/s", flush=True)
        far_wall = time.perf_counter() - wall_started
        far_rate = far / far_wall if far else 0.0
        # The near reminders fall due after all of them are scheduled, at the rate seen so far.
        lead = (near / far_rate if far_rate else near / 200) * 1.5 + 3.0
        first_due = datetime.now(UTC) + timedelta(seconds=lead)
        step = args.spread / max(1, near - 1)
        due_at = {f"near-{i}": first_due + timedelta(seconds=i * step) for i in range(near)}
        inside += await schedule_all(service, list(due_at.items()), args.concurrency)
        wall = time.perf_counter() - wall_started
        scheduled_at = datetime.now(UTC)
        if scheduled_at > first_due:
            print("warning: the near reminders were not all scheduled before the first was due")
        rss_scheduled = peak_rss_mib()
        sizes_scheduled = await table_sizes(url, settings.table_prefix)
        print(
            f"scheduled {args.reminders} in {wall:.1f} s: {args.reminders / wall:.0f}/s; "
            f"waiting for {near} to fire",
            flush=True,
        )
        if near:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_fired.wait(), timeout=lead + args.spread + 60)
        lateness_ms = [
            (published[c] - due.timestamp()) * 1000 for c, due in due_at.items() if c in published
        ]
        rss_fired = peak_rss_mib()
        sizes_fired = await table_sizes(url, settings.table_prefix)
        handled, fired, missed = service.handled, service.published, service.missed
    finally:
        await service.stop()
    return {
        "scheduling": {
            "reminders": args.reminders,
            "concurrency": args.concurrency,
            "wall_s": round(wall, 2),
            "reminders_per_s": round(args.reminders / wall, 1),
            "inside_handle_s": round(inside, 2),
            "reminders_per_s_inside_handle": round(args.reminders / inside, 1),
            "handled": handled,
        },
        "firing": {
            "near": near,
            "spread_s": args.spread,
            "lead_s": round(lead, 1),
            "fired": len(lateness_ms),
            "published_total": fired,
            "missed": missed,
            "lateness_p50_ms": round(percentile(lateness_ms, 0.50), 1) if lateness_ms else None,
            "lateness_p99_ms": round(percentile(lateness_ms, 0.99), 1) if lateness_ms else None,
            "lateness_max_ms": round(max(lateness_ms), 1) if lateness_ms else None,
            "lateness_min_ms": round(min(lateness_ms), 1) if lateness_ms else None,
        },
        "memory": {
            "peak_rss_start_mib": round(rss_start, 1),
            "peak_rss_after_scheduling_mib": round(rss_scheduled, 1),
            "peak_rss_after_firing_mib": round(rss_fired, 1),
            "tables_after_scheduling": sizes_scheduled,
            "tables_after_firing": sizes_fired,
        },
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"parley_bench_scheduler_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn(args.database_url), timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        version = await admin.fetchval("SHOW server_version")
    finally:
        await admin.close()
    url = make_url(args.database_url).set(database=name).render_as_string(hide_password=False)
    try:
        figures = await bench(args, url)
    finally:
        admin = await asyncpg.connect(dsn(args.database_url), timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    return {
        "benchmark": "scheduler",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, PostgreSQL {version}",
        "path": "SchedulerService.handle called directly (no bus); publish timestamps triggers",
        **figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--reminders", type=int, default=100_000)
    parser.add_argument("--near", type=int, default=2000, help="reminders due soon")
    parser.add_argument("--spread", type=float, default=10.0, help="seconds the near ones span")
    parser.add_argument("--concurrency", type=int, default=1, help="handle calls at a time")
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
