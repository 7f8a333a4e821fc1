"""Everything the gateway's routes use, wired once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from schemas.project.domain import Domain
from services.common.clock import Clock
from services.gateway.auth import AgentDirectory, Authenticator, Principal, Role
from services.gateway.ports import Check, Parser, Publish, TrackerReader
from services.gateway.replies import ReplyHub
from services.gateway.settings import GatewaySettings


@dataclass
class GatewayDeps:
    settings: GatewaySettings
    clock: Clock
    publish: Publish
    hub: ReplyHub
    trackers: TrackerReader
    auth: Authenticator
    domain: Domain
    parser: Parser | None = None
    agents: AgentDirectory = field(default_factory=AgentDirectory)
    checks: dict[str, Check] = field(default_factory=dict)
    archive: Any = None  # services.dialogue.store.ports.Archive, for the console
    mode: str = "kafka"

    def principal(self, request: Request) -> Principal | None:
        return self.auth.authenticate(
            request.headers.get("authorization"), request.query_params.get("token")
        )

    def require(
        self, request: Request, *roles: Role, conversation_id: str | None = None
    ) -> Principal:
        return self.auth.require(self.principal(request), *roles, conversation_id=conversation_id)

    async def readiness(self) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for name, check in self.checks.items():
            try:
                ok, detail = await check()
            except Exception as exc:  # noqa: BLE001 - a failing check is "not ready"
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            results[name] = {"ok": ok, "detail": detail}
        return {"ready": all(r["ok"] for r in results.values()), "checks": results}
