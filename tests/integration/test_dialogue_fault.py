"""Fault test: 200 concurrent conversations over real Kafka while the dialogue worker process is
killed with SIGKILL and restarted. No user message is lost, no bot message is duplicated (one
outbound id per turn; a redelivered turn is republished with the same id and the same content),
no turn is recorded twice, and every tracker in Redis equals its SQL archive."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from schemas.envelopes import OutboundMessage
from schemas.topics import Topic
from services.common.bus import Publication, Subscription
from services.common.kafka_bus import KafkaBus
from services.dialogue.store.redis_store import RedisHotStore
from services.dialogue.store.sql_archive import SqlArchive
from tests.integration.test_tracker_store import REDIS_URL, pg_url  # noqa: F401 - fixture
from tests.support.buses import bus_settings, kafka_bootstrap
from tests.support.messages import said

pytestmark = pytest.mark.integration

CONVERSATIONS = 200
SCRIPT = [("greet", "utter_greet"), ("mood_great", "utter_happy"), ("goodbye", "utter_goodbye")]
WAIT_S = 120.0


class Outbound:
    """Every outbound message, and an event per count of answered user messages."""

    def __init__(self) -> None:
        self.by_id: dict[str, list[OutboundMessage]] = defaultdict(list)
        self.answered: set[str] = set()
        self._changed = asyncio.Condition()

    async def __call__(self, message: OutboundMessage) -> list[Publication]:
        async with self._changed:
            self.by_id[message.message_id].append(message)
            if message.turn_complete and message.in_reply_to:
                self.answered.add(message.in_reply_to)
            self._changed.notify_all()
        return []

    async def wait_answered(self, count: int, within: float = WAIT_S) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: len(self.answered) >= count), within
                )
            except TimeoutError:
                raise AssertionError(
                    f"{len(self.answered)} of {count} user messages answered in {within:g}s"
                ) from None


def start_worker(env: dict[str, str], project: Path, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "services.cli",
        "worker",
        "dialogue",
        "--project",
        str(project),
    ]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


async def test_sigkill_mid_traffic_loses_and_duplicates_nothing(
    shared_dir: Path,
    unique_prefix: str,
    pg_url: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    project = shared_dir / "examples" / "rasa" / "moodbot"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap(),
        "PARLEY_TOPIC_PREFIX": unique_prefix,
        "PARLEY_SESSION_TIMEOUT_MS": "6000",
        "PARLEY_HEARTBEAT_INTERVAL_MS": "500",
        "REDIS_URL": REDIS_URL,
        "DATABASE_URL": pg_url,
        "PARLEY_STORE_KEY_PREFIX": unique_prefix,
        "PARLEY_DIALOGUE_HEALTH_PORT": "0",
    }
    log = tmp_path / "worker.log"
    probe = KafkaBus(bus_settings("kafka", unique_prefix))
    outbound = Outbound()
    probe.subscribe(Subscription(Topic.OUTBOUND, "probe", outbound, OutboundMessage))
    await probe.start()
    worker = start_worker(env, project, log)
    sent: dict[str, list[tuple[str, str]]] = defaultdict(list)  # conversation -> (id, intent)
    try:
        for intent, _ in SCRIPT:
            for n in range(CONVERSATIONS):
                conversation = f"c{n:03d}"
                message = said(conversation, intent)
                sent[conversation].append((message.message_id, intent))
                await probe.publish(Topic.DIALOGUE, message)
        total = CONVERSATIONS * len(SCRIPT)
        await outbound.wait_answered(total // 4)
        worker.send_signal(signal.SIGKILL)  # mid-traffic, no chance to commit or clean up
        worker.wait(30)
        killed_at = len(outbound.answered)
        assert killed_at < total, "the worker finished before it could be killed"
        worker = start_worker(env, project, log)
        await outbound.wait_answered(total)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        await probe.stop()

    # every user message answered, by exactly one outbound id, republished identically
    ids_per_turn: dict[str, set[str]] = defaultdict(set)
    for message_id, copies in outbound.by_id.items():
        assert all(c.model_dump(exclude={"sent_at"}) == copies[0].model_dump(exclude={"sent_at"})
                   for c in copies), f"{message_id} was republished with other content"  # fmt: skip
        if copies[0].in_reply_to:
            ids_per_turn[copies[0].in_reply_to].add(message_id)
    every_message = [mid for turns in sent.values() for mid, _ in turns]
    assert set(every_message) <= outbound.answered
    assert all(len(ids_per_turn[mid]) == 1 for mid in every_message)
    # each conversation recorded each turn once, with moodbot's answers, in Redis and in SQL
    async with RedisHotStore(REDIS_URL, unique_prefix) as hot, SqlArchive(pg_url) as archive:
        for conversation, turns in sent.items():
            stored = await hot.load(conversation)
            assert stored is not None
            users = [e for e in stored.events if e["event"] == "user"]
            assert [e["message_id"] for e in users] == [mid for mid, _ in turns]
            actions = [e["name"] for e in stored.events if e["event"] == "action"]
            expected: list[Any] = ["action_session_start", "action_listen"]
            for _, reply in SCRIPT:
                expected += [reply, "action_listen"]
            assert actions == expected, conversation
            assert await archive.read(conversation) == stored.events
    print(f"killed after {killed_at} of {total} turns answered; log: {log}")
