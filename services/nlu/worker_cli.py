"""`parley worker nlu`: the NLU worker process (composition root: settings, bus, model, health).

Settings are read once from the environment (`PARLEY_NLU_*`, see `NluSettings`); command-line
options override them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.envelopes import UserMessage
from schemas.topics import Topic
from services.common import lifecycle
from services.common.bus import Bus, Subscription
from services.common.clock import SystemClock
from services.common.errors import RetryableError
from services.common.health import HealthServer
from services.common.kafka_bus import KafkaBus
from services.common.settings import BusSettings
from services.nlu.archive import ArchiveError
from services.nlu.loaders import InProcessLoader, TritonLoader
from services.nlu.worker import ModelLoader, NluService

logger = logging.getLogger(__name__)
GROUP = "parley-nlu"


class NluSettings(BaseSettings):
    """The NLU worker's settings. Environment: `PARLEY_NLU_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_NLU_", extra="ignore", frozen=True)

    model: Path = Path("models")
    backend: Literal["onnxruntime", "triton"] = "onnxruntime"
    threads: int = Field(default=1, ge=1)
    triton_grpc_url: str = "127.0.0.1:8001"
    triton_model_name: str = "parley_nlu"
    triton_repository: Path | None = None
    triton_timeout_s: float = Field(default=5.0, gt=0)
    inference_attempts: int = Field(default=3, ge=1)
    reload_interval_s: float = Field(default=5.0, gt=0)
    health_host: str = "0.0.0.0"
    health_port: int = Field(default=8081, ge=0)
    concurrency: int = Field(default=16, ge=1)
    precision: Literal["int8", "fp32"] = "int8"


def add_worker_nlu(workers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = workers.add_parser(
        "nlu",
        help="consume parley.nlu, parse with the NLU model, publish UserUttered to parley.dialogue",
    )
    parser.add_argument("--model", type=Path, help="archive or models folder (newest is used)")
    parser.add_argument("--backend", choices=("onnxruntime", "triton"))
    parser.add_argument("--triton-url", help="Triton gRPC address, host:port")
    parser.add_argument("--triton-repository", type=Path, help="Triton's model repository")
    parser.add_argument("--health-port", type=int, help="port of /health/live and /health/ready")
    parser.set_defaults(func=run_worker_nlu)


def build_loader(settings: NluSettings) -> ModelLoader:
    if settings.backend == "triton":
        return TritonLoader(
            settings.triton_grpc_url,
            settings.triton_model_name,
            repository=settings.triton_repository,
            timeout_s=settings.triton_timeout_s,
            precision=settings.precision,
        )
    return InProcessLoader(settings.threads, precision=settings.precision)


def run_worker_nlu(args: argparse.Namespace, bus_settings: BusSettings) -> int:
    overrides = {
        "model": args.model,
        "backend": args.backend,
        "triton_grpc_url": args.triton_url,
        "triton_repository": args.triton_repository,
        "health_port": args.health_port,
    }
    settings = NluSettings(**{k: v for k, v in overrides.items() if v is not None})
    try:
        return asyncio.run(serve(settings, KafkaBus(bus_settings)))
    except (ArchiveError, RetryableError) as exc:
        logger.error("NLU worker cannot start: %s", exc)
        return 2


class NluWorker(lifecycle.ConsumingWorker):
    """The NLU worker's parts, wired: model service, bus subscription, health endpoints."""

    def __init__(self, settings: NluSettings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.service = NluService(
            settings.model,
            build_loader(settings),
            SystemClock(),
            attempts=settings.inference_attempts,
        )
        self.health = HealthServer(settings.health_host, settings.health_port)
        self.health.add_check("bus", self.bus_check)
        self.health.add_check("model", self.service.ready)

    async def start(self) -> None:
        """Serve health, load the model (a clear error if there is none), start consuming."""
        await self.health.start()
        await self.service.reload_if_newer()
        self.bus.subscribe(
            Subscription(
                Topic.NLU,
                GROUP,
                self.service.handle,
                UserMessage,
                concurrency=self.settings.concurrency,
            )
        )
        await self.bus.start()
        self.consuming = True
        logger.info("NLU worker consuming %s (%s backend)", Topic.NLU, self.settings.backend)

    async def run(self, stop: asyncio.Event) -> None:
        """Watch for new models until `stop` is set, then stop."""
        try:
            await self.service.watch(self.settings.reload_interval_s, stop)
        finally:
            await self.stop()

    async def stop(self) -> None:
        self.consuming = False
        await self.bus.stop()
        await self.health.stop()


async def serve(settings: NluSettings, bus: Bus) -> int:
    """Run until SIGTERM/SIGINT."""
    return await lifecycle.serve(NluWorker(settings, bus))
