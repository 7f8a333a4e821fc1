"""The SQL tracker store alone (`PARLEY_STORE_BACKEND=sql`) on the real PostgreSQL from
`make services-up`: a conversation through the handler, racing writers, recovery.

Each test gets a database of its own (`parley_test_<hex>`, dropped afterwards); PostgreSQL not
answering is a failure that says to run `make services-up`, never a skip.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from schemas.project.loader import load_project
from schemas.topics import Topic
from services.dialogue.engine import DialogueEngine
from services.dialogue.handlers import DialogueService
from services.dialogue.store import StoredTracker, VersionConflict
from services.dialogue.store.migrate import migrate
from services.dialogue.store.settings import StoreSettings
from services.dialogue.store.sql_archive import events_table
from services.dialogue.store.sql_hot_store import AppendedArchive, SqlHotStore
from services.dialogue.worker_cli import DialogueSettings, DialogueWorker
from tests.integration.test_tracker_store import pg_url as pg_url  # a fixture
from tests.support.clock import FakeClock
from tests.unit.dialogue.test_handlers import DOMAIN, Table, on, said
from tests.unit.dialogue_store.fakes import count_snapshot, turn

pytestmark = pytest.mark.integration
T0 = 1_700_000_000.0


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[SqlHotStore]:
    await migrate(pg_url)
    async with SqlHotStore(pg_url) as sql:
        yield sql


async def event_rows(store: SqlHotStore) -> int:
    async with store.engine.connect() as connection:
        count = select(func.count()).select_from(events_table)
        return int((await connection.execute(count)).scalar_one())


async def test_a_conversation_through_the_handler(
    pg_url: str,
    store: SqlHotStore,
    tmp_path: Path,
) -> None:
    (tmp_path / "domain.yml").write_text(DOMAIN)
    (tmp_path / "config.yml").write_text("language: en\n")
    domain = load_project(tmp_path).domain
    engine = DialogueEngine(domain, Table({"greet": "utter_greet"}), rng=random.Random(0))
    async with AppendedArchive(pg_url) as archive:
        service = DialogueService(engine, store, archive, FakeClock(), {})
        first = await service.handle(said("greet", "m1"))
        await service.handle(said("greet", "m2"))
        again = await service.handle(said("greet", "m1"))  # redelivered
        assert on(Topic.OUTBOUND, again) == on(Topic.OUTBOUND, first)
        stored = await store.load("alice")
        assert stored is not None
        assert stored.seq == 11
        assert await archive.read("alice") == stored.events
    assert await event_rows(store) == 11


async def test_racing_appends_at_one_seq_let_exactly_one_win(store: SqlHotStore) -> None:
    await store.append("alice", 0, turn(0, T0), {"n": 0})
    results = await asyncio.gather(
        *(store.append("alice", 4, turn(n, T0 + n), {"n": n}) for n in range(1, 9)),
        return_exceptions=True,
    )
    won = [r for r in results if r == 8]
    lost = [r for r in results if isinstance(r, VersionConflict)]
    assert (len(won), len(lost)) == (1, 7)
    assert {c.actual_seq for c in lost} == {8}
    stored = await store.load("alice")
    assert stored is not None
    winner = stored.snapshot["n"]
    assert stored.events == turn(0, T0) + turn(winner, T0 + winner)
    assert await event_rows(store) == 8


async def test_racing_new_conversations_let_exactly_one_win(store: SqlHotStore) -> None:
    results = await asyncio.gather(
        *(store.append("bob", 0, turn(n, T0 + n), {"n": n}) for n in range(4)),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["VersionConflict"] * 3 + ["int"]
    assert await event_rows(store) == 4


async def test_a_restarted_store_serves_everything_it_acknowledged(
    pg_url: str,
    store: SqlHotStore,
) -> None:
    history = turn(0, T0) + turn(1, T0 + 1)
    await store.append("alice", 0, history[:4], {})
    await store.append("alice", 4, history[4:], count_snapshot(history))
    await store.close()  # the worker goes away; PostgreSQL keeps what was committed

    async with SqlHotStore(pg_url) as reopened:
        assert await reopened.load("alice") == StoredTracker(
            "alice", 8, count_snapshot(history), history
        )
        assert await reopened.append("alice", 8, turn(2, T0 + 2), {}) == 12


async def test_the_worker_composes_the_sql_store_from_the_setting(
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "domain.yml").write_text(DOMAIN)
    (tmp_path / "config.yml").write_text("language: en\n")
    monkeypatch.setenv("PARLEY_STORE_BACKEND", "sql")
    monkeypatch.setenv("DATABASE_URL", pg_url)
    worker = DialogueWorker(
        DialogueSettings(project=tmp_path),
        StoreSettings(),
        bus=None,  # type: ignore[arg-type]  # not started here
        project=load_project(tmp_path),
        predictor=Table({}),
    )
    assert isinstance(worker.hot, SqlHotStore)
    assert isinstance(worker.archive, AppendedArchive)
    await migrate(pg_url)
    await worker.hot.start()
    await worker.archive.start()
    try:
        assert await worker._hot_check() == (True, "answers")
        assert await worker._archive_check() == (True, "answers")
    finally:
        await worker.archive.close()
        await worker.hot.close()
