"""The gateway's ASGI application: channels, HTTP API, console (when given), errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.version import VERSION
from services.gateway import errors
from services.gateway.api import api_router
from services.gateway.channels import channels_router
from services.gateway.deps import GatewayDeps
from services.gateway.metrics import metrics_router

OPENAPI_FILE = Path(__file__).parent / "openapi.json"
DESCRIPTION = """\
Parley's gateway: Rasa's REST channel and the compatible subset of Rasa's HTTP API,
a websocket channel, and the human-agent handoff console.

Auth: `Authorization: Bearer <token>` with the operator's static token (admin) or an HS256
JWT whose `role` claim is `admin`, `agent` or `user` (a user may only access the
conversation named by `sub`). Errors use Rasa's body:
`{version, status: "failure", message, reason, details, help, code}`.
"""


class JsonBodies:
    """Read POST bodies as JSON whatever their `Content-Type`, as Rasa (sanic) does: clients
    that post JSON without the header (`curl -d`) keep working."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT"):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            kept = [v for k, v in scope["headers"] if k == b"content-type"]
            if not kept or not kept[0].startswith((b"application/json", b"multipart/")):
                scope = dict(scope, headers=[*headers, (b"content-type", b"application/json")])
        await self.app(scope, receive, send)


def create_app(deps: GatewayDeps, extra: Sequence[APIRouter] = ()) -> FastAPI:
    app = FastAPI(
        title="Parley gateway",
        version=VERSION,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    errors.install(app)
    if deps.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=deps.settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(JsonBodies)
    app.include_router(channels_router(deps))
    app.include_router(api_router(deps))
    app.include_router(metrics_router())
    for router in extra:
        app.include_router(router)
    app.state.deps = deps
    return app


def openapi_document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def render_openapi(app: FastAPI) -> str:
    """The committed document (`services/gateway/openapi.json`), stable across runs."""
    return json.dumps(openapi_document(app), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or `--check`) the committed OpenAPI document of the gateway."""
    import argparse

    from services.gateway.openapi_app import documented_app

    parser = argparse.ArgumentParser(prog="python -m services.gateway.app")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    rendered = render_openapi(documented_app())
    if args.check:
        current = OPENAPI_FILE.read_text(encoding="utf-8") if OPENAPI_FILE.exists() else ""
        if current != rendered:
            print(f"{OPENAPI_FILE} is stale: run `make schemas`")
            return 1
        return 0
    OPENAPI_FILE.write_text(rendered, encoding="utf-8")
    print(f"wrote {OPENAPI_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
