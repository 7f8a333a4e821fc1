"""Dialogue benchmark: time per turn at 10 and at 10,000 events of history, turns/s of one
worker's handler, and the Redis hot store's append/read latency — on the real Redis and
PostgreSQL started by `make services-up`.

    python -m benchmarks.dialogue_turns [--turns 300] [--history 10000] [--out results/...]

Each turn is `DialogueService.handle(ParsedUserMessage)` on moodbot (`../shared/examples/
rasa/moodbot`, policies trained at start): load the conversation from Redis (snapshot + the
events the snapshot does not cover), run the engine (rules + memoization), append the new
events with the Lua version check, write them to PostgreSQL, build the publications. A
"long" conversation is first grown to `--history` events by real turns; "short" ones have
7-15 events. Short and long turns alternate, so drift hits both; medians, p99 and the ratio
long/short are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from schemas.envelopes import ParsedUserMessage
from schemas.events import UserUttered
from schemas.project.loader import load_project
from services.common.clock import SystemClock
from services.dialogue.domain_dict import domain_as_dict
from services.dialogue.engine import DialogueEngine
from services.dialogue.handlers import DialogueService
from services.dialogue.store.migrate import migrate
from services.dialogue.store.redis_store import RedisHotStore
from services.dialogue.store.sql_archive import SqlArchive
from services.dialogue.worker_cli import build_predictor

REPO = Path(__file__).resolve().parents[1]
MOODBOT = REPO.parent / "shared" / "examples" / "rasa" / "moodbot"
INTENTS = ["greet", "mood_great", "mood_unhappy", "affirm", "deny", "goodbye"]


def said(conversation: str, intent: str) -> ParsedUserMessage:
    now = datetime.now(UTC)
    mid = uuid.uuid4().hex
    event = UserUttered(
        timestamp=now.timestamp(),
        text=intent,
        input_channel="rest",
        message_id=mid,
        parse_data={"intent": {"name": intent, "confidence": 1.0}, "entities": []},
    )
    return ParsedUserMessage(conversation_id=conversation, message_id=mid, sent_at=now, event=event)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000


async def run(args: argparse.Namespace) -> dict[str, Any]:
    project = load_project(args.project)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    await migrate(args.database_url)
    hot = RedisHotStore(args.redis_url, prefix)
    archive = SqlArchive(args.database_url)
    await hot.start()
    await archive.start()
    engine = DialogueEngine(project.domain, build_predictor(project), rng=random.Random(0))
    service = DialogueService(engine, hot, archive, SystemClock(), domain_as_dict(project.domain))
    rng = random.Random(1)
    short, long = f"{prefix}-short", f"{prefix}-long"
    try:
        # Grow the long conversation with real turns until it has `history` events.
        seq = 0
        while seq < args.history:
            await service.handle(said(long, rng.choice(INTENTS)))
            head = await hot.load_snapshot(long)
            seq = head[0] if head else 0
        timings: dict[str, list[float]] = {"short": [], "long": []}
        for turn in range(args.turns):
            # a fresh short conversation every other turn keeps it at 7-15 events
            if turn % 2 == 0:
                short = f"{prefix}-short-{turn}"
                await service.handle(said(short, "greet"))
            for name, conversation in (("short", short), ("long", long)):
                message = said(conversation, rng.choice(INTENTS))
                t0 = time.perf_counter()
                await service.handle(message)
                timings[name].append(time.perf_counter() - t0)
        # Throughput: many conversations, one handler, sequential as one partition would be.
        started = time.perf_counter()
        count = 0
        for i in range(args.turns):
            await service.handle(said(f"{prefix}-c{i % 50}", rng.choice(INTENTS)))
            count += 1
        turns_per_s = count / (time.perf_counter() - started)
        # The hot store alone.
        appends, reads = [], []
        probe = f"{prefix}-probe"
        seq = 0
        one = [{"event": "action", "timestamp": 1.0, "name": "action_listen"}]
        for _ in range(args.turns * 2):
            t0 = time.perf_counter()
            seq = await hot.append(probe, seq, one, {"tracker": {}})
            appends.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await hot.load_snapshot(probe)
            reads.append(time.perf_counter() - t0)
        final_long = await hot.load_snapshot(long)
    finally:
        await archive.close()
        await hot.close()
    short_p50 = statistics.median(timings["short"]) * 1000
    long_p50 = statistics.median(timings["long"]) * 1000
    return {
        "bot": "moodbot",
        "history_events": args.history,
        "long_conversation_final_seq": final_long[0] if final_long else None,
        "turn_ms": {
            "short_p50": round(short_p50, 3),
            "short_p99": round(_pct(timings["short"], 99), 3),
            "long_p50": round(long_p50, 3),
            "long_p99": round(_pct(timings["long"], 99), 3),
            "ratio_long_over_short_p50": round(long_p50 / short_p50, 3),
        },
        "turns_per_s_one_handler": round(turns_per_s, 1),
        "redis_append_ms": {"p50": round(_pct(appends, 50), 3), "p99": round(_pct(appends, 99), 3)},
        "redis_read_snapshot_ms": {
            "p50": round(_pct(reads, 50), 3),
            "p99": round(_pct(reads, 99), 3),
        },
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=MOODBOT)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0")
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "DATABASE_URL", "postgresql+asyncpg://parley@127.0.0.1:15432/parley"
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("results/bench-dialogue-turns.json"))
    args = parser.parse_args(argv)
    if not args.project.is_dir():
        sys.exit(f"{args.project} is missing: this benchmark reads ../shared/examples/rasa")
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
