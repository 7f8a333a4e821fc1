"""The embedded platform: every service in one process (`parley run`, `parley shell`).

One in-memory broker carries the topics; each service keeps its own bus client on it, its
own consumer groups and its own handlers, exactly as in the Kafka mode — only the transport
and the stores differ: trackers in memory with the SQL archive in SQLite (a restart rebuilds
them from it), the scheduler's job store in SQLite, the NLU model in process (onnxruntime).
Files live in the project's `.parley/` folder unless `data_dir` says otherwise.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.project.loader import load_project
from services.actions.worker_cli import ActionsSettings, ActionsWorker
from services.common.clock import Clock, SystemClock
from services.common.errors import ParleyError
from services.common.memory_bus import MemoryBroker, MemoryBus
from services.common.model_archive import ArchiveError, latest_archive
from services.common.settings import BusSettings
from services.dialogue.store.memory_store import MemoryHotStore
from services.dialogue.store.settings import StoreSettings
from services.dialogue.worker_cli import DialogueSettings, DialogueWorker, build_predictor
from services.gateway.auth import AgentDirectory
from services.gateway.settings import GatewaySettings
from services.gateway.worker import GatewayWorker
from services.nlu.worker_cli import NluSettings, NluWorker
from services.platform.adapters import NluParser, archive_trackers
from services.platform.analytics_adapter import ArchiveStatsSource
from services.scheduler.settings import SchedulerSettings
from services.scheduler.worker_cli import SchedulerWorker

logger = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"


class NoModel(ParleyError):
    """The project has no trained model yet."""


@dataclass
class EmbeddedOptions:
    project: Path
    model: Path | None = None  # an archive or models folder; default: <project>/models
    host: str = LOOPBACK
    port: int = 5005
    data_dir: Path | None = None  # default: <project>/.parley
    agents: AgentDirectory | None = None
    serve_http: bool = True
    gateway: dict[str, Any] = field(default_factory=dict)  # more GatewaySettings


class EmbeddedPlatform:
    """Starts and stops the services of the embedded mode, in dependency order."""

    def __init__(self, options: EmbeddedOptions, clock: Clock | None = None) -> None:
        self.options = options
        root = options.project.resolve()
        self.project = load_project(root)
        models = options.model or root / "models"
        archive = latest_archive(models) if models.is_dir() else models
        if archive is None or not archive.exists():
            raise NoModel(
                f"no trained model in {models}: run `parley train --project {options.project}` "
                "first (`make demo` does it)"
            )
        self.model = archive
        data = options.data_dir or root / ".parley"
        data.mkdir(parents=True, exist_ok=True)
        self.database_url = f"sqlite+aiosqlite:///{data / 'archive.db'}"
        self.broker = MemoryBroker(BusSettings(transport="memory"))
        clock = clock or SystemClock()

        self.scheduler = SchedulerWorker(
            SchedulerSettings(
                database_url=f"sqlite:///{data / 'scheduler.db'}",
                health_host=LOOPBACK,
                health_port=0,
            ),
            self._bus(),
            clock,
        )
        self.actions: ActionsWorker | None = None
        if (root / "actions").is_dir() or (root / "actions.py").is_file():
            package = root / "actions" if (root / "actions").is_dir() else root / "actions.py"
            self.actions = ActionsWorker(
                ActionsSettings(
                    package=str(package), http_enabled=False, health_host=LOOPBACK, health_port=0
                ),
                self._bus(),
                clock,
            )
        try:
            predictor = build_predictor(self.project, archive)
        except ArchiveError as exc:
            logger.warning("%s: training the dialogue policies from the project instead", exc)
            predictor = build_predictor(self.project)
        self.dialogue = DialogueWorker(
            DialogueSettings(project=root, model=archive, health_host=LOOPBACK, health_port=0),
            StoreSettings(DATABASE_URL=self.database_url),
            self._bus(),
            self.project,
            hot=MemoryHotStore(),
            predictor=predictor,
        )
        self.nlu = NluWorker(
            NluSettings(model=archive, backend="onnxruntime", health_host=LOOPBACK, health_port=0),
            self._bus(),
        )
        self.archive = self.dialogue.archive  # one SQLite engine for writes and reads
        settings = GatewaySettings(
            project=root, host=options.host, port=options.port, **options.gateway
        )
        self.agents = options.agents or AgentDirectory()
        self.gateway = GatewayWorker(
            settings,
            self._bus(),
            self.project,
            self.archive,
            archive_trackers(self.archive, self.project),
            parser=NluParser(self.nlu.service),
            agents=self.agents,
            clock=clock,
            mode="embedded",
            serve_http=options.serve_http,
            stats=ArchiveStatsSource(self.archive),
        )
        self._started: list[Any] = []

    def _bus(self) -> MemoryBus:
        return MemoryBus(self.broker)

    @property
    def workers(self) -> list[Any]:
        parts: list[Any] = [self.scheduler]
        if self.actions is not None:
            parts.append(self.actions)
        return [*parts, self.dialogue, self.nlu]

    async def start(self) -> None:
        """Start every service; a failure stops what had started and re-raises."""
        try:
            for worker in self.workers:
                await worker.start()
                self._started.append(worker)
            await self.gateway.start()
            self._started.append(self.gateway)
        except BaseException:
            await self.stop()
            raise
        logger.info(
            "embedded platform up: model %s, data in %s",
            self.model.name,
            self.database_url.removeprefix("sqlite+aiosqlite:///"),
        )

    async def stop(self) -> None:
        for worker in reversed(self._started):
            try:
                await worker.stop()
            except Exception:
                logger.exception("stopping %s failed", type(worker).__name__)
        self._started.clear()


def demo_agents(password: str | None = None) -> tuple[AgentDirectory, str]:
    """One console account, `agent`, with the given or a fresh random password."""
    password = password or secrets.token_urlsafe(9)
    agents = AgentDirectory()
    agents.add("agent", password, "agent", "Demo agent")
    return agents, password
