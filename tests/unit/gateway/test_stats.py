"""The console's stats: `GET /console/api/stats` through the `StatsSource` port, and the page."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from schemas.envelopes import Envelope
from schemas.project.domain import Domain
from schemas.topics import Topic
from services.dialogue.store.migrate import migrate
from services.dialogue.store.sql_archive import SqlArchive
from services.gateway.app import create_app
from services.gateway.auth import Authenticator
from services.gateway.deps import GatewayDeps
from services.gateway.replies import ReplyHub
from services.gateway.settings import GatewaySettings
from services.gateway.stats import StatsSource, stats_router
from services.platform.adapters import ArchiveTrackers
from services.platform.analytics_adapter import ArchiveStatsSource
from tests.support.clock import FakeClock
from tests.unit.analytics.seed import DAY1, seed

SECRET = "stats-test-secret-0123456789abcdef"
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


class FakeSource:
    def __init__(self) -> None:
        self.calls: list[tuple[float | None, float | None]] = []

    async def stats(self, since: float | None, until: float | None) -> dict[str, Any]:
        self.calls.append((since, until))
        return {"conversations": 3, "days": []}


async def _publish(topic: Topic, envelope: Envelope) -> None:
    raise AssertionError("nothing is published")


def _app(source: StatsSource | None, archive: Any = None) -> TestClient:
    clock = FakeClock(NOW)
    deps = GatewayDeps(
        settings=GatewaySettings(jwt_secret=SECRET),
        clock=clock,
        publish=_publish,
        hub=ReplyHub(),
        trackers=ArchiveTrackers(archive, {}),
        auth=Authenticator(clock, jwt_secret=SECRET),
        domain=Domain(),
        archive=archive,
    )
    return TestClient(create_app(deps, [stats_router(deps, source)]))


def _auth(role: str, sub: str = "ann") -> dict[str, str]:
    now = int(NOW.timestamp())
    claims = {"sub": sub, "role": role, "iat": now, "exp": now + 600}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def client(source: FakeSource) -> Iterator[TestClient]:
    with _app(source) as client:
        yield client


def test_agents_and_admins_only(client: TestClient, source: FakeSource) -> None:
    assert client.get("/console/api/stats").status_code == 401
    assert client.get("/console/api/stats", headers=_auth("user")).status_code == 403
    for role in ("agent", "admin"):
        response = client.get("/console/api/stats", headers=_auth(role))
        assert response.status_code == 200
        assert response.json() == {"conversations": 3, "days": []}
    assert len(source.calls) == 2


def test_window_parameters(client: TestClient, source: FakeSource) -> None:
    agent = _auth("agent")
    client.get("/console/api/stats", headers=agent)
    client.get("/console/api/stats?since=7d&until=2026-11-25", headers=agent)
    client.get("/console/api/stats?since=all", headers=agent)
    day = 86400
    assert source.calls == [
        (NOW.timestamp() - 30 * day, None),
        (NOW.timestamp() - 7 * day, datetime(2026, 11, 25, tzinfo=UTC).timestamp()),
        (None, None),
    ]
    bad = client.get("/console/api/stats?since=soon", headers=agent)
    assert bad.status_code == 400
    assert "`since` should be an age" in bad.json()["message"]
    reversed_ = client.get("/console/api/stats?since=2026-11-20&until=2026-11-19", headers=agent)
    assert reversed_.status_code == 400


def test_without_a_source_it_is_unavailable() -> None:
    with _app(None) as client:
        response = client.get("/console/api/stats", headers=_auth("admin"))
    assert response.status_code == 503
    assert response.json()["message"] == "analytics need the SQL archive"


def test_page_is_self_contained(client: TestClient) -> None:
    response = client.get("/console/stats")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "/console/api/stats" in page
    assert "<script src" not in page
    assert "<link" not in page
    assert "https://" not in page


def test_real_archive_json_shape(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}"

    async def prepare() -> None:
        await migrate(url)
        async with SqlArchive(url) as writer:
            await seed(writer)

    asyncio.run(prepare())
    archive = SqlArchive(url)
    asyncio.run(archive.start())  # no connection yet: opened in the app's loop
    with _app(ArchiveStatsSource(archive), archive) as client:
        try:
            response = client.get("/console/api/stats?since=2026-11-21", headers=_auth("agent"))
        finally:
            client.portal.call(archive.close)  # type: ignore[union-attr]
    assert response.status_code == 200
    body = response.json()
    assert body["since"] == datetime.fromtimestamp(DAY1, UTC).isoformat()
    assert (body["conversations"], body["turns"]) == (1, 3)
    assert set(body) >= {
        "days",
        "intents",
        "confidence_histogram",
        "fallbacks",
        "fallback_rate",
        "handoffs",
        "handoff_rate",
        "actions",
        "action_failure_rate",
        "reminders",
        "feedback",
        "latency",
    }
    assert body["days"][0]["day"] == "2026-11-21"
    assert body["latency"]["p50"] == pytest.approx(3.0)
    assert body["handoffs"] == {"requested": 1}


def test_unmigrated_archive_is_503(tmp_path: Path) -> None:
    archive = SqlArchive(f"sqlite+aiosqlite:///{tmp_path / 'bare.db'}")
    asyncio.run(archive.start())
    with _app(ArchiveStatsSource(archive), archive) as client:
        try:
            response = client.get("/console/api/stats", headers=_auth("admin"))
        finally:
            client.portal.call(archive.close)  # type: ignore[union-attr]
    assert response.status_code == 503
    assert "parley db upgrade" in response.json()["message"]
