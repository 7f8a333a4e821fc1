"""`parley worker scheduler`: the scheduler worker process (settings, bus, store, health).

Settings are read once from the environment (`PARLEY_SCHEDULER_*`, see `SchedulerSettings`);
command-line options override them. Run two or more replicas on one PostgreSQL database for
availability: every job fires exactly once (see README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from schemas.envelopes import SchedulerInput
from schemas.topics import Topic
from services.common import lifecycle
from services.common.bus import Bus, Subscription
from services.common.clock import Clock, SystemClock
from services.common.errors import DependencyUnavailable, PermanentError
from services.common.health import HealthServer
from services.common.kafka_bus import KafkaBus
from services.common.settings import BusSettings
from services.scheduler.settings import SchedulerSettings
from services.scheduler.worker import SchedulerService

logger = logging.getLogger(__name__)
GROUP = "parley-scheduler"


def add_worker_scheduler(workers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = workers.add_parser(
        "scheduler",
        help="consume parley.scheduler, fire reminders and handoff timers to parley.dialogue",
    )
    parser.add_argument("--database-url", help="job store database (PostgreSQL or SQLite URL)")
    parser.add_argument("--misfire-grace", type=float, help="seconds a late job may still fire")
    parser.add_argument("--health-port", type=int, help="port of /health/live and /health/ready")
    parser.set_defaults(func=run_worker_scheduler)


def run_worker_scheduler(args: argparse.Namespace, bus_settings: BusSettings) -> int:
    overrides = {
        "database_url": args.database_url,
        "misfire_grace_s": args.misfire_grace,
        "health_port": args.health_port,
    }
    settings = SchedulerSettings(**{k: v for k, v in overrides.items() if v is not None})
    try:
        return asyncio.run(serve(settings, KafkaBus(bus_settings)))
    except (DependencyUnavailable, PermanentError) as exc:
        logger.error("scheduler worker cannot start: %s", exc)
        return 2


class SchedulerWorker(lifecycle.ConsumingWorker):
    """The scheduler worker's parts, wired: service, bus subscription, health endpoints."""

    def __init__(self, settings: SchedulerSettings, bus: Bus, clock: Clock | None = None) -> None:
        self.settings = settings
        self.bus = bus
        self.service = SchedulerService(settings, bus.publish, clock or SystemClock())
        self.health = HealthServer(settings.health_host, settings.health_port)
        self.health.add_check("bus", self.bus_check)
        self.health.add_check("database", self.service.ready)

    async def start(self) -> None:
        """Serve health, open the store and start APScheduler, then consume requests."""
        await self.health.start()
        await self.service.start()
        self.bus.subscribe(
            Subscription(
                Topic.SCHEDULER,
                GROUP,
                self.service.handle,
                SchedulerInput,
                concurrency=self.settings.concurrency,
            )
        )
        await self.bus.start()
        self.consuming = True
        logger.info("scheduler worker consuming %s", Topic.SCHEDULER)

    async def stop(self) -> None:
        self.consuming = False
        await self.bus.stop()
        await self.service.stop()
        await self.health.stop()


async def serve(settings: SchedulerSettings, bus: Bus) -> int:
    """Run until SIGTERM/SIGINT."""
    return await lifecycle.serve(SchedulerWorker(settings, bus))
