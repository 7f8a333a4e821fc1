"""The scheduler worker on real services: two replicas consuming `parley.scheduler` from Kafka and
sharing one PostgreSQL job store. The replica that scheduled a reminder is stopped before the
reminder is due; the other one fires it, exactly once, on `parley.dialogue`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from schemas.envelopes import ExternalTrigger
from schemas.topics import Topic
from services.common.bus import Subscription
from services.common.kafka_bus import KafkaBus, ensure_topics
from services.scheduler import jobs
from services.scheduler.settings import SchedulerSettings
from services.scheduler.worker import SchedulerService
from services.scheduler.worker_cli import SchedulerWorker
from tests.integration.test_tracker_store import pg_url as pg_url  # a fixture
from tests.support.buses import bus_settings, kafka_bootstrap
from tests.support.clock import FakeClock
from tests.support.recorder import Recorder
from tests.unit.scheduler.builders import NOW, reminder

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 30.0


async def until(condition: Callable[[], bool], what: str, within: float = WAIT_S) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g}s")
        await asyncio.sleep(0.05)


async def test_two_replicas_fire_a_reminder_once_when_its_scheduler_stops(
    pg_url: str, unique_prefix: str
) -> None:
    kafka = bus_settings("kafka", unique_prefix)
    replicas = [
        SchedulerWorker(
            SchedulerSettings(
                database_url=pg_url,
                replica_id=f"replica-{i}",
                wakeup_interval_s=0.2,
                health_host="127.0.0.1",
                health_port=0,
            ),
            KafkaBus(kafka),
        )
        for i in range(2)
    ]
    probe = KafkaBus(kafka)
    triggers = Recorder()
    probe.subscribe(Subscription(Topic.DIALOGUE, "probe", triggers, ExternalTrigger))
    running = list(replicas)
    try:
        for replica in replicas:
            await replica.start()
        await probe.start()

        def handled() -> int:
            return sum(r.service.handled for r in replicas)

        # Warm-up: the consumer group has settled once a request gets through.
        await probe.publish(
            Topic.SCHEDULER, reminder("warm-up", due=datetime(2100, 1, 1, tzinfo=UTC))
        )
        await until(lambda: handled() == 1, "the warm-up request handled")
        before = [r.service.handled for r in replicas]

        due = datetime.now(UTC) + timedelta(seconds=2)
        await probe.publish(
            Topic.SCHEDULER, reminder("alice", "r1", due, sent_at=datetime.now(UTC))
        )
        await until(lambda: handled() == 2, "the reminder request handled")
        scheduler = next(r for r, n in zip(replicas, before, strict=True) if r.service.handled > n)
        survivor = next(r for r in replicas if r is not scheduler)
        job_id = jobs.reminder_job_id("alice", "r1")
        assert [s.job_id for s in scheduler.service.store.jobs(job_id=job_id)] == [job_id]

        running.remove(scheduler)
        await scheduler.stop()
        assert datetime.now(UTC) < due, "the scheduling replica stopped only after the due time"

        (trigger,) = await triggers.wait_for(1, within=WAIT_S)
        assert datetime.now(UTC) >= due
        assert (trigger.conversation_id, trigger.reminder_name) == ("alice", "r1")
        await asyncio.sleep(1.5)  # several more wakeups and recovery sweeps
        assert len(triggers.items) == 1
        (row,) = survivor.service.store.fired("alice")
        assert (row["status"], row["claimed_by"]) == ("published", survivor.service.replica)
        assert row["fire_id"] == trigger.message_id
    finally:
        await probe.stop()
        for replica in running:
            await replica.stop()


async def test_concurrent_claims_on_postgres_fire_each_job_once(pg_url: str) -> None:
    """Three replicas claim the same 60 due reminders at once (`FOR UPDATE SKIP LOCKED` plus
    the ledger); a claim whose replica died is taken over by exactly one of the others."""
    sent: list[str] = []

    async def publish(topic: Topic, message: Any) -> None:
        sent.append(message.message_id)

    clock = FakeClock(NOW)
    replicas = [
        SchedulerService(
            SchedulerSettings(database_url=pg_url, replica_id=f"r{i}", claim_lease_s=10),
            publish,
            clock,
        )
        for i in range(3)
    ]
    for replica in replicas:
        await replica.start(process=False)
    try:
        for i in range(60):
            await replicas[i % 3].handle(reminder(f"c{i}", "r", NOW + timedelta(seconds=i % 5)))
        clock.advance(5)
        for _ in range(3):
            await asyncio.gather(*(replica.fire_due() for replica in replicas))
        assert len(sent) == 60
        assert len(set(sent)) == 60

        await replicas[0].handle(reminder("dies", "r", NOW + timedelta(seconds=6)))
        clock.advance(1)
        store = replicas[0].store
        claims = await asyncio.to_thread(store.claim_due, clock.now(), grace_s=60, replica="r0")
        assert len(claims) == 1  # r0 claimed, then died before publishing
        clock.advance(11)
        taken = await asyncio.gather(*(replica.recover() for replica in replicas[1:]))
        assert sorted(len(t) for t in taken) == [0, 1]
        assert sent[-1] == claims[0].spec.fire_id
        assert len(sent) == 61
    finally:
        for replica in replicas:
            await replica.stop()


def _logged(log: Path, line: str) -> bool:
    return line in log.read_text()


def start_replica(name: str, pg_url: str, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    """`parley worker scheduler` as a process of its own, configured by its environment only."""
    env = {
        **os.environ,
        "PARLEY_TOPIC_PREFIX": prefix,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap(),
        "PARLEY_SESSION_TIMEOUT_MS": "6000",
        "PARLEY_HEARTBEAT_INTERVAL_MS": "500",
        "PARLEY_SCHEDULER_DATABASE_URL": pg_url,
        "PARLEY_SCHEDULER_REPLICA_ID": name,
        "PARLEY_SCHEDULER_HEALTH_HOST": "127.0.0.1",
        "PARLEY_SCHEDULER_HEALTH_PORT": "0",
        "PARLEY_SCHEDULER_WAKEUP_INTERVAL_S": "0.2",
        "PARLEY_SCHEDULER_CLAIM_LEASE_S": "2",
    }
    command = [sys.executable, "-m", "services.cli", "worker", "scheduler"]
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


async def test_a_replica_killed_mid_firing_loses_and_duplicates_no_reminder(
    pg_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    """Issue 7's acceptance: two replica processes, 1,000 reminders over 100 conversations due
    2-8 s ahead, one replica SIGKILLed while they fire. Every reminder fires, each with one
    message id (its `fire_id`); a republication after a takeover reuses that id (README,
    "Exactly once across replicas", point 4), so duplicates by id are allowed, others are not."""
    reminders, conversations = 1000, 100
    kafka = bus_settings("kafka", unique_prefix)
    await ensure_topics(kafka, list(Topic))
    logs = {name: tmp_path / f"{name}.log" for name in ("victim", "survivor")}
    processes = {
        name: start_replica(name, pg_url, unique_prefix, log) for name, log in logs.items()
    }
    probe = KafkaBus(kafka)
    triggers = Recorder()
    probe.subscribe(Subscription(Topic.DIALOGUE, "probe", triggers, ExternalTrigger))
    try:
        await probe.start()
        for name, log in logs.items():
            await until(partial(_logged, log, "scheduler worker consuming"), f"{name} consuming")
        # Warm-up: a reminder due now fires once the consumer group has settled.
        await probe.publish(
            Topic.SCHEDULER, reminder("warm-up", due=datetime.now(UTC), sent_at=datetime.now(UTC))
        )
        await triggers.wait_for(1, within=WAIT_S)

        start = datetime.now(UTC)
        for i in range(reminders):
            due = start + timedelta(seconds=2 + 6 * i / reminders)
            request = reminder(f"conv-{i % conversations}", f"r{i // conversations}", due)
            await probe.publish(Topic.SCHEDULER, request.model_copy(update={"sent_at": start}))

        await triggers.wait_for(1 + 300, within=WAIT_S)
        fired_before_kill = len(triggers.items) - 1
        processes["victim"].send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(processes["victim"].wait, 10) == -signal.SIGKILL

        def fired() -> dict[tuple[str, str | None], set[str]]:
            ids: dict[tuple[str, str | None], set[str]] = defaultdict(set)
            for trigger in triggers.items[1:]:
                ids[(trigger.conversation_id, trigger.reminder_name)].add(trigger.message_id)
            return ids

        await until(lambda: len(fired()) == reminders, "every reminder fired", within=25)
        assert processes["survivor"].poll() is None, "the survivor is still running"

        # The ledger is settled (nothing pending) when every firing was published: after that,
        # no replica publishes again, so what arrived is all that will.
        admin = await asyncpg.connect(
            make_url(pg_url).set(drivername="postgresql").render_as_string(False)
        )
        try:

            async def ledger() -> list[Any]:
                return list(await admin.fetch("SELECT * FROM parley_scheduler_fired"))

            rows = await ledger()
            deadline = time.monotonic() + 10
            while any(row["status"] != "published" for row in rows):
                assert time.monotonic() < deadline, "ledger rows still pending after 10s"
                await asyncio.sleep(0.1)
                rows = await ledger()
        finally:
            await admin.close()

        ids = fired()
        message_ids = [t.message_id for t in triggers.items[1:]]
        duplicates = len(message_ids) - len(set(message_ids))
        by_replica: dict[str, int] = defaultdict(int)
        for row in rows:
            by_replica[row["claimed_by"]] += 1
        taken_over = sum(1 for row in rows if row["attempts"] > 1)
        print(
            f"\nfired before SIGKILL: {fired_before_kill}; received {len(message_ids)} triggers, "
            f"{len(set(message_ids))} distinct ids, {duplicates} duplicates by id; ledger rows "
            f"by replica {dict(by_replica)}, taken over {taken_over}"
        )
        expected = {
            (f"conv-{i % conversations}", f"r{i // conversations}") for i in range(reminders)
        }
        assert set(ids) == expected
        assert all(len(fire_ids) == 1 for fire_ids in ids.values()), "a reminder fired twice"
        assert len(set(message_ids)) == reminders
        assert all(t.source == "reminder" for t in triggers.items)
        assert len(rows) == reminders + 1  # plus the warm-up
        assert {row["fire_id"] for row in rows} >= set(message_ids)
        assert 0 < fired_before_kill < reminders
    finally:
        await probe.stop()
        for name, process in processes.items():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(process.wait, 30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    pytest.fail(f"replica {name} did not stop on SIGTERM", pytrace=False)
