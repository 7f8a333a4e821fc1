"""`parley stats` benchmark: a seeded archive of N conversations, on PostgreSQL and SQLite.

    python -m benchmarks.stats [--conversations 10000] [--runs 5] [--backend postgresql sqlite]

Seeds the archive's `events` table (migrated by Alembic) with bulk inserts of a realistic mix:
a session start, ~10 turns per conversation (intents with confidences, responses, custom
actions, a few failures and fallbacks), handoffs, reminders set, fired and cancelled, and
feedback, over 30 days. Then times `archive_stats` (the query function) and the CLI end to end
(`parley stats --json` in a fresh process), `--runs` times each; reports p50 and max. The
PostgreSQL database is created for the run (from $DATABASE_URL's server) and dropped after it;
SQLite lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from services.dialogue.analytics import archive_stats
from services.dialogue.store.migrate import migrate
from services.dialogue.store.sql_archive import event_row, events_table

DEFAULT_URL = "postgresql+asyncpg://parley@127.0.0.1:15432/parley"
START = datetime(2026, 10, 26, tzinfo=UTC).timestamp()
DAYS = 30
INTENTS = ("greet", "book", "ask_price", "ask_hours", "affirm", "deny", "thanks", "goodbye")
CUSTOM = ("action_book", "action_check_price", "action_lookup_hours")
REASONS = ("requested", "fallback", "low_confidence", "action_failure")
CHUNK = 5000


def _user(ts: float, text: str, intent: str, confidence: float, **meta: Any) -> dict[str, Any]:
    return {
        "event": "user",
        "timestamp": ts,
        "metadata": meta,
        "text": text,
        "parse_data": {
            "intent": {"name": intent, "confidence": confidence},
            "entities": [],
            "text": text,
            "message_id": None,
            "metadata": {},
            "intent_ranking": [{"name": intent, "confidence": confidence}],
        },
        "input_channel": "rest",
        "message_id": uuid.UUID(int=random.getrandbits(128)).hex,
    }


def _action(ts: float, name: str) -> dict[str, Any]:
    return {
        "event": "action",
        "timestamp": ts,
        "name": name,
        "policy": "RulePolicy",
        "confidence": 1.0,
        "action_text": None,
        "hide_rasa_intent": False,
    }


def _bot(ts: float, text: str) -> dict[str, Any]:
    return {
        "event": "bot",
        "timestamp": ts,
        "metadata": {"utter_action": "utter_x"},
        "text": text,
        "data": {"elements": None, "buttons": None},
    }


def conversation(rng: random.Random) -> list[dict[str, Any]]:
    """One conversation's events: a session start, then 6-14 turns and their extras."""
    ts = START + rng.random() * DAYS * 86400
    events = [
        _action(ts, "action_session_start"),
        {"event": "session_started", "timestamp": ts},
        _action(ts, "action_listen"),
    ]
    for _ in range(rng.randint(6, 14)):
        ts += rng.uniform(3, 60)
        if rng.random() < 0.06:
            events.append(_user(ts, "gibberish", "nlu_fallback", rng.uniform(0.05, 0.3)))
            ts += rng.uniform(0.05, 0.4)
            events += [_action(ts, "action_default_fallback"), _bot(ts, "Sorry, come again?")]
        else:
            intent = rng.choice(INTENTS)
            events.append(_user(ts, f"a message about {intent}", intent, rng.uniform(0.4, 1.0)))
            ts += rng.uniform(0.05, 0.4)
            if rng.random() < 0.2:
                name = rng.choice(CUSTOM)
                ts += rng.uniform(0.1, 1.5)
                if rng.random() < 0.05:
                    reason = rng.choice(("failed", "timeout"))
                    events.append(
                        {
                            "event": "action_failed",
                            "timestamp": ts,
                            "name": name,
                            "reason": reason,
                            "error": "boom",
                        }
                    )
                else:
                    events.append(_action(ts, name))
            events += [_action(ts, f"utter_{intent}"), _bot(ts, f"About {intent}: sure.")]
        ts += rng.uniform(0.01, 0.1)
        events.append(_action(ts, "action_listen"))
    if rng.random() < 0.05:
        ts += 1
        events.append(
            {
                "event": "reminder",
                "timestamp": ts,
                "intent": "remind",
                "name": "r",
                "date_time": "2026-11-30T10:00:00",
                "entities": None,
                "kill_on_user_msg": True,
            }
        )
        ts += 60
        if rng.random() < 0.7:
            events.append(_user(ts, "EXTERNAL: remind", "remind", 1.0, is_external=True))
            events += [_action(ts + 0.1, "utter_remind"), _action(ts + 0.2, "action_listen")]
        else:
            events.append({"event": "cancel_reminder", "timestamp": ts, "name": "r"})
    if rng.random() < 0.04:
        ts += 1
        reason = rng.choice(REASONS)
        events.append({"event": "pause", "timestamp": ts, "metadata": {"handoff_reason": reason}})
        events.append(_action(ts, "action_listen"))
    if rng.random() < 0.1:
        ts += 5
        stars = rng.random() < 0.5
        events.append(
            {
                "event": "user_feedback",
                "timestamp": ts,
                "rating": rng.randint(1, 5) if stars else rng.choice((1, -1)),
                "scale": "stars" if stars else "thumbs",
            }
        )
    return events


def rows(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    random.seed(seed)
    for index in range(count):
        sender = f"bench-{index:06d}"
        for seq, event in enumerate(conversation(rng)):
            yield event_row(sender, seq, event)


async def seed(url: str, count: int) -> tuple[int, float]:
    await migrate(url)
    engine = create_async_engine(url)
    started = time.perf_counter()
    total = 0
    try:
        batch: list[dict[str, Any]] = []
        async with engine.begin() as connection:
            for row in rows(count):
                batch.append(row)
                if len(batch) == CHUNK:
                    await connection.execute(insert(events_table), batch)
                    total, batch = total + len(batch), []
            if batch:
                await connection.execute(insert(events_table), batch)
                total += len(batch)
            if engine.dialect.name == "postgresql":
                await connection.exec_driver_sql("ANALYZE events")
            else:
                await connection.exec_driver_sql("ANALYZE")
    finally:
        await engine.dispose()
    return total, time.perf_counter() - started


async def time_query(url: str, runs: int) -> tuple[list[float], dict[str, Any]]:
    engine = create_async_engine(url)
    times: list[float] = []
    try:
        for _ in range(runs):
            started = time.perf_counter()
            report = await archive_stats(engine)
            times.append(time.perf_counter() - started)
    finally:
        await engine.dispose()
    summary = {
        "conversations": report.conversations,
        "turns": report.turns,
        "latency_p50": report.latency.p50,
        "fallback_rate": report.fallback_rate,
    }
    return times, summary


def time_cli(url: str, runs: int, module: bool = False) -> list[float]:
    """Wall time of `parley stats --json` (or `python -m services.platform.stats_cli stats`,
    which skips importing the rest of the CLI) in a fresh process."""
    parley = Path(sys.executable).with_name("parley")
    entry = [sys.executable, "-m", "services.platform.stats_cli"] if module else [str(parley)]
    command = [*entry, "stats", "--database-url", url, "--json"]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return times


def startup(runs: int) -> float:
    """p50 wall time of `parley --version`: the CLI's start-up alone (imports)."""
    parley = Path(sys.executable).with_name("parley")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(parley), "--version"], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def bench(url: str, args: argparse.Namespace) -> dict[str, Any]:
    events, seeding = await seed(url, args.conversations)
    query_times, summary = await time_query(url, args.runs)
    cli_times = await asyncio.to_thread(time_cli, url, args.runs)
    module_times = await asyncio.to_thread(time_cli, url, args.runs, True)
    return {
        "events": events,
        "seeding_s": round(seeding, 2),
        "query_p50_s": round(statistics.median(query_times), 3),
        "query_max_s": round(max(query_times), 3),
        "cli_p50_s": round(statistics.median(cli_times), 3),
        "cli_max_s": round(max(cli_times), 3),
        "module_cli_p50_s": round(statistics.median(module_times), 3),
        "parley_version_p50_s": round(await asyncio.to_thread(startup, args.runs), 3),
        "report": summary,
    }


async def postgresql(args: argparse.Namespace) -> dict[str, Any]:
    name = f"parley_bench_stats_{uuid.uuid4().hex[:12]}"
    server = make_url(args.database_url).set(drivername="postgresql")
    admin = await asyncpg.connect(server.render_as_string(hide_password=False), timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(args.database_url).set(database=name).render_as_string(hide_password=False)
    try:
        return await bench(url, args)
    finally:
        admin = await asyncpg.connect(server.render_as_string(hide_password=False), timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def sqlite(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        return await bench(f"sqlite+aiosqlite:///{folder}/archive.db", args)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stats")
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backend", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "benchmark": "stats",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "conversations": args.conversations,
        "runs": args.runs,
    }
    for backend in args.backend:
        results[backend] = await (postgresql(args) if backend == "postgresql" else sqlite(args))
        print(backend, json.dumps(results[backend]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
