"""The console's analytics: `GET /console/api/stats` (JSON) and `GET /console/stats` (charts).

The gateway does not read the archive's tables itself: the numbers come through `StatsSource`,
a port the composition root fills with the dialogue analytics (services/platform/
analytics_adapter.py). The JSON is `parley stats --json`'s (docs/analytics.md).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from services.gateway.deps import GatewayDeps
from services.gateway.errors import ApiError

__all__ = ["DEFAULT_SINCE", "StatsSource", "parse_since", "stats_router"]

STATIC = Path(__file__).parent / "static"
DEFAULT_SINCE = "30d"
_AGE = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


class StatsSource(Protocol):
    """The archive's analytics for events with `since <= timestamp < until`."""

    async def stats(self, since: float | None, until: float | None) -> dict[str, Any]: ...


def parse_since(value: str, now: datetime) -> float:
    """`7d` / `24h` / `30m` before `now`, an ISO date (UTC midnight) or date-time (UTC unless
    it says otherwise), as a Unix timestamp; ValueError otherwise."""
    value = value.strip()
    age = _AGE.match(value)
    if age:
        return (now - timedelta(**{_UNITS[age.group(2)]: int(age.group(1))})).timestamp()
    if len(value) == 10:
        day = date.fromisoformat(value)
        return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _when(name: str, value: str | None, now: datetime) -> float | None:
    if not value or value == "all":
        return None
    try:
        return parse_since(value, now)
    except ValueError:
        raise ApiError(
            400,
            "BadRequest",
            f"`{name}` should be an age (7d, 24h, 30m), a date (2026-11-01), a date-time "
            f"or `all`, not {value!r}",
        ) from None


def stats_router(deps: GatewayDeps, source: StatsSource | None = None) -> APIRouter:
    """The stats page and its JSON, for agents and admins; without a `source` the JSON
    answers 503 (the gateway runs without the SQL archive)."""
    router = APIRouter()

    @router.get("/console/api/stats", tags=["console"])
    async def stats(
        request: Request, since: str = DEFAULT_SINCE, until: str | None = None
    ) -> dict[str, Any]:
        """Conversations, turns, intents, fallbacks, handoffs, action failures, reminders,
        feedback and latency per UTC day; `since` defaults to the last 30 days."""
        deps.require(request, "agent", "admin")
        now = deps.clock.now()
        start, end = _when("since", since, now), _when("until", until, now)
        if start is not None and end is not None and end <= start:
            raise ApiError(400, "BadRequest", "`until` must be later than `since`")
        if source is None:
            raise ApiError(503, "ServiceUnavailable", "analytics need the SQL archive")
        return await source.stats(start, end)

    @router.get("/console/stats", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "stats.html", media_type="text/html")

    return router
