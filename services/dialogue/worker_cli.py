"""`parley worker dialogue`: the dialogue worker process (composition root).

It reads the bot project (domain, stories, rules, config), loads the policy ensemble from the
model archive (`--model` / `PARLEY_DIALOGUE_MODEL`; trained at start when none is given),
reads the handoff settings once from `endpoints.yml`'s `handoff:` section (docs/handoff.md),
opens the tracker store (Redis + SQL archive, or SQL alone with `PARLEY_STORE_BACKEND=sql`;
migrated at start), subscribes to `parley.dialogue`, and serves `/health/live` and
`/health/ready`. Settings: `PARLEY_DIALOGUE_*` (this module) and `PARLEY_STORE_*` /
`REDIS_URL` / `DATABASE_URL` (the store).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.envelopes import DialogueInput
from schemas.project.loader import Project, load_project
from schemas.project.problems import ProjectError
from schemas.topics import Topic
from services.common import lifecycle
from services.common.bus import Bus, Subscription
from services.common.clock import SystemClock
from services.common.health import HealthServer
from services.common.kafka_bus import KafkaBus
from services.common.settings import BusSettings
from services.dialogue.domain_dict import domain_as_dict
from services.dialogue.engine import DialogueEngine, EngineSettings, Predictor
from services.dialogue.handlers import DialogueService
from services.dialogue.store.migrate import migrate
from services.dialogue.store.ports import HotStore
from services.dialogue.store.redis_store import RedisHotStore
from services.dialogue.store.settings import StoreSettings
from services.dialogue.store.sql_archive import SqlArchive
from services.dialogue.store.sql_hot_store import AppendedArchive, SqlHotStore

logger = logging.getLogger(__name__)
GROUP = "parley-dialogue"


class DialogueSettings(BaseSettings):
    """The dialogue worker's settings. Environment: `PARLEY_DIALOGUE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_DIALOGUE_", extra="ignore", frozen=True)

    project: Path = Path(".")
    model: Path | None = None  # an archive, or a models folder (its newest archive)
    concurrency: int = Field(default=8, ge=1)
    max_predictions: int = Field(default=10, ge=1)
    failure_response: str | None = "utter_default"
    seed: int | None = None
    # Events a turn reads beyond the snapshot's anchor (30 to 90): enough for rules and
    # max_history; the anchor carries the state of everything before.
    window: int = Field(default=30, ge=8)
    health_host: str = "0.0.0.0"
    health_port: int = Field(default=8083, ge=0)


def build_predictor(project: Project, model: Path | None = None) -> Predictor:
    """The trained policy ensemble of the archive `model` (an archive or a models folder), or,
    without one, the ensemble `config.yml` configures trained on the project's stories and
    rules. `ArchiveError` (a `ValueError`) when the archive has no policies."""
    from services.dialogue.model import load_ensemble, train_core

    if model is not None:
        return load_ensemble(model, project).as_predictor()
    return train_core(project).ensemble.as_predictor()


class DialogueWorker(lifecycle.ConsumingWorker):
    """The worker's parts, wired: engine, stores, bus subscription, health."""

    def __init__(
        self,
        settings: DialogueSettings,
        store: StoreSettings,
        bus: Bus,
        project: Project,
        *,
        hot: HotStore | None = None,
        predictor: Predictor | None = None,
    ) -> None:
        """`hot` replaces Redis (the embedded mode keeps trackers in memory, rebuilt from the
        SQLite archive after a restart); `predictor` a policy ensemble already loaded."""
        if not store.database_url:
            raise ValueError(
                "the dialogue worker needs the SQL archive: set DATABASE_URL "
                "(postgresql+asyncpg://... or sqlite+aiosqlite:///file.db)"
            )
        self.settings = settings
        self.store_settings = store
        self.bus = bus
        self.project = project
        self.database_url = store.database_url
        self.archive = SqlArchive(self.database_url)
        if hot is None and store.backend == "sql":
            hot, self.archive = SqlHotStore(self.database_url), AppendedArchive(self.database_url)
        self.hot: HotStore = hot or RedisHotStore(store.redis_url, store.key_prefix, store.expire_s)
        engine = DialogueEngine(
            project.domain,
            predictor or build_predictor(project, settings.model),
            settings=EngineSettings(
                settings.max_predictions, settings.failure_response, project.endpoints.handoff
            ),
            rng=random.Random(settings.seed),
        )
        self.service = DialogueService(
            engine,
            self.hot,
            self.archive,
            SystemClock(),
            domain_as_dict(project.domain),
            window=settings.window,
        )
        self.health = HealthServer(settings.health_host, settings.health_port)
        self.health.add_check("bus", self.bus_check)
        self.health.add_check("tracker store", self._hot_check)
        self.health.add_check("archive", self._archive_check)

    async def _hot_check(self) -> tuple[bool, str]:
        await self.hot.load_snapshot("__parley_ready__")
        return True, "answers"

    async def _archive_check(self) -> tuple[bool, str]:
        await self.archive.last_seq("__parley_ready__")
        return True, "answers"

    async def start(self) -> None:
        await self.health.start()
        await migrate(self.database_url)
        await self.hot.start()
        await self.archive.start()
        self.bus.subscribe(
            Subscription(
                Topic.DIALOGUE,
                GROUP,
                self.service.handle,
                DialogueInput,
                concurrency=self.settings.concurrency,
            )
        )
        await self.bus.start()
        self.consuming = True
        logger.info("dialogue worker consuming %s", Topic.DIALOGUE)

    async def stop(self) -> None:
        self.consuming = False
        await self.bus.stop()
        await self.archive.close()
        await self.hot.close()
        await self.health.stop()


def add_worker_dialogue(workers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = workers.add_parser(
        "dialogue",
        help="consume parley.dialogue: trackers, policies, responses, actions",
    )
    parser.add_argument("--project", type=Path, help="the bot project folder")
    parser.add_argument(
        "--model",
        type=Path,
        help="model archive, or models folder (its newest archive), holding the trained "
        "policies (default: train them from the project at start)",
    )
    parser.add_argument("--health-port", type=int, help="port of /health/live and /health/ready")
    parser.set_defaults(func=run_worker_dialogue)


def run_worker_dialogue(args: argparse.Namespace, bus_settings: BusSettings) -> int:
    overrides = {
        "project": args.project,
        "model": getattr(args, "model", None),
        "health_port": args.health_port,
    }
    settings = DialogueSettings(**{k: v for k, v in overrides.items() if v is not None})
    try:
        project = load_project(settings.project)
        worker = DialogueWorker(settings, StoreSettings(), KafkaBus(bus_settings), project)
    except (ProjectError, ValueError) as exc:
        logger.error("dialogue worker cannot start: %s", exc)
        return 2
    return asyncio.run(_serve(worker))


async def _serve(worker: DialogueWorker) -> int:
    return await lifecycle.serve(worker)
