"""Who is calling: a static admin token, HS256 JWTs with roles, and the console's agents.

Roles: `admin` (everything), `agent` (the console, every conversation), `user` (only the
conversation named by the token's `sub`). Tokens are read from the `Authorization: Bearer`
header; a `?token=` query parameter only when the operator allows it (Rasa's default), since
query strings end up in access logs. Tokens and passwords are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt
import yaml

from services.common.clock import Clock

Role = Literal["admin", "agent", "user"]
ROLES: tuple[Role, ...] = ("admin", "agent", "user")
PBKDF2_ITERATIONS = 200_000
LEEWAY_S = 5


class AuthError(Exception):
    """Missing or bad credentials (401) or a role that may not do this (403)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    subject: str
    role: Role
    name: str | None = None

    def may_access(self, conversation_id: str) -> bool:
        return self.role in ("admin", "agent") or self.subject == conversation_id


ANONYMOUS_ADMIN = Principal("anonymous", "admin")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`pbkdf2_sha256$<iterations>$<salt>$<hash>` (base64), for the agents file."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ITERATIONS)
    return "$".join(
        (
            "pbkdf2_sha256",
            str(PBKDF2_ITERATIONS),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        )
    )


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, expected = stored.split("$")
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256":
        return False
    digest = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    return hmac.compare_digest(digest, base64.b64decode(expected))


@dataclass(frozen=True)
class Agent:
    username: str
    password_hash: str
    role: Role = "agent"
    name: str | None = None


class AgentDirectory:
    """The console's accounts (username → password hash, role, display name)."""

    def __init__(self, agents: Mapping[str, Agent] | None = None) -> None:
        self.agents = dict(agents or {})

    @classmethod
    def from_file(cls, path: Path) -> AgentDirectory:
        """Read `{username: {password_hash, role?, name?}}`; errors name the file and entry."""
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of username to account")
        agents: dict[str, Agent] = {}
        for username, entry in data.items():
            if not isinstance(entry, dict) or "password_hash" not in entry:
                raise ValueError(
                    f"{path}: agent {username!r} needs a `password_hash` "
                    "(make one with `parley agents hash`)"
                )
            role = entry.get("role", "agent")
            if role not in ("admin", "agent"):
                raise ValueError(f"{path}: agent {username!r} has role {role!r}: admin or agent")
            agents[str(username)] = Agent(
                str(username), entry["password_hash"], role, entry.get("name")
            )
        return cls(agents)

    def add(
        self, username: str, password: str, role: Role = "agent", name: str | None = None
    ) -> None:
        self.agents[username] = Agent(username, hash_password(password), role, name)

    def verify(self, username: str, password: str) -> Agent | None:
        agent = self.agents.get(username)
        if agent is None or not check_password(password, agent.password_hash):
            return None
        return agent


class Authenticator:
    """Turns a request's credentials into a `Principal`."""

    def __init__(
        self,
        clock: Clock,
        *,
        auth_token: str | None = None,
        jwt_secret: str | None = None,
        jwt_ttl_s: int = 8 * 3600,
        allow_query_token: bool = False,
    ) -> None:
        self.clock = clock
        self._token = auth_token
        # Agents log in even when the operator set no secret: a per-process one signs them.
        self._secret = jwt_secret or secrets.token_urlsafe(32)
        self._ttl = jwt_ttl_s
        self.allow_query_token = allow_query_token
        self.enabled = bool(auth_token or jwt_secret)

    def issue(self, subject: str, role: Role, name: str | None = None) -> str:
        now = int(self.clock.now().timestamp())
        claims: dict[str, Any] = {"sub": subject, "role": role, "iat": now, "exp": now + self._ttl}
        if name:
            claims["name"] = name
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def authenticate(self, header: str | None, query_token: str | None = None) -> Principal | None:
        """The caller, or None when no credentials came. Raises `AuthError` on bad ones."""
        token = None
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthError(401, "NotAuthenticated", "expected 'Authorization: Bearer <token>'")
            token = value.strip()
        elif query_token and self.allow_query_token:
            token = query_token
        if token is None:
            return None
        if self._token is not None and hmac.compare_digest(token, self._token):
            return Principal("token", "admin")
        return self._decode(token)

    def _decode(self, token: str) -> Principal:
        try:
            # expiry is checked below against the injected clock, not the system's
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                options={"require": ["sub", "exp"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError as exc:
            raise AuthError(401, "NotAuthenticated", f"invalid token: {exc}") from exc
        exp = claims["exp"]
        if not isinstance(exp, int | float) or exp + LEEWAY_S < self.clock.now().timestamp():
            raise AuthError(401, "NotAuthenticated", "the token has expired")
        role = claims.get("role", "user")
        if role not in ROLES:
            raise AuthError(403, "NotAuthorized", f"unknown role {role!r}")
        return Principal(str(claims["sub"]), role, claims.get("name"))

    def require(
        self,
        principal: Principal | None,
        *roles: Role,
        conversation_id: str | None = None,
    ) -> Principal:
        """The caller if they may go on; auth disabled → anonymous admin."""
        if principal is None:
            if not self.enabled and "admin" in roles:
                return ANONYMOUS_ADMIN
            raise AuthError(401, "NotAuthenticated", "user is not authenticated")
        if principal.role not in roles:
            raise AuthError(403, "NotAuthorized", f"role {principal.role!r} may not do this")
        if conversation_id is not None and not principal.may_access(conversation_id):
            raise AuthError(
                403, "NotAuthorized", "a user token may only access its own conversation"
            )
        return principal
