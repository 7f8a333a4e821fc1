"""The scheduler service: `parley.scheduler` requests in, `ExternalTrigger`s on `parley.dialogue`.

- `handle` schedules, replaces and cancels jobs (reminders and handoff timers) in the job store.
  It is idempotent: a redelivered request that already fired is not scheduled again.
- APScheduler (asyncio) wakes at the store's next run time and every `wakeup_interval_s` (so a
  replica sees jobs another replica added); each wakeup claims what is due (`SchedulerStore.
  claim_due`) and publishes it. `fire_due` does the same for an injected clock's "now".
- A publication that fails stays claimed and pending; after `claim_lease_s` any replica takes
  it over (`recover`). The trigger's `message_id` is the `fire_id`, so a republication is a
  duplicate the dialogue worker drops.
- Published ledger rows older than `ledger_retention_s` are deleted every `prune_interval_s`
  (`prune`), so the ledger stays small; a redelivery older than that would fire again.
- Jobs later than `misfire_grace_s` are not published: they are recorded as missed in the
  ledger, logged as a warning and counted (`missed`, shown by the readiness check).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN  # type: ignore[import-untyped]
from apscheduler.jobstores.base import (  # type: ignore[import-untyped]
    ConflictingIdError,
    JobLookupError,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.date import DateTrigger  # type: ignore[import-untyped]
from sqlalchemy.exc import InterfaceError, OperationalError

from schemas.envelopes import HandoffTimerRequest, ReminderCancelRequest, ReminderRequest
from schemas.events import ReminderCancelled
from schemas.topics import Topic
from services.common.bus import Publication
from services.common.clock import Clock
from services.common.dispatch import PublishFn
from services.common.errors import DependencyUnavailable, RetryableError
from services.scheduler import jobs
from services.scheduler.jobs import JobSpec
from services.scheduler.settings import SchedulerSettings
from services.scheduler.store import Claim, SchedulerStore, build_engine

logger = logging.getLogger(__name__)
T = TypeVar("T")
JOBSTORE = "parley"
SchedulerRequest = ReminderRequest | ReminderCancelRequest | HandoffTimerRequest


def default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class SchedulerService:
    """Schedules on requests, claims and publishes due jobs. `start()` opens the database."""

    def __init__(self, settings: SchedulerSettings, publish: PublishFn, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.replica = settings.replica_id or default_replica_id()
        self.handled = 0
        self.published = 0
        self.missed = 0
        self.pruned = 0
        self._last_prune: datetime | None = None
        self._publish_fn = publish
        self._store: SchedulerStore | None = None
        self._scheduler: Any = None
        self._ticker: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[bool]] = set()

    @property
    def store(self) -> SchedulerStore:
        if self._store is None:
            raise RuntimeError("the scheduler service is not started")
        return self._store

    async def start(self, *, process: bool = True) -> None:
        """Open the store and start APScheduler; `process=False` leaves firing to `fire_due`."""
        store = SchedulerStore(
            build_engine(self.settings.database_url),
            table_prefix=self.settings.table_prefix,
            on_due=self._on_due,
        )
        self._store = store
        await self._db(store.create_tables)
        scheduler = AsyncIOScheduler(
            timezone=UTC,
            jobstores={JOBSTORE: store.jobstore},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        scheduler.start(paused=not process)
        self._scheduler = scheduler
        if process:
            self._ticker = asyncio.create_task(self._tick(), name="scheduler-wakeup")
        logger.info("scheduler replica %s started on %s", self.replica, store.engine.url)

    async def stop(self) -> None:
        """Stop claiming, let in-flight publications finish, shut APScheduler down."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.pause()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if scheduler is not None and scheduler.running:
            shut = asyncio.Event()
            scheduler.add_listener(lambda _: shut.set(), EVENT_SCHEDULER_SHUTDOWN)
            scheduler.shutdown(wait=False)  # runs on the loop's next turn
            await shut.wait()
        if self._store is not None:
            self._store.engine.dispose()
            self._store = None

    async def __aenter__(self) -> SchedulerService:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def ready(self) -> tuple[bool, str]:
        if self._store is None:
            return False, "not started"
        try:
            await self._db(self._store.ping)
        except DependencyUnavailable as exc:
            return False, str(exc)
        return True, (
            f"replica {self.replica}; {self.handled} requests, {self.published} fired, "
            f"{self.missed} missed"
        )

    # --- requests -------------------------------------------------------------------------------

    async def handle(self, message: SchedulerRequest) -> list[Publication]:
        """Apply one `parley.scheduler` request; it publishes nothing itself."""
        if isinstance(message, ReminderRequest):
            await self.schedule(jobs.reminder_job(message))
        elif isinstance(message, ReminderCancelRequest):
            await self.cancel_reminders(message.conversation_id, message.event)
        elif message.action == "start":
            await self.schedule(jobs.handoff_job(message, self.settings.handoff_intents()))
        else:
            # `cancel` without a timer kind, like `cancel_all`, cancels both timers.
            timer = message.timer if message.action == "cancel" else None
            await self.cancel_handoff(message.conversation_id, timer)
        self.handled += 1
        return []

    async def schedule(self, spec: JobSpec) -> None:
        """Add the job, replacing one of the same identity; a firing already made is not redone."""
        if await self._db(self.store.has_fired, spec.fire_id):
            logger.info(
                "job %s (%s) already fired; not scheduling it again", spec.job_id, spec.name
            )
            return
        try:
            await self._db(self._add_job, spec)
        except (ConflictingIdError, JobLookupError) as exc:
            # Claimed or replaced by another replica between APScheduler's insert and update.
            raise RetryableError(f"job {spec.job_id} changed while scheduling: {exc}") from exc
        logger.info("%s %r of %s due %s", spec.source, spec.name, spec.conversation_id, spec.due_at)

    def _add_job(self, spec: JobSpec) -> None:
        self._scheduler.add_job(
            jobs.FUNC_REF,
            trigger=DateTrigger(run_date=spec.due_at, timezone=UTC),
            id=spec.job_id,
            name=f"{spec.source}:{spec.name}",
            kwargs=spec.payload(),
            jobstore=JOBSTORE,
            replace_existing=True,
        )

    async def cancel_reminders(self, conversation_id: str, event: ReminderCancelled) -> int:
        """Cancel by name, by intent (and entities), or all of the conversation's reminders."""
        if event.name:
            specs = await self._db(
                self.store.jobs, job_id=jobs.reminder_job_id(conversation_id, event.name)
            )
        else:
            prefix = jobs.conversation_prefix(jobs.REMINDER, conversation_id)
            specs = await self._db(self.store.jobs, prefix=prefix)
        doomed = [spec.job_id for spec in specs if jobs.cancels(event, spec)]
        removed = await self._db(self.store.delete_jobs, doomed)
        logger.info("cancelled %d reminder(s) of %s", removed, conversation_id)
        return removed

    async def cancel_handoff(self, conversation_id: str, timer: str | None) -> int:
        """Cancel one handoff timer of the conversation, or both when `timer` is None."""
        if timer is not None:
            doomed = [jobs.handoff_job_id(conversation_id, timer)]
        else:
            prefix = jobs.conversation_prefix(jobs.HANDOFF, conversation_id)
            doomed = [spec.job_id for spec in await self._db(self.store.jobs, prefix=prefix)]
        removed = await self._db(self.store.delete_jobs, doomed)
        logger.info("cancelled %d handoff timer(s) of %s", removed, conversation_id)
        return removed

    # --- firing ---------------------------------------------------------------------------------

    async def fire_due(self, now: datetime | None = None) -> list[JobSpec]:
        """Claim the jobs due at `now` (the clock's by default) and publish them; returns the
        published ones. The APScheduler loop does the same on every wakeup."""
        moment = now or self.clock.now()
        claims = await self._db(self._claim, moment)
        due = self._report(claims, moment)
        published = await asyncio.gather(*(self._publish(spec) for spec in due))
        return [spec for spec, ok in zip(due, published, strict=True) if ok]

    async def recover(self, now: datetime | None = None) -> list[JobSpec]:
        """Take over claims another replica made but never published, and publish them."""
        moment = now or self.clock.now()
        taken = await self._db(
            self.store.take_over_stale,
            moment,
            lease_s=self.settings.claim_lease_s,
            replica=self.replica,
        )
        for spec in taken:
            logger.warning(
                "taking over unpublished %s %r of %s", spec.source, spec.name, spec.job_id
            )
        published = await asyncio.gather(*(self._publish(spec) for spec in taken))
        return [spec for spec, ok in zip(taken, published, strict=True) if ok]

    def _claim(self, now: datetime) -> list[Claim]:
        return self.store.claim_due(
            now,
            grace_s=self.settings.misfire_grace_s,
            replica=self.replica,
            limit=self.settings.claim_batch,
        )

    def _on_due(self, now: datetime) -> None:
        # Called by APScheduler on the event loop; the job store is synchronous by design.
        for spec in self._report(self._claim(now), now):
            task = asyncio.get_running_loop().create_task(self._publish(spec))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    def _report(self, claims: Sequence[Claim], now: datetime) -> list[JobSpec]:
        due: list[JobSpec] = []
        for claim in claims:
            spec = claim.spec
            if not claim.missed:
                due.append(spec)
                continue
            self.missed += 1
            logger.warning(
                "%s %r of conversation %s was due at %s, %.0fs ago, beyond the misfire grace "
                "time of %gs: recorded as missed, not fired",
                spec.source,
                spec.name,
                spec.conversation_id,
                spec.due_at.isoformat(),
                jobs.lateness(spec.due_at, now).total_seconds(),
                self.settings.misfire_grace_s,
            )
        return due

    async def _publish(self, spec: JobSpec) -> bool:
        now = self.clock.now()
        try:
            await self._publish_fn(Topic.DIALOGUE, jobs.trigger(spec, now))
            await self._db(self.store.mark_published, spec.fire_id, now)
        except Exception:  # the claim stays pending: `recover` republishes it
            logger.exception(
                "publishing %s %r of %s failed; it will be retried after the claim lease",
                spec.source,
                spec.name,
                spec.conversation_id,
            )
            return False
        self.published += 1
        logger.info("fired %s %r of %s", spec.source, spec.name, spec.conversation_id)
        return True

    async def prune(self, now: datetime | None = None) -> int:
        """Delete the ledger's published rows older than the retention; returns how many."""
        moment = now or self.clock.now()
        cutoff = moment - timedelta(seconds=self.settings.ledger_retention_s)
        removed = await self._db(self.store.prune_fired, cutoff)
        self._last_prune = moment
        self.pruned += removed
        if removed:
            logger.info("pruned %d fired-ledger row(s) published before %s", removed, cutoff)
        return removed

    async def prune_if_due(self, now: datetime | None = None) -> int:
        """`prune` when `prune_interval_s` has passed since the last one (or none ran yet)."""
        moment = now or self.clock.now()
        last = self._last_prune
        if last is not None and (moment - last).total_seconds() < self.settings.prune_interval_s:
            return 0
        return await self.prune(moment)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.settings.wakeup_interval_s)
            if self._scheduler is not None:
                self._scheduler.wakeup()
            try:
                await self.recover()
                await self.prune_if_due()
            except DependencyUnavailable as exc:
                logger.warning("scheduler database unavailable: %s", exc)
            except Exception:  # the wake-up loop must outlive one failed sweep
                logger.exception("taking over stale claims failed")

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking store work in a thread; a database that does not answer is retryable."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            raise DependencyUnavailable(
                f"scheduler database unavailable: {exc}", delay=1.0
            ) from exc
