"""`GET /metrics` on the gateway's FastAPI app: the process's Prometheus metrics (those of
`services.common.metrics`, its bus subscriptions included)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import REGISTRY, CollectorRegistry

from services.common.metrics import exposition


def metrics_router(registry: CollectorRegistry = REGISTRY) -> APIRouter:
    """A router serving `GET /metrics` in Prometheus's text format (not in the OpenAPI)."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = exposition(registry)
        return Response(content=body, media_type=content_type)

    return router
