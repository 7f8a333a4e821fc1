"""The console's router: the page and its assets, the JSON API and the websocket, over one
live `Console`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse

from services.common.errors import DependencyUnavailable
from services.gateway.console.api import console_api
from services.gateway.console.live import Console
from services.gateway.console.socket import console_socket
from services.gateway.deps import GatewayDeps
from services.gateway.errors import ApiError

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}


def console_router(deps: GatewayDeps) -> APIRouter:
    """`GET /console`, `/console/api/...` and `/console/ws`; include it in the gateway's app.

    The console reads the open handoffs from the archive when the app starts (or, served
    without a lifespan, on its first request) and follows the hub's events from now on."""
    console = Console(deps.archive, deps.clock)
    # Listening starts now, not in the lifespan, which a server may run without (the gateway
    # worker's uvicorn does): events until the archive is read wait in the console.
    detach = console.attach(deps.hub)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await console.ready()
        except DependencyUnavailable as exc:
            # The channels serve without the archive; the console reads it on first use.
            logger.warning("console: the open handoffs are not loaded yet: %s", exc)
        try:
            yield
        finally:
            detach()
            console.close()

    router = APIRouter(lifespan=lifespan)

    @router.get("/console", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "console.html", media_type="text/html")

    @router.get("/console/static/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise ApiError(404, "NotFound", f"no console asset {name!r}")
        return FileResponse(STATIC / name, media_type=ASSETS[name])

    router.include_router(console_api(deps, console))
    router.include_router(console_socket(deps, console))
    return router
