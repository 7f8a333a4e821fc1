"""The tracker store's settings, read once from the environment at start-up."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StoreSettings(BaseSettings):
    """Where the tracker store lives. Environment: `PARLEY_STORE_*`, plus `REDIS_URL` and
    `DATABASE_URL` (as `scripts/services.sh env` exports them)."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_STORE_", extra="ignore", frozen=True)

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "PARLEY_STORE_REDIS_URL"),
    )
    # No default: migrating a database nobody named is worse than a clear error.
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "PARLEY_STORE_DATABASE_URL"),
    )
    # `redis`: Redis holds the live conversations, the SQL archive every event (written after
    # each append, rebuilt from when Redis lost one). `sql`: the database alone, events and
    # snapshot in one transaction (docs/tracker-stores.md compares them).
    backend: Literal["redis", "sql"] = "redis"
    key_prefix: str = "parley"
    expire_s: int | None = Field(default=None, gt=0)
