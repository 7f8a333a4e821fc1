"""`parley worker actions`: the actions worker process (composition root: settings, bus, action
package, Rasa webhook server, health).

Settings are read once from the environment (`PARLEY_ACTIONS_*`, see `ActionsSettings`);
command-line options override them.

In remote mode (`--remote URL`, `PARLEY_ACTIONS_REMOTE_URL`, or `--project DIR` whose
`endpoints.yml` names `action_endpoint.url`) the worker runs no package: it forwards every
request to that external rasa-sdk action server (`services.actions.remote`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.envelopes import ActionRequest
from schemas.project.loader import load_project
from schemas.project.problems import ProjectError
from schemas.topics import Topic
from services.actions.executor import ActionRunner
from services.actions.http import WebhookApp, WebhookServer
from services.actions.registry import ActionRegistry, PackageLoadError
from services.actions.remote import RemoteActionRunner
from services.actions.worker import ActionsService
from services.common import lifecycle
from services.common.bus import Bus, Subscription
from services.common.clock import Clock, SystemClock
from services.common.health import HealthServer
from services.common.kafka_bus import KafkaBus
from services.common.lifecycle import Worker
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
    # Remote mode: the external action server's webhook URL, and how hard to try to reach it.
    remote_url: str | None = None
    remote_attempts: int = Field(default=3, ge=1)
    remote_backoff_s: float = Field(default=0.2, ge=0)
    remote_connect_timeout_s: float = Field(default=3.0, gt=0)


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
    remote = parser.add_mutually_exclusive_group()
    remote.add_argument(
        "--remote",
        metavar="URL",
        help="remote mode: forward every request to this external rasa-sdk action server's "
        "webhook (e.g. http://localhost:5055/webhook) instead of running a package",
    )
    remote.add_argument(
        "--project",
        type=Path,
        metavar="DIR",
        help="a Rasa project: remote mode with its endpoints.yml `action_endpoint.url` "
        "(or its `actions_module` run in process)",
    )
    parser.set_defaults(func=run_worker_actions)


def action_source(
    remote: str | None, project: Path | None, package: str | None
) -> tuple[str | None, str | None]:
    """`(remote_url, package)` from the options: `--remote`, else the project's
    `action_endpoint.url` (or its `actions_module` when no package is given).

    `ProjectError` when the project does not load, `ValueError` when it names no action server.
    """
    if project is None:
        return remote, package
    endpoints = load_project(project).endpoints
    if endpoints.action_url:
        return endpoints.action_url, package
    if package is None and endpoints.actions_module:
        return None, endpoints.actions_module
    if package is None:
        raise ValueError(f"{project}/endpoints.yml has no `action_endpoint.url`")
    return None, package


def run_worker_actions(args: argparse.Namespace, bus_settings: BusSettings) -> int:
    try:
        remote_url, package = action_source(
            getattr(args, "remote", None), getattr(args, "project", None), args.actions
        )
    except (ProjectError, ValueError) as exc:
        logger.error("actions worker cannot start: %s", exc)
        return 2
    overrides = {
        "remote_url": remote_url,
        "package": package,
        "auto_reload": args.auto_reload,
        "http_port": args.http_port,
        "http_enabled": False if args.no_http else None,
        "timeout_s": args.timeout,
        "concurrency": args.concurrency,
        "health_port": args.health_port,
    }
    settings = ActionsSettings(**{k: v for k, v in overrides.items() if v is not None})
    if settings.remote_url:
        if package is not None:
            logger.warning("remote mode: the action package %r is not loaded", package)
        return asyncio.run(serve(RemoteActionsWorker(settings, KafkaBus(bus_settings))))
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


class ActionsWorker(lifecycle.ConsumingWorker):
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
        self.health.add_check("bus", self.bus_check)
        self.health.add_check("actions", self.runner.ready)

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


class RemoteActionsWorker(lifecycle.ConsumingWorker):
    """Remote mode: the bus subscription and health, actions run by an external rasa-sdk server.

    No webhook is served (Rasa can call the external server itself). Readiness includes the
    action server's `GET /health`.
    """

    def __init__(self, settings: ActionsSettings, bus: Bus, clock: Clock | None = None) -> None:
        if not settings.remote_url:
            raise ValueError("remote mode needs `remote_url`")
        self.settings = settings
        self.bus = bus
        self.runner = RemoteActionRunner(
            settings.remote_url,
            timeout_s=settings.timeout_s,
            concurrency=settings.concurrency,
            attempts=settings.remote_attempts,
            backoff_s=settings.remote_backoff_s,
            connect_timeout_s=settings.remote_connect_timeout_s,
        )
        self.service = ActionsService(self.runner, clock or SystemClock())
        self.health = HealthServer(settings.health_host, settings.health_port)
        self.health.add_check("bus", self.bus_check)
        self.health.add_check("actions", self.runner.ready)

    async def start(self) -> None:
        await self.health.start()
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
        ok, detail = await self.runner.ready()
        logger.info(
            "actions worker consuming %s, forwarding to %s (%s)",
            Topic.ACTIONS,
            self.settings.remote_url,
            detail if ok else f"not reachable yet: {detail}",
        )

    async def stop(self) -> None:
        self.consuming = False
        await self.bus.stop()
        await self.health.stop()
        await self.runner.aclose()


async def serve(worker: Worker) -> int:
    """Run the worker until SIGTERM/SIGINT."""
    return await lifecycle.serve(worker)
