"""The gateway app with every router and no live parts: what the OpenAPI document shows."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from schemas.envelopes import Envelope
from schemas.project.domain import Domain
from schemas.topics import Topic
from services.common.clock import SystemClock
from services.gateway.app import create_app
from services.gateway.auth import Authenticator
from services.gateway.deps import GatewayDeps
from services.gateway.ports import IncludeEvents
from services.gateway.replies import ReplyHub
from services.gateway.settings import GatewaySettings
from services.gateway.stats import stats_router
from services.gateway.worker import console_routers


class _Nothing:
    async def tracker(
        self, conversation_id: str, include_events: IncludeEvents = "AFTER_RESTART"
    ) -> dict[str, Any]:
        raise NotImplementedError


async def _no_publish(topic: Topic, message: Envelope) -> None:
    raise NotImplementedError


def documented_app() -> FastAPI:
    clock = SystemClock()
    deps = GatewayDeps(
        settings=GatewaySettings(),
        clock=clock,
        publish=_no_publish,
        hub=ReplyHub(),
        trackers=_Nothing(),
        auth=Authenticator(clock),
        domain=Domain(),
    )
    return create_app(deps, [*console_routers(deps), stats_router(deps)])
