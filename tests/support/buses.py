"""Building a bus of either transport for tests."""

from __future__ import annotations

import os
from typing import Any, Literal

from services.common.bus import Bus
from services.common.clock import Clock
from services.common.kafka_bus import KafkaBus
from services.common.memory_bus import MemoryBroker, MemoryBus
from services.common.settings import BusSettings


def kafka_bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")


def bus_settings(
    transport: Literal["kafka", "memory"], prefix: str, **overrides: Any
) -> BusSettings:
    """Settings for a test: its own topic prefix, so tests never see each other's messages."""
    return BusSettings(
        transport=transport,
        kafka_bootstrap_servers=kafka_bootstrap(),
        topic_prefix=prefix,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
        **overrides,
    )


def new_bus(settings: BusSettings, *, clock: Clock, shared: dict[str, Any]) -> Bus:
    """A bus; memory buses built with the same `shared` dict share one broker."""
    if settings.transport == "kafka":
        return KafkaBus(settings, clock=clock)
    broker = shared.setdefault("broker", MemoryBroker(settings))
    return MemoryBus(broker, clock=clock)
