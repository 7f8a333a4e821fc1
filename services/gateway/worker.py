"""The gateway's parts, wired: bus subscriptions, HTTP server (uvicorn), readiness.

The same worker runs in the Kafka mode (`parley worker gateway`) and inside the embedded
platform (`parley run`), with whichever bus, archive and parser it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from schemas.envelopes import OutboundMessage
from schemas.project.loader import Project
from schemas.topics import Topic
from services.common import lifecycle
from services.common.bus import Bus, Subscription
from services.common.clock import Clock, SystemClock
from services.gateway.app import create_app
from services.gateway.auth import AgentDirectory, Authenticator
from services.gateway.deps import GatewayDeps
from services.gateway.ports import ConversationArchive, Parser, TrackerReader
from services.gateway.replies import ReplyHub
from services.gateway.settings import GatewaySettings
from services.gateway.stats import StatsSource, stats_router

logger = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside a Parley worker: the worker's own SIGTERM/SIGINT handling stops it
    (uvicorn would otherwise take the process's signals over)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value()) or None


def console_routers(deps: GatewayDeps) -> list[Any]:
    """The handoff console, when its package is installed (it is part of Parley)."""
    try:
        from services.gateway.console import console_router
    except ImportError:  # pragma: no cover - only while the console is being built
        logger.warning("the handoff console is not available in this build")
        return []
    return [console_router(deps)]


class GatewayWorker(lifecycle.ConsumingWorker):
    def __init__(
        self,
        settings: GatewaySettings,
        bus: Bus,
        project: Project,
        archive: ConversationArchive,
        trackers: TrackerReader,
        *,
        parser: Parser | None = None,
        agents: AgentDirectory | None = None,
        clock: Clock | None = None,
        mode: str = "kafka",
        serve_http: bool = True,
        stats: StatsSource | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.archive = archive
        self.hub = ReplyHub()
        clock = clock or SystemClock()
        self.auth = Authenticator(
            clock,
            auth_token=_secret(settings.auth_token),
            jwt_secret=_secret(settings.jwt_secret),
            jwt_ttl_s=settings.jwt_ttl_s,
            allow_query_token=settings.allow_query_token,
        )
        if agents is None:
            agents = (
                AgentDirectory.from_file(settings.agents_file)
                if settings.agents_file
                else AgentDirectory()
            )
        self.deps = GatewayDeps(
            settings=settings,
            clock=clock,
            publish=bus.publish,
            hub=self.hub,
            trackers=trackers,
            auth=self.auth,
            domain=project.domain,
            parser=parser,
            agents=agents,
            archive=archive,
            mode=mode,
        )
        self.deps.checks["bus"] = self.bus_check
        self.deps.checks["archive"] = self._archive_check
        routers = [*console_routers(self.deps), stats_router(self.deps, stats)]
        self.app: FastAPI = create_app(self.deps, routers)
        self.serve_http = serve_http
        self._server: _EmbeddedServer | None = None
        self._serving: asyncio.Task[None] | None = None

    async def _archive_check(self) -> tuple[bool, str]:
        await self.archive.last_seq("__parley_ready__")
        return True, "reachable"

    def subscriptions(self) -> list[Subscription[Any]]:
        group = f"parley-gateway-{self.settings.replica_id}"
        return [
            Subscription(
                Topic.OUTBOUND, group, self._on_outbound, OutboundMessage, from_latest=True
            ),
            Subscription(
                Topic.EVENTS,
                group,
                self._on_event,
                dict[str, Any],
                from_latest=True,
            ),
        ]

    async def _on_outbound(self, message: OutboundMessage) -> None:
        await self.hub.handle(message)

    async def _on_event(self, record: dict[str, Any]) -> None:
        await self.hub.handle_event(record)

    async def start(self) -> None:
        if self.serve_http and not self.auth.enabled:
            logger.warning(
                "the HTTP API has no auth (set PARLEY_GATEWAY_AUTH_TOKEN or "
                "PARLEY_GATEWAY_JWT_SECRET): anyone who reaches port %d may use it",
                self.settings.port,
            )
        for subscription in self.subscriptions():
            self.bus.subscribe(subscription)
        await self.bus.start()
        self.consuming = True
        if self.serve_http:
            config = uvicorn.Config(
                self.app,
                host=self.settings.host,
                port=self.settings.port,
                log_level="warning",
                lifespan="off",
                ws_ping_interval=20,
            )
            self._server = _EmbeddedServer(config)
            self._serving = asyncio.create_task(self._server.serve(), name="gateway-http")
            while not self._server.started:
                if self._serving.done():
                    await self._serving  # raises why it could not start
                    raise RuntimeError(f"the gateway could not listen on port {self.settings.port}")
                await asyncio.sleep(0.02)
            logger.info("gateway on http://%s:%d", self.settings.host, self.port)

    @property
    def port(self) -> int:
        if self._server is None or not self._server.servers:
            return self.settings.port
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.consuming = False
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._serving, 10)
        await self.bus.stop()
