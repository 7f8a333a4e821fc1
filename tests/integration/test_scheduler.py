"""The scheduler worker on real services: two replicas consuming `parley.scheduler` from Kafka and
sharing one PostgreSQL job store. The replica that scheduled a reminder is stopped before the
reminder is due; the other one fires it, exactly once, on `parley.dialogue`."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from schemas.envelopes import ExternalTrigger
from schemas.topics import Topic
from services.common.bus import Subscription
from services.common.kafka_bus import KafkaBus
from services.scheduler import jobs
from services.scheduler.settings import SchedulerSettings
from services.scheduler.worker import SchedulerService
from services.scheduler.worker_cli import SchedulerWorker
from tests.support.buses import bus_settings
from tests.support.clock import FakeClock
from tests.support.recorder import Recorder
from tests.unit.scheduler.builders import NOW, reminder

pytestmark = pytest.mark.integration

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+asyncpg://parley@127.0.0.1:15432/parley")
WAIT_S = 30.0


async def _admin() -> Any:
    dsn = make_url(DATABASE_URL).set(drivername="postgresql").render_as_string(False)
    try:
        return await asyncpg.connect(dsn, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL does not answer at {DATABASE_URL} ({exc}); run `make services-up`",
            pytrace=False,
        )


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh database of this test's own, dropped afterwards."""
    name = f"parley_test_scheduler_{uuid.uuid4().hex[:12]}"
    admin = await _admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield make_url(DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await _admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


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
