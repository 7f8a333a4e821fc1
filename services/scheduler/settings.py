"""The scheduler worker's settings, read once from the environment at start-up."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SchedulerSettings(BaseSettings):
    """The scheduler's settings. Environment: `PARLEY_SCHEDULER_<NAME>`.

    `database_url` also reads `DATABASE_URL`; an async URL (`postgresql+asyncpg://`,
    `sqlite+aiosqlite://`) is turned into its synchronous twin for APScheduler's job store.
    """

    model_config = SettingsConfigDict(
        env_prefix="PARLEY_SCHEDULER_", extra="ignore", frozen=True, populate_by_name=True
    )

    database_url: str = Field(
        default="sqlite:///parley-scheduler.db",
        validation_alias=AliasChoices("PARLEY_SCHEDULER_DATABASE_URL", "DATABASE_URL"),
    )
    table_prefix: str = Field(default="parley_scheduler", pattern=r"^[a-z_][a-z0-9_]{0,40}$")
    # How late a job may still fire (after downtime, say); later ones are reported as missed.
    misfire_grace_s: float = Field(default=3600.0, ge=0)
    # How often a replica looks for due jobs that another replica added, and for stale claims.
    wakeup_interval_s: float = Field(default=1.0, gt=0)
    # A claim not published within this long is taken over by another replica.
    claim_lease_s: float = Field(default=30.0, gt=0)
    claim_batch: int = Field(default=500, ge=1)
    # Published rows of the fired ledger older than this are deleted (every `prune_interval_s`).
    ledger_retention_s: float = Field(default=7 * 86400.0, gt=0)
    prune_interval_s: float = Field(default=3600.0, gt=0)
    replica_id: str | None = None
    handoff_queue_intent: str = "EXTERNAL_handoff_queue_timeout"
    handoff_agent_silence_intent: str = "EXTERNAL_handoff_agent_silent"
    health_host: str = "0.0.0.0"
    health_port: int = Field(default=8084, ge=0)
    concurrency: int = Field(default=4, ge=1)

    def handoff_intents(self) -> dict[str, str]:
        """The intent each handoff timer triggers when due."""
        return {
            "queue": self.handoff_queue_intent,
            "agent_silence": self.handoff_agent_silence_intent,
        }
