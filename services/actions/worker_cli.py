"""`parley worker actions`: the actions worker process (composition root: settings, bus, action
package, Rasa webhook server, health).

Settings are read once from the environment (`PARLEY_ACTIONS_*`, see `ActionsSettings`);
command-line options override them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.envelopes import ActionRequest
from schemas.topics import Topic
from services.actions.executor import ActionRunner
from services.actions.http import WebhookApp, WebhookServer
from services.actions.registry import ActionRegistry, PackageLoadError
from services.actions.worker import ActionsService
from services.common.bus import Bus, Subscription
from services.common.clock import Clock, SystemClock
from services.common.health import HealthServer
from services.common.kafka_bus import KafkaBus
from services.common.settings import BusSettings

logger = logging.getLogger(__name__)
GROUP = "parley-actions"


class ActionsSettings(BaseSettings):
    """The actions worker's settings. Environment: `PARLEY_ACTIONS_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_ACTIONS_", extra="ignore", frozen=True)

    package: str = "actions"
    timeout_s: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=32, ge=1)
    http_enabled: bool = True
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=5055, ge=0)
    health_host: str = "0.0.0.0"
    health_port: int = Field(default=8082, ge=0)
    auto_reload: bool = False
    reload_interval_s: float = Field(default=1.0, gt=0)


def add_worker_actions(workers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `parley worker actions` on the `worker` sub-command's sub-parsers."""
    parser = workers.add_parser(
        "actions",
        help="consume parley.actions, run the rasa-sdk action package, publish results to "
        "parley.dialogue; also serve Rasa's action server webhook",
    )
    parser.add_argument(
        "--actions",
        help="the action package: a module name importable from the working directory "
        "(as rasa-sdk's --actions), or a path to its folder",
    )
    parser.add_argument(
        "--auto-reload",
        action="store_true",
        default=None,
        help="reload the package when its files change (development)",
    )
    parser.add_argument("--http-port", type=int, help="port of the Rasa webhook (default 5055)")
    parser.add_argument("--no-http", action="store_true", help="do not serve the Rasa webhook")
    parser.add_argument("--timeout", type=float, help="seconds an action may run")
    parser.add_argument("--concurrency", type=int, help="actions running at once")
    parser.add_argument("--health-port", type=int, help="port of /health/live and /health/ready")
    parser.set_defaults(func=run_worker_actions)


def run_worker_actions(args: argparse.Namespace, bus_settings: BusSettings) -> int:
    overrides = {
        "package": args.actions,
        "auto_reload": args.auto_reload,
        "http_port": args.http_port,
        "http_enabled": False if args.no_http else None,
        "timeout_s": args.timeout,
        "concurrency": args.concurrency,
        "health_port": args.health_port,
    }
    settings = ActionsSettings(**{k: v for k, v in overrides.items() if v is not None})
    # As `python -m rasa_sdk` does: the package is found from the working directory.
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    worker = ActionsWorker(settings, KafkaBus(bus_settings))
    try:
        code = asyncio.run(serve(worker))
    except PackageLoadError as exc:
        logger.error("actions worker cannot start: %s", exc)
        return 2
    if worker.runner.stuck_threads:
        # A thread cannot be stopped, and the interpreter would wait for it at exit.
        logger.warning(
            "exiting with %d synchronous action(s) still running", worker.runner.stuck_threads
        )
        logging.shutdown()
        os._exit(code)
    return code


class ActionsWorker:
    """The actions worker's parts, wired: package, runner, bus subscription, webhook, health."""

    def __init__(self, settings: ActionsSettings, bus: Bus, clock: Clock | None = None) -> None:
        self.settings = settings
        self.bus = bus
        self.registry = ActionRegistry(settings.package)
        self.runner = ActionRunner(
            self.registry, timeout_s=settings.timeout_s, concurrency=settings.concurrency
        )
        self.service = ActionsService(self.runner, clock or SystemClock())
        self.http = (
            WebhookServer(WebhookApp(self.runner), settings.http_host, settings.http_port)
            if settings.http_enabled
            else None
        )
        self.health = HealthServer(settings.health_host, settings.health_port)
        self.consuming = False
        self.health.add_check("bus", self._bus_check)
        self.health.add_check("actions", self.runner.ready)

    async def _bus_check(self) -> tuple[bool, str]:
        return self.consuming, "consuming" if self.consuming else "not consuming"

    async def start(self) -> None:
        """Load the package (`PackageLoadError` if broken), serve HTTP and health, consume."""
        self.registry.load()
        await self.health.start()
        if self.http is not None:
            await self.http.start()
        self.bus.subscribe(
            Subscription(
                Topic.ACTIONS,
                GROUP,
                self.service.handle,
                ActionRequest,
                concurrency=self.settings.concurrency,
            )
        )
        await self.bus.start()
        self.consuming = True
        logger.info(
            "actions worker consuming %s with %d action(s)",
            Topic.ACTIONS,
            len(self.registry.names()),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Watch the package (with `auto_reload`) until `stop` is set, then stop."""
        try:
            if self.settings.auto_reload:
                await self.registry.watch(self.settings.reload_interval_s, stop)
            else:
                await stop.wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        self.consuming = False
        await self.bus.stop()
        if self.http is not None:
            await self.http.stop()
        await self.health.stop()
        self.runner.close()


async def serve(worker: ActionsWorker) -> int:
    """Run the worker until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await worker.start()
    except BaseException:
        await worker.stop()
        raise
    await worker.run(stop)
    return 0
