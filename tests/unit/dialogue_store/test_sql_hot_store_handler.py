"""The dialogue handler on the SQL store alone (SQLite): the same turns, stored and published as
on the in-memory hot store + archive, and what a crash or a second writer does to it."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from schemas.envelopes import ActionRequest, ActionResult
from schemas.project.domain import Domain
from schemas.project.loader import load_project
from schemas.topics import Topic
from services.common.bus import Publication
from services.dialogue.engine import DialogueEngine
from services.dialogue.handlers import DialogueMessage, DialogueService
from services.dialogue.store.memory_store import MemoryHotStore
from services.dialogue.store.migrate import migrate
from services.dialogue.store.ports import Archive, VersionConflict
from services.dialogue.store.sql_archive import SqlArchive, events_table
from services.dialogue.store.sql_hot_store import AppendedArchive, SqlHotStore
from tests.support.clock import FakeClock
from tests.unit.dialogue.test_handlers import DOMAIN, Table, on, said

TABLE = {"greet": "utter_greet", "order": "action_order", "action_order": "utter_greet"}


@pytest.fixture
def domain(tmp_path: Path) -> Domain:
    (tmp_path / "domain.yml").write_text(DOMAIN)
    (tmp_path / "config.yml").write_text("language: en\n")
    return load_project(tmp_path).domain


def service_on(domain: Domain, hot: Any, archive: Archive) -> DialogueService:
    engine = DialogueEngine(domain, Table(TABLE), rng=random.Random(0))
    return DialogueService(engine, hot, archive, FakeClock(), {"intents": ["greet", "order"]})


@pytest.fixture
async def sql_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sql-only.db'}"
    await migrate(url)
    return url


@pytest.fixture
async def sql(sql_url: str) -> AsyncIterator[SqlHotStore]:
    async with SqlHotStore(sql_url) as store:
        yield store


@pytest.fixture
async def appended(sql_url: str) -> AsyncIterator[AppendedArchive]:
    async with AppendedArchive(sql_url) as archive:
        yield archive


async def event_rows(store: SqlHotStore) -> int:
    async with store.engine.connect() as connection:
        count = select(func.count()).select_from(events_table)
        return int((await connection.execute(count)).scalar_one())


def result_of(request: ActionRequest) -> ActionResult:
    return ActionResult(
        conversation_id="alice",
        message_id="r1",
        sent_at=FakeClock().now(),
        request_id=request.message_id,
        action_name="action_order",
        status="success",
        responses=[{"text": "Ordered."}],
    )


async def conversation(service: DialogueService) -> list[list[Publication]]:
    """Greet, order (a custom action and its result), a redelivery of both inputs."""
    out = [await service.handle(said("greet", "m1")), await service.handle(said("order", "m2"))]
    (request,) = on(Topic.ACTIONS, out[-1])
    inputs: list[DialogueMessage] = [result_of(request), said("order", "m2"), result_of(request)]
    out += [await service.handle(message) for message in inputs]
    return out


async def test_a_conversation_is_the_same_on_sql_alone(
    domain: Domain,
    archive: SqlArchive,
    sql: SqlHotStore,
    appended: AppendedArchive,
) -> None:
    memory = MemoryHotStore()
    expected = await conversation(service_on(domain, memory, archive))
    got = await conversation(service_on(domain, sql, appended))

    assert got == expected
    assert [len(on(Topic.OUTBOUND, p)) for p in got] == [1, 0, 1, 0, 1]
    stored = await sql.load("alice")
    assert stored is not None
    assert stored.events == memory.data["alice"].events
    assert stored.snapshot == memory.data["alice"].snapshot
    assert await appended.read("alice") == stored.events
    assert await event_rows(sql) == stored.seq  # each event stored once


class CrashingArchive(AppendedArchive):
    """Dies in the handler's archive write, the step after the append."""

    crashes = 1

    async def write(self, conversation_id: str, first_seq: int, events: Sequence[Any]) -> None:
        if self.crashes:
            self.crashes -= 1
            raise OSError("the worker died after the append")
        await super().write(conversation_id, first_seq, events)


async def test_a_crash_after_the_append_loses_nothing_and_duplicates_nothing(
    domain: Domain, sql_url: str, sql: SqlHotStore
) -> None:
    async with CrashingArchive(sql_url) as crashing:
        service = service_on(domain, sql, crashing)
        with pytest.raises(OSError, match="died after the append"):
            await service.handle(said("greet", "m1"))
        assert await crashing.last_seq("alice") == 6  # archived with the append
        # the input is redelivered: seen before, published again, stored once
        again = await service.handle(said("greet", "m1"))
    assert [m.text for m in on(Topic.OUTBOUND, again)[0].messages] == ["Hello!"]
    assert await event_rows(sql) == 7
    assert await sql.load_snapshot("alice") is not None


async def test_a_second_writer_conflicts_and_the_retry_applies_the_turn(
    domain: Domain, sql: SqlHotStore, appended: AppendedArchive
) -> None:
    first, second = service_on(domain, sql, appended), service_on(domain, sql, appended)
    await first.handle(said("greet", "m1"))
    original = sql.append

    async def racing(cid: str, expected: int, events: Any, snapshot: Any) -> int:
        sql.append = original  # type: ignore[method-assign]
        await second.handle(said("greet", "m2"))  # lands between this turn's load and append
        return await original(cid, expected, events, snapshot)

    sql.append = racing  # type: ignore[method-assign,assignment]
    with pytest.raises(VersionConflict) as raised:
        await first.handle(said("greet", "m3"))
    assert (raised.value.expected_seq, raised.value.actual_seq) == (7, 11)
    await first.handle(said("greet", "m3"))  # the runtime's retry: reload, apply again
    stored = await sql.load("alice")
    assert stored is not None
    assert stored.seq == 15
    assert list(stored.snapshot["inputs"]) == ["m1", "m2", "m3"]
    assert await event_rows(sql) == 15


async def test_a_lost_snapshot_is_rebuilt_from_the_events(
    domain: Domain, sql: SqlHotStore, appended: AppendedArchive
) -> None:
    service = service_on(domain, sql, appended)
    await service.handle(said("greet", "m1"))
    await sql.delete("alice")
    pubs = await service.handle(said("greet", "m2"))
    assert on(Topic.OUTBOUND, pubs)[0].messages[0].text == "Hello!"
    stored = await sql.load("alice")
    assert stored is not None
    assert stored.seq == 11
    assert [e["event"] for e in stored.events].count("session_started") == 1
