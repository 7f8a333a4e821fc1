"""The gateway's settings, read once from the environment at start-up."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    """Channels, HTTP API and console. Environment: `PARLEY_GATEWAY_<NAME>`.

    Auth: `auth_token` is a static admin bearer token (Rasa's `--auth-token`, but only in the
    `Authorization` header unless `allow_query_token`); `jwt_secret` accepts HS256 JWTs whose
    `role` claim is `admin`, `agent` or `user` (a user may only touch the conversation named
    by `sub`) and signs the console's agent logins. With neither set the HTTP API is open
    (the embedded demo on loopback); the worker logs a warning.
    """

    model_config = SettingsConfigDict(env_prefix="PARLEY_GATEWAY_", extra="ignore", frozen=True)

    project: Path = Path(".")
    host: str = "0.0.0.0"
    port: int = Field(default=5005, ge=0)
    # How long a REST request waits for its turn to complete before answering what it has.
    reply_timeout_s: float = Field(default=10.0, gt=0)
    auth_token: SecretStr | None = None
    jwt_secret: SecretStr | None = None
    jwt_ttl_s: int = Field(default=8 * 3600, gt=0)
    allow_query_token: bool = False
    # Channels are public like Rasa's; with this set they need a user (or admin) token too.
    channel_auth: bool = False
    # Agent accounts of the console: a YAML file of {username: {password_hash, role, name}}.
    agents_file: Path | None = None
    # Each replica reads every outbound message (its own consumer group) and answers the
    # connections it holds; the replica id names that group.
    replica_id: str = Field(default_factory=socket.gethostname)
    cors_origins: list[str] = Field(default_factory=list)
    max_message_chars: int = Field(default=10_000, ge=1)
