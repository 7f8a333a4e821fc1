"""The scheduler service on the memory bus and a SQLite job store: scheduling, replacing and
cancelling, misfires, handoff timers, restarts and exactly-once firing across replicas.

Most tests keep APScheduler paused and fire with `fire_due` at a `FakeClock`'s time; the last
ones let APScheduler run for real with a reminder a second ahead."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.envelopes import DeadLetter, Envelope, ExternalTrigger, SchedulerInput
from schemas.topics import Topic
from services.common.bus import RawMessage, Subscription
from services.common.clock import SystemClock
from services.common.memory_bus import MemoryBroker, MemoryBus
from services.scheduler import jobs
from services.scheduler.settings import SchedulerSettings
from services.scheduler.store import MISSED, PENDING, PUBLISHED
from services.scheduler.worker import SchedulerService
from services.scheduler.worker_cli import GROUP, SchedulerWorker
from tests.support.clock import FakeClock
from tests.support.recorder import Recorder
from tests.unit.scheduler.builders import NOW, cancel, handoff, reminder

IN_5 = NOW + timedelta(minutes=5)


@dataclass
class Rig:
    """Scheduler replicas on one SQLite file, publishing to one memory bus."""

    db: Path
    clock: FakeClock
    bus: MemoryBus
    triggers: Recorder
    replicas: list[SchedulerService] = field(default_factory=list)

    def settings(self, replica: str, **overrides: Any) -> SchedulerSettings:
        return SchedulerSettings(
            database_url=f"sqlite:///{self.db}", replica_id=replica, **overrides
        )

    async def replica(self, name: str = "a", **overrides: Any) -> SchedulerService:
        service = SchedulerService(self.settings(name, **overrides), self.bus.publish, self.clock)
        await service.start(process=False)
        self.replicas.append(service)
        return service

    async def fired(self) -> list[ExternalTrigger]:
        await self.bus.drain()
        return list(self.triggers.items)

    def at(self, moment: datetime) -> None:
        self.clock.advance((moment - self.clock.now()).total_seconds())


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    bus = MemoryBus(MemoryBroker(), clock=FakeClock())
    triggers = Recorder()
    bus.subscribe(Subscription(Topic.DIALOGUE, "probe", triggers, ExternalTrigger))
    rig = Rig(tmp_path / "scheduler.db", FakeClock(NOW), bus, triggers)
    async with bus:
        yield rig
        for service in rig.replicas:
            await service.stop()


async def test_reminders_are_per_conversation_and_fire_when_due(rig: Rig) -> None:
    service = await rig.replica()
    await service.handle(reminder("alice", "my_reminder", IN_5, entities={"x": 1}))
    await service.handle(reminder("bob", "my_reminder", IN_5 + timedelta(seconds=1)))
    assert len(await asyncio.to_thread(service.store.jobs)) == 2

    rig.at(IN_5 - timedelta(seconds=1))
    assert await service.fire_due() == []
    rig.at(IN_5)
    assert [s.conversation_id for s in await service.fire_due()] == ["alice"]
    rig.at(IN_5 + timedelta(seconds=1))
    assert [s.conversation_id for s in await service.fire_due()] == ["bob"]

    alice, bob = await rig.fired()
    assert (alice.conversation_id, alice.reminder_name, alice.entities) == (
        "alice",
        "my_reminder",
        {"x": 1},
    )
    assert (alice.source, alice.intent, alice.output_channel) == (
        "reminder",
        "EXTERNAL_remind",
        "socketio",
    )
    assert alice.kill_on_user_msg is True
    assert alice.scheduled_at == 1_700_000_000.0
    assert bob.conversation_id == "bob"
    assert await asyncio.to_thread(service.store.jobs) == []
    assert [r["status"] for r in await asyncio.to_thread(service.store.fired)] == [PUBLISHED] * 2


async def test_rescheduling_a_name_replaces_the_reminder(rig: Rig) -> None:
    service = await rig.replica()
    await service.handle(reminder(name="r", due=IN_5, intent="EXTERNAL_first"))
    later = IN_5 + timedelta(minutes=10)
    await service.handle(reminder(name="r", due=later, intent="EXTERNAL_second"))
    assert [s.intent for s in await asyncio.to_thread(service.store.jobs)] == ["EXTERNAL_second"]
    rig.at(IN_5 + timedelta(seconds=1))
    assert await service.fire_due() == []
    rig.at(later)
    await service.fire_due()
    assert [t.intent for t in await rig.fired()] == ["EXTERNAL_second"]


async def test_naive_reminder_time_is_utc(rig: Rig) -> None:
    service = await rig.replica()
    await service.handle(reminder(due=datetime(2026, 1, 1, 12, 5)))  # noqa: DTZ001
    rig.at(datetime(2026, 1, 1, 12, 4, 59, tzinfo=UTC))
    assert await service.fire_due() == []
    rig.at(datetime(2026, 1, 1, 12, 5, tzinfo=UTC))
    assert len(await service.fire_due()) == 1


async def test_cancel_by_name_by_intent_and_entities_and_all(rig: Rig) -> None:
    service = await rig.replica()

    async def names(conversation: str = "alice") -> list[str]:
        prefix = jobs.conversation_prefix(jobs.REMINDER, conversation)
        return sorted(
            s.name or "" for s in await asyncio.to_thread(service.store.jobs, prefix=prefix)
        )

    for name, intent, entities in [
        ("a", "EXTERNAL_x", {"city": "Berlin"}),
        ("b", "EXTERNAL_x", {"city": "Paris"}),
        ("c", "EXTERNAL_y", None),
        ("d", "EXTERNAL_y", None),
    ]:
        await service.handle(reminder(name=name, intent=intent, entities=entities))
    await service.handle(reminder("bob", name="a"))

    await service.handle(cancel(name="c"))
    assert await names() == ["a", "b", "d"]
    await service.handle(cancel(name="zzz"))  # nothing to cancel is fine
    await service.handle(cancel(intent="EXTERNAL_x", entities={"city": "Paris"}))
    assert await names() == ["a", "d"]
    await service.handle(cancel(intent="EXTERNAL_y"))
    assert await names() == ["a"]
    await service.handle(reminder(name="e"))
    await service.handle(cancel())
    assert await names() == []
    assert await names("bob") == ["a"]  # another conversation's reminder is untouched


async def test_late_reminders_fire_within_grace_and_are_reported_beyond_it(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    service = await rig.replica(misfire_grace_s=60)
    await service.handle(reminder(name="on_time", due=NOW + timedelta(seconds=30)))
    await service.handle(reminder(name="late", due=NOW - timedelta(seconds=29)))  # 59s late
    await service.handle(reminder(name="too_late", due=NOW - timedelta(minutes=10)))
    rig.at(NOW + timedelta(seconds=30))
    with caplog.at_level(logging.WARNING, logger="services.scheduler"):
        fired = await service.fire_due()
    assert sorted(s.name or "" for s in fired) == ["late", "on_time"]
    assert sorted(t.reminder_name or "" for t in await rig.fired()) == ["late", "on_time"]
    assert service.missed == 1
    statuses = {r["job_id"]: r["status"] for r in await asyncio.to_thread(service.store.fired)}
    assert statuses[jobs.reminder_job_id("alice", "too_late")] == MISSED
    (warning,) = [r for r in caplog.records if "missed" in r.getMessage()]
    assert "'too_late'" in warning.getMessage()
    assert "630s ago" in warning.getMessage()
    assert await asyncio.to_thread(service.store.jobs) == []
    assert "1 missed" in (await service.ready())[1]


async def test_handoff_timers_start_replace_cancel_and_fire(rig: Rig) -> None:
    service = await rig.replica(handoff_queue_intent="EXTERNAL_queue_timeout")
    in_1 = NOW + timedelta(minutes=1)
    await service.handle(handoff("start", "queue", IN_5, reason="no agent free"))
    await service.handle(handoff("start", "queue", in_1, reason="still no agent"))
    await service.handle(handoff("start", "agent_silence", in_1))
    await service.handle(handoff("start", "queue", in_1, conversation="bob"))
    await service.handle(handoff("cancel", "agent_silence"))
    rig.at(in_1)
    await service.fire_due()
    alice, bob = sorted(await rig.fired(), key=lambda t: t.conversation_id)
    assert alice.source == "handoff_timer"
    assert alice.intent == "EXTERNAL_queue_timeout"
    assert alice.entities == {"timer": "queue", "reason": "still no agent"}
    assert bob.entities == {"timer": "queue"}

    await service.handle(handoff("start", "queue", IN_5))
    await service.handle(handoff("start", "agent_silence", IN_5))
    await service.handle(reminder(due=IN_5))
    await service.handle(handoff("cancel_all"))
    assert [s.source for s in await asyncio.to_thread(service.store.jobs)] == ["reminder"]
    await service.handle(handoff("start", "agent_silence", IN_5, reason="agent away"))
    rig.at(IN_5)
    await service.fire_due()
    silent = (await rig.fired())[-1]
    assert silent.intent == "EXTERNAL_handoff_agent_silent"
    assert silent.entities == {"timer": "agent_silence", "reason": "agent away"}


async def test_reminders_survive_a_restart(rig: Rig) -> None:
    first = await rig.replica("a")
    await first.handle(reminder(name="r", due=IN_5))
    await first.stop()

    rig.at(IN_5 + timedelta(minutes=30))  # due while no scheduler ran
    second = await rig.replica("b")
    assert [s.name for s in await second.fire_due()] == ["r"]
    (trigger,) = await rig.fired()
    assert trigger.reminder_name == "r"
    assert (await asyncio.to_thread(second.store.fired))[0]["claimed_by"] == "b"


async def test_two_replicas_fire_each_reminder_once(rig: Rig) -> None:
    a, b = await rig.replica("a"), await rig.replica("b")
    for i in range(20):
        await (a if i % 2 else b).handle(reminder(f"c{i}", "r", IN_5))
    rig.at(IN_5)
    fired_a, fired_b = await asyncio.gather(a.fire_due(), b.fire_due())
    assert len(fired_a) + len(fired_b) == 20
    assert len(await rig.fired()) == 20
    assert {t.conversation_id for t in await rig.fired()} == {f"c{i}" for i in range(20)}
    assert await a.fire_due() == []
    assert await b.fire_due() == []


async def test_a_firing_claimed_once_is_not_won_again(rig: Rig) -> None:
    """Both replicas read the due job; the ledger lets only the first claim win."""
    a, b = await rig.replica("a"), await rig.replica("b")
    request = reminder(due=IN_5, message_id="m1")
    await a.handle(request)
    rig.at(IN_5)
    assert len(await a.fire_due()) == 1
    # The same job back in the store (a replica that read it before the claim re-adds it, or a
    # redelivered request) is removed by the next claim without a second firing.
    await asyncio.to_thread(b._add_job, jobs.reminder_job(request))
    assert await b.fire_due() == []
    assert await asyncio.to_thread(b.store.jobs) == []
    # A redelivered request that already fired is not scheduled again.
    await b.handle(request)
    assert await asyncio.to_thread(b.store.jobs) == []
    assert len(await rig.fired()) == 1


async def test_a_claim_whose_replica_died_is_taken_over_once(rig: Rig) -> None:
    a, b = await rig.replica("a", claim_lease_s=30), await rig.replica("b", claim_lease_s=30)
    await a.handle(reminder(due=IN_5))
    rig.at(IN_5)
    # Replica a claims and dies before publishing.
    claims = await asyncio.to_thread(a.store.claim_due, IN_5, grace_s=60, replica="a")
    assert len(claims) == 1
    await a.stop()
    assert await b.fire_due() == []
    assert await b.recover() == []  # the lease has not run out yet
    rig.at(IN_5 + timedelta(seconds=31))
    assert len(await b.recover()) == 1
    assert await b.recover() == []
    (trigger,) = await rig.fired()
    assert trigger.message_id == claims[0].spec.fire_id
    (row,) = await asyncio.to_thread(b.store.fired)
    assert (row["status"], row["claimed_by"], row["attempts"]) == (PUBLISHED, "b", 2)


async def test_a_failed_publication_is_retried_with_the_same_message_id(rig: Rig) -> None:
    sent: list[Envelope | RawMessage] = []
    failing = True

    async def flaky_publish(topic: Topic, message: Envelope | RawMessage) -> None:
        if failing:
            raise ConnectionError("kafka down")
        sent.append(message)

    service = SchedulerService(rig.settings("a", claim_lease_s=5), flaky_publish, rig.clock)
    await service.start(process=False)
    rig.replicas.append(service)
    await service.handle(reminder(due=IN_5))
    rig.at(IN_5)
    assert await service.fire_due() == []
    assert [r["status"] for r in await asyncio.to_thread(service.store.fired)] == [PENDING]
    failing = False
    rig.at(IN_5 + timedelta(seconds=6))
    assert len(await service.recover()) == 1
    (message,) = sent
    assert isinstance(message, ExternalTrigger)
    assert message.message_id == (await asyncio.to_thread(service.store.fired))[0]["fire_id"]


async def test_requests_over_the_bus(rig: Rig) -> None:
    service = await rig.replica()
    dead = Recorder()
    consumer = MemoryBus(rig.bus._broker, clock=rig.clock)
    consumer.subscribe(Subscription(Topic.SCHEDULER, GROUP, service.handle, SchedulerInput))
    consumer.subscribe(Subscription(Topic.DEAD_LETTERS, "probe", dead, DeadLetter))
    async with consumer:
        await rig.bus.publish(Topic.SCHEDULER, reminder(name="a", due=IN_5))
        await rig.bus.publish(Topic.SCHEDULER, reminder(name="b", due=IN_5))
        await rig.bus.publish(Topic.SCHEDULER, cancel(name="a"))
        await rig.bus.publish(Topic.SCHEDULER, handoff("start", "queue", IN_5))
        await rig.bus.publish_bytes(Topic.SCHEDULER, b"alice", b"{not json")
        await consumer.drain()
    assert len(dead.items) == 1
    assert sorted(s.name or "" for s in await asyncio.to_thread(service.store.jobs)) == [
        "b",
        "queue",
    ]


async def test_real_time_reminder_fires_once_across_two_running_workers(tmp_path: Path) -> None:
    broker = MemoryBroker()
    probe = MemoryBus(broker)
    triggers = Recorder()
    probe.subscribe(Subscription(Topic.DIALOGUE, "probe", triggers, ExternalTrigger))
    settings = SchedulerSettings(
        database_url=f"sqlite:///{tmp_path / 'scheduler.db'}",
        wakeup_interval_s=0.2,
        health_host="127.0.0.1",
        health_port=0,
    )
    workers = [SchedulerWorker(settings, MemoryBus(broker)) for _ in range(2)]
    async with probe:
        for worker in workers:
            await worker.start()
        try:
            due = SystemClock().now() + timedelta(seconds=1)
            await probe.publish(Topic.SCHEDULER, reminder(due=due, sent_at=SystemClock().now()))
            (trigger,) = await triggers.wait_for(1, within=5)
            assert SystemClock().now() >= due
            assert trigger.reminder_name == "r1"
            await asyncio.sleep(0.6)  # a few more wakeups of both replicas
            assert len(triggers.items) == 1
            ready = await workers[0].health.readiness()
            assert ready["ready"], ready
        finally:
            for worker in workers:
                await worker.stop()


async def test_published_ledger_rows_are_pruned_after_the_retention(rig: Rig) -> None:
    day = 86400.0
    service = await rig.replica(ledger_retention_s=7 * day, prune_interval_s=3600)
    await service.handle(reminder("old", due=IN_5))
    await service.handle(reminder("late", due=IN_5 + timedelta(days=2)))
    await service.handle(reminder("missed", due=IN_5 + timedelta(days=3)))
    rig.at(IN_5)
    assert len(await service.fire_due()) == 1
    rig.at(IN_5 + timedelta(days=2))
    assert len(await service.fire_due()) == 1
    rig.at(IN_5 + timedelta(days=3, hours=2))  # beyond the grace time: recorded as missed
    assert await service.fire_due() == []

    rig.at(IN_5 + timedelta(days=7) - timedelta(seconds=1))
    assert await service.prune_if_due() == 0  # nothing older than 7 days yet
    rig.at(IN_5 + timedelta(days=7, seconds=1))
    assert await service.prune_if_due() == 0  # the last prune was less than an hour ago
    rig.at(IN_5 + timedelta(days=7, hours=1))
    assert await service.prune_if_due() == 1
    rows = await asyncio.to_thread(service.store.fired)
    assert [(r["conversation_id"], r["status"]) for r in rows] == [
        ("late", PUBLISHED),
        ("missed", MISSED),
    ]
    rig.at(IN_5 + timedelta(days=30))
    assert await service.prune() == 1
    assert [r["status"] for r in await asyncio.to_thread(service.store.fired)] == [MISSED]
    assert service.pruned == 2


def test_ledger_retention_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_SCHEDULER_LEDGER_RETENTION_S", "60")
    assert SchedulerSettings().ledger_retention_s == 60
    monkeypatch.delenv("PARLEY_SCHEDULER_LEDGER_RETENTION_S")
    assert SchedulerSettings().ledger_retention_s == 7 * 86400
