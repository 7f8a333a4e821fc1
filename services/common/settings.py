"""Bus settings, read once from the environment at start-up."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import Topic


class BusSettings(BaseSettings):
    """How services reach each other. Environment: `PARLEY_*`, plus `KAFKA_BOOTSTRAP_SERVERS`."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_", extra="ignore", frozen=True)

    transport: Literal["kafka", "memory"] = "kafka"
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "PARLEY_KAFKA_BOOTSTRAP_SERVERS"),
    )
    topic_prefix: str = "parley"
    partitions: int = Field(default=4, ge=1)
    topic_partitions: dict[Topic, int] = Field(default_factory=dict)
    replication_factor: int = Field(default=1, ge=1)
    client_id: str = "parley"
    # Chat traffic wants latency, not batching: small linger and fetch wait.
    linger_ms: int = Field(default=0, ge=0)
    fetch_max_wait_ms: int = Field(default=5, ge=0)
    session_timeout_ms: int = Field(default=10_000, ge=1)
    heartbeat_interval_ms: int = Field(default=1_000, ge=1)
    graceful_timeout_s: float = Field(default=15.0, gt=0)

    def physical(self, topic: Topic) -> str:
        """The Kafka topic name of a logical topic."""
        return topic.physical(self.topic_prefix)

    def partitions_of(self, topic: Topic) -> int:
        """How many partitions a topic is created with."""
        return self.topic_partitions.get(topic, self.partitions)
