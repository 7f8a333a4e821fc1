"""Tracker stores compared: Redis + SQL archive vs SQL alone (`PARLEY_STORE_BACKEND`), one run.

    python -m benchmarks.tracker_stores [--turns 300] [--concurrent 100] [--out results/...]

Both stores run on servers of the benchmark's own, started and killed by it so that it can
restart them without touching the shared services: a `redis-server` without persistence (as
`scripts/services.sh` runs it) and a PostgreSQL cluster made by `initdb` in a temporary folder
(default settings: fsync and synchronous commit on), each backend in a fresh database of it.

A turn is what `DialogueService.handle` asks of the stores: `load_snapshot`, `load` of the
events from the anchor on (60 events back, the middle of the handler's 30-90 window),
`append` of 4 events (user, action, bot, action_listen) with a ~10 KB snapshot (tracker, anchor,
64 remembered inputs), then the archive's `write`. Measured:

- per-turn latency p50/p99 at 10, 1,000 and 10,000 events of history (the two backends
  alternate turn by turn, so drift hits both);
- turns/s with `--concurrent` conversations each running turns back to back;
- Redis `used_memory` and PostgreSQL `pg_total_relation_size` growth per 1,000 conversations of
  20 events;
- recovery: Redis killed and started again empty (how long until it answers, then the rebuild
  from the archive per conversation); PostgreSQL killed (`pg_ctl stop -m immediate`, a crash)
  and started again (time to serve, and whether every acknowledged append is there).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from services.common.errors import DependencyUnavailable
from services.dialogue.store.migrate import migrate
from services.dialogue.store.ports import HotStore, StoredTracker
from services.dialogue.store.rebuild import load_or_rebuild
from services.dialogue.store.redis_store import RedisHotStore
from services.dialogue.store.sql_archive import SqlArchive
from services.dialogue.store.sql_hot_store import AppendedArchive, SqlHotStore

WINDOW = 60
LEVELS = (10, 1_000, 10_000)
T0 = 1_760_000_000.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def turn_events(n: int) -> list[dict[str, Any]]:
    ts = T0 + n
    return [
        {
            "event": "user",
            "timestamp": ts,
            "metadata": {},
            "text": f"message {n}",
            "parse_data": {
                "text": f"message {n}",
                "intent": {"name": "greet", "confidence": 0.97},
                "entities": [],
                "intent_ranking": [{"name": "greet", "confidence": 0.97}],
            },
            "input_channel": "rest",
            "message_id": uuid.uuid4().hex,
        },
        {"event": "action", "timestamp": ts + 0.1, "name": "utter_greet", "policy": "RulePolicy",
         "confidence": 1.0},
        {"event": "bot", "timestamp": ts + 0.2, "text": "Hey! How are you?", "data": {},
         "metadata": {"utter_action": "utter_greet"}},
        {"event": "action", "timestamp": ts + 0.3, "name": "action_listen",
         "policy": "RulePolicy", "confidence": 1.0},
    ]  # fmt: skip


def history(length: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    n = 0
    while len(events) < length:
        events += turn_events(n)
        n += 1
    return events[:length]


TRACKER = {
    "slots": {f"slot_{i}": None for i in range(8)} | {"session_started_metadata": None},
    "latest_message": turn_events(0)[0]["parse_data"],
    "latest_action_name": "action_listen",
    "active_loop": None,
    "paused": False,
    "followup_action": None,
    "latest_input_channel": "rest",
}


INPUTS = {
    uuid.uuid4().hex: {"start": 4 * i, "end": 4 * i + 4, "complete": True, "channel": "rest",
                       "in_reply_to": uuid.uuid4().hex, "handoff": None, "side_effects": True}
    for i in range(64)
}  # fmt: skip


def snapshot(seq: int) -> dict[str, Any]:
    """What the handler stores after a turn: tracker, anchor, the last 64 inputs (~10 KB)."""
    return {
        "anchor": {"seq": max(seq - WINDOW, 0), "tracker": TRACKER},
        "tracker": TRACKER,
        "pending": None,
        "inputs": INPUTS,
        "handoff": None,
        "deferred": [],
    }


@dataclass
class Backend:
    name: str
    hot: HotStore
    archive: SqlArchive

    async def turn(self, cid: str, n: int) -> None:
        head = await self.hot.load_snapshot(cid)
        seq = head[0] if head else 0
        await self.hot.load(cid, max(seq - WINDOW, 0))
        events = turn_events(n)
        await self.hot.append(cid, seq, events, snapshot(seq + 4))
        await self.archive.write(cid, seq, events)

    async def seed(self, cid: str, length: int) -> None:
        """A conversation of `length` events, stored as the handler's turns would leave it."""
        events = history(length)
        if isinstance(self.hot, RedisHotStore):  # with SQL alone, replace writes the rows
            for i in range(0, len(events), 2000):
                await self.archive.write(cid, i, events[i : i + 2000])
        await self.hot.replace(cid, StoredTracker(cid, length, snapshot(length), events))


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)) * 1000, 3)


class Servers:
    """A throwaway redis-server and PostgreSQL cluster (as the postgres user when root)."""

    def __init__(self) -> None:
        self.redis_port = free_port()
        self.pg_port = free_port()
        self.redis: asyncio.subprocess.Process | None = None
        self.base = Path(tempfile.mkdtemp(prefix="parley-bench-pg-"))
        self.data = self.base / "data"
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        self.pg_bin = found[-1].parent if found else Path(shutil.which("pg_ctl") or "").parent
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_pg:
            shutil.chown(self.base, "postgres")

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def pg_url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://parley@127.0.0.1:{self.pg_port}/{database}"

    async def start_redis(self) -> float:
        started = time.perf_counter()
        self.redis = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no",
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = Redis.from_url(self.redis_url)
        try:
            while True:
                try:
                    await client.ping()
                    return time.perf_counter() - started
                except (OSError, RedisConnectionError):  # not listening yet
                    await asyncio.sleep(0.005)
        finally:
            await client.aclose()

    async def kill_redis(self) -> None:
        if self.redis is not None:
            self.redis.kill()
            await self.redis.wait()
            self.redis = None

    def _pg(self, *args: str) -> None:
        subprocess.run([*self.as_pg, *args], check=True, stdout=subprocess.DEVNULL, cwd="/")

    def init_pg(self) -> None:
        self._pg(str(self.pg_bin / "initdb"), "-D", str(self.data), "-U", "parley",
                 "--auth=trust", "-E", "UTF8")  # fmt: skip

    def start_pg(self) -> None:
        options = f"-p {self.pg_port} -k {self.base} -c listen_addresses=127.0.0.1"
        self._pg(str(self.pg_bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                 "-l", str(self.base / "log"), "-w", "start")  # fmt: skip

    def stop_pg(self, mode: str = "fast") -> None:
        self._pg(str(self.pg_bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    async def create_database(self, name: str) -> str:
        admin = await asyncpg.connect(f"postgresql://parley@127.0.0.1:{self.pg_port}/postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return self.pg_url(name)

    async def cleanup(self) -> None:
        await self.kill_redis()
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop_pg("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


async def pg_size(url: str) -> int:
    dsn = url.replace("postgresql+asyncpg", "postgresql")
    conn = await asyncpg.connect(dsn)
    try:
        size = await conn.fetchval(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "WHERE c.relname IN ('events', 'conversation_snapshots')"
        )
        return int(size)
    finally:
        await conn.close()


async def vacuum_full(url: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute("VACUUM FULL events, conversation_snapshots")
    finally:
        await conn.close()


async def redis_memory(url: str) -> int:
    client = Redis.from_url(url)
    try:
        return int((await client.info("memory"))["used_memory"])
    finally:
        await client.aclose()


async def latencies(backends: list[Backend], turns: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for level in LEVELS:
        count = 10 if level >= 10_000 else 50
        cids = [f"h{level}-{i}" for i in range(count)]
        for b in backends:
            for cid in cids:
                await b.seed(cid, level)
        timings: dict[str, list[float]] = {b.name: [] for b in backends}
        for n in range(turns):
            cid = cids[n % count]
            for b in backends if n % 2 else backends[::-1]:
                t0 = time.perf_counter()
                await b.turn(cid, 10_000 + n)
                timings[b.name].append(time.perf_counter() - t0)
        out[str(level)] = {
            name: {"p50_ms": pct(t, 50), "p99_ms": pct(t, 99), "turns": len(t)}
            for name, t in timings.items()
        }
    return out


async def throughput(b: Backend, concurrent: int, turns_each: int, tag: str) -> float:
    cids = [f"tp{tag}-{i}" for i in range(concurrent)]
    for cid in cids:
        await b.seed(cid, 20)

    async def run(cid: str) -> None:
        for n in range(turns_each):
            await b.turn(cid, 100 + n)

    started = time.perf_counter()
    await asyncio.gather(*(run(cid) for cid in cids))
    return concurrent * turns_each / (time.perf_counter() - started)


async def footprint(
    b: Backend, measures: dict[str, Callable[[], Awaitable[int]]], tag: str
) -> dict[str, int]:
    """How much each measure grows while 1,000 conversations of 20 events are stored."""
    before = {name: await measure() for name, measure in measures.items()}
    for i in range(1000):
        for n in range(5):  # 5 turns of 4 events, as the handler stores them
            await b.turn(f"fp{tag}-{i}", n)
    return {name: await measure() - before[name] for name, measure in measures.items()}


async def footprints(servers: Servers) -> dict[str, dict[str, int]]:
    """Each backend in a fresh database; for SQL alone also the size once the snapshot rows'
    old versions (one per turn, until autovacuum reuses their space) are gone."""
    redis_db = await servers.create_database("fp_redis")
    sql_db = await servers.create_database("fp_sql")
    await migrate(redis_db)
    await migrate(sql_db)
    redis_b = Backend("redis+archive", RedisHotStore(servers.redis_url, "fp"), SqlArchive(redis_db))
    sql_b = Backend("sql", SqlHotStore(sql_db), AppendedArchive(sql_db))
    out: dict[str, dict[str, int]] = {}
    for b in (redis_b, sql_b):
        await b.hot.start()
        await b.archive.start()
    try:
        out[redis_b.name] = await footprint(
            redis_b,
            {
                "redis_used_memory_bytes": lambda: redis_memory(servers.redis_url),
                "archive_disk_bytes": lambda: pg_size(redis_db),
            },
            "r",
        )
        empty = await pg_size(sql_db)
        out[sql_b.name] = await footprint(sql_b, {"disk_bytes": lambda: pg_size(sql_db)}, "s")
        await vacuum_full(sql_db)
        out[sql_b.name]["disk_bytes_after_vacuum_full"] = await pg_size(sql_db) - empty
    finally:
        for b in (redis_b, sql_b):
            await b.archive.close()
            await b.hot.close()
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    servers = Servers()
    result: dict[str, Any] = {"turns_per_level": args.turns, "concurrent": args.concurrent}
    try:
        await servers.start_redis()
        servers.init_pg()
        servers.start_pg()
        redis_db = await servers.create_database("bench_redis")
        sql_db = await servers.create_database("bench_sql")
        await migrate(redis_db)
        await migrate(sql_db)
        redis_b = Backend("redis+archive", RedisHotStore(servers.redis_url), SqlArchive(redis_db))
        sql_b = Backend("sql", SqlHotStore(sql_db), AppendedArchive(sql_db))
        backends = [redis_b, sql_b]
        for b in backends:
            await b.hot.start()
            await b.archive.start()
        result["latency_by_history"] = await latencies(backends, args.turns)

        rounds: dict[str, list[float]] = {b.name: [] for b in backends}
        for r in range(3):
            for b in backends if r % 2 else backends[::-1]:
                rounds[b.name].append(
                    await throughput(b, args.concurrent, args.turns_each, f"{r}{b.name}")
                )
        result["turns_per_s"] = {
            name: {"median": round(float(np.median(v)), 1), "rounds": [round(x, 1) for x in v]}
            for name, v in rounds.items()
        }

        result["per_1000_conversations_of_20_events"] = await footprints(servers)
        result["recovery"] = await recovery(servers, redis_b, sql_b, sql_db)
        for b in backends:
            await b.archive.close()
            await b.hot.close()
    finally:
        await servers.cleanup()
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
    result["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    return result


async def recovery(
    servers: Servers, redis_b: Backend, sql_b: Backend, sql_db: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Redis: killed and started again empty; the worker's next load rebuilds from the archive.
    cids = {20: [f"rc20-{i}" for i in range(200)], 1_000: [f"rc1k-{i}" for i in range(20)]}
    for length, group in cids.items():
        for cid in group:
            await redis_b.seed(cid, length)
    await servers.kill_redis()
    answers_s = await servers.start_redis()
    out["redis_restart_to_ping_s"] = round(answers_s, 3)
    first, failed = time.perf_counter(), 0
    while True:
        try:
            head = await redis_b.hot.load_snapshot("rc20-0")
            break
        except DependencyUnavailable:  # a pooled connection died with the server
            failed += 1
    assert head is None  # answering, and empty
    out["redis_first_load_after_restart_ms"] = round((time.perf_counter() - first) * 1000, 3)
    out["redis_failed_calls_before_it"] = failed

    def snapshot_of(events: list[dict[str, Any]]) -> dict[str, Any]:
        return snapshot(len(events))

    for length, group in cids.items():
        started = time.perf_counter()
        for cid in group:
            rebuilt = await load_or_rebuild(redis_b.hot, redis_b.archive, cid, snapshot_of)
            assert rebuilt is not None
            assert rebuilt.seq == length
        per = (time.perf_counter() - started) / len(group)
        out[f"redis_rebuild_ms_per_conversation_{length}_events"] = round(per * 1000, 3)
    # PostgreSQL: a crash (immediate stop) under acknowledged appends, then a restart.
    acked: dict[str, int] = {}
    for i in range(100):
        cid = f"pgc-{i}"
        for n in range(5):
            await sql_b.turn(cid, n)
        acked[cid] = 20
    started = time.perf_counter()
    servers.stop_pg("immediate")
    servers.start_pg()
    out["postgres_crash_restart_s"] = round(time.perf_counter() - started, 3)
    first, failed = time.perf_counter(), 0
    while True:
        try:
            sql_head = await sql_b.hot.load_snapshot("pgc-0")
            break
        except DependencyUnavailable:  # a pooled connection died with the server
            failed += 1
    out["postgres_first_load_after_restart_ms"] = round((time.perf_counter() - first) * 1000, 3)
    out["postgres_failed_calls_before_it"] = failed
    assert sql_head is not None
    lost = 0
    for cid, seq in acked.items():
        stored = await sql_b.hot.load(cid)
        lost += seq - (stored.seq if stored else 0)
    out["postgres_events_lost_of_acknowledged"] = f"{lost} of {sum(acked.values())}"
    out["sql_db"] = sql_db.rsplit("/", 1)[-1]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=300, help="timed turns per history level")
    parser.add_argument("--concurrent", type=int, default=100)
    parser.add_argument("--turns-each", type=int, default=10, help="per conversation, throughput")
    parser.add_argument("--out", type=Path, default=Path("results/bench-tracker-stores.json"))
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
