"""The SQL hot store on SQLite: its events are the archive's rows, an append is one transaction,
and the archive's write after it only checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection

from services.common.errors import DependencyUnavailable
from services.dialogue.store import StoredTracker, VersionConflict, load_or_rebuild
from services.dialogue.store.migrate import migrate
from services.dialogue.store.ports import InvalidEvent
from services.dialogue.store.sql_archive import SqlArchive, events_table, snapshots_table
from services.dialogue.store.sql_hot_store import AppendedArchive, SqlHotStore
from tests.unit.dialogue_store.fakes import count_snapshot, turn

T0 = 1_700_000_000.0


@pytest.fixture
async def sql(sqlite_url: str) -> AsyncIterator[SqlHotStore]:
    await migrate(sqlite_url)
    async with SqlHotStore(sqlite_url) as store:
        yield store


@pytest.fixture
async def appended(sqlite_url: str, sql: SqlHotStore) -> AsyncIterator[AppendedArchive]:
    async with AppendedArchive(sqlite_url) as archive:
        yield archive


async def rows(store: SqlHotStore, table: Any = events_table) -> int:
    async with store.engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def test_the_events_are_the_archives_rows(
    sql: SqlHotStore, archive: SqlArchive, appended: AppendedArchive
) -> None:
    history = turn(0, T0) + turn(1, T0 + 1)
    await sql.append("alice", 0, history[:4], {})
    await sql.append("alice", 4, history[4:], count_snapshot(history))

    assert await archive.read("alice") == history
    assert await archive.last_seq("alice") == 7
    (summary,) = await archive.conversations()
    assert (summary.sender_id, summary.events, summary.latest_intent) == ("alice", 8, "greet")
    # the handler's write after the append finds them there: nothing more is stored
    await appended.write("alice", 4, history[4:])
    assert await rows(sql) == 8


async def test_the_appended_archive_writes_what_is_missing(
    sql: SqlHotStore, appended: AppendedArchive
) -> None:
    await appended.write("alice", 0, turn(0, T0))
    await appended.write("alice", 0, turn(0, T0))  # already there: a no-op
    await appended.write("alice", 4, [])
    assert await appended.read("alice") == turn(0, T0)
    assert await rows(sql) == 4


async def test_a_failure_inside_the_append_stores_nothing(sql: SqlHotStore) -> None:
    first = turn(0, T0)
    await sql.append("alice", 0, first, {"n": 1})

    def crash(connection: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO events"):
            raise OSError("the worker died between the snapshot and the events")

    event.listen(sql.engine.sync_engine, "before_cursor_execute", crash)
    try:
        with pytest.raises(DependencyUnavailable, match="died between"):
            await sql.append("alice", 4, turn(1, T0 + 1), {"n": 2})
    finally:
        event.remove(sql.engine.sync_engine, "before_cursor_execute", crash)
    # the snapshot's UPDATE was rolled back with the failed insert
    assert await sql.load("alice") == StoredTracker("alice", 4, {"n": 1}, first)
    assert await sql.append("alice", 4, turn(1, T0 + 1), {"n": 2}) == 8


async def test_an_invalid_event_is_refused_before_anything_is_stored(sql: SqlHotStore) -> None:
    with pytest.raises(InvalidEvent):
        await sql.append("alice", 0, [{"no": "name"}], {})
    with pytest.raises(InvalidEvent, match="sender_id longer"):
        await sql.append("x" * 300, 0, turn(0, T0), {})
    assert await sql.load("alice") is None
    assert await rows(sql, snapshots_table) == 0


async def test_events_archived_by_another_writer_make_the_append_conflict_then_rebuild(
    sql: SqlHotStore, archive: SqlArchive
) -> None:
    history = turn(0, T0) + turn(1, T0 + 1)
    await sql.append("alice", 0, history[:4], count_snapshot(history[:4]))
    await archive.write("alice", 4, history[4:])  # e.g. a worker still on the Redis backend

    with pytest.raises(VersionConflict) as raised:
        await sql.append("alice", 4, turn(7, T0 + 7), {})
    assert raised.value.actual_seq == 8
    assert await archive.read("alice") == history  # nothing of the refused turn
    # the retry's reload: the archive is ahead of the snapshot, so it is rebuilt from it
    stored = await load_or_rebuild(sql, archive, "alice", count_snapshot)
    assert stored == StoredTracker("alice", 8, count_snapshot(history), history)
    assert await sql.append("alice", 8, turn(2, T0 + 2), {}) == 12


async def test_a_conversation_archived_before_the_sql_store_is_rebuilt_into_it(
    sql: SqlHotStore, archive: SqlArchive
) -> None:
    history = turn(0, T0) + turn(1, T0 + 1)
    await archive.write("alice", 0, history)  # written while Redis was the hot store
    assert await sql.load("alice") is None

    stored = await load_or_rebuild(sql, archive, "alice", count_snapshot)
    assert stored is not None
    assert stored.seq == 8
    assert await sql.load_snapshot("alice") == (8, count_snapshot(history))
    assert await rows(sql) == 8  # the rebuild added no event row


async def test_delete_forgets_the_live_state_and_keeps_the_archive(
    sql: SqlHotStore, archive: SqlArchive
) -> None:
    await sql.append("alice", 0, turn(0, T0), {})
    await sql.delete("alice")
    assert await sql.load("alice") is None
    assert await archive.read("alice") == turn(0, T0)
    # a new conversation under the same id would overwrite history: it conflicts instead
    with pytest.raises(VersionConflict) as raised:
        await sql.append("alice", 0, turn(5, T0 + 5), {})
    assert raised.value.actual_seq == 4


async def test_events_lost_by_hand_make_the_conversation_unstored(sql: SqlHotStore) -> None:
    await sql.append("alice", 0, turn(0, T0), {})
    async with sql.engine.begin() as connection:
        await connection.execute(events_table.delete().where(events_table.c.seq == 2))
    assert await sql.load("alice") is None


async def test_replace_needs_every_event(sql: SqlHotStore) -> None:
    with pytest.raises(ValueError, match="needs all 8 events"):
        await sql.replace("alice", StoredTracker("alice", 8, {}, turn(0, T0)))


async def test_the_store_does_nothing_before_start(sqlite_url: str) -> None:
    store = SqlHotStore(sqlite_url)
    with pytest.raises(RuntimeError, match="not started"):
        await store.load("alice")
    with pytest.raises(ValueError, match="start must be"):
        await SqlHotStore(sqlite_url).load("alice", -1)
    await store.close()


async def test_an_unreachable_database_fails_start_as_a_dependency() -> None:
    store = SqlHotStore("postgresql+asyncpg://parley:secret@127.0.0.1:1/parley")
    with pytest.raises(DependencyUnavailable, match=r"parley:\*\*\*@127.0.0.1:1") as raised:
        await store.start()
    assert raised.value.retryable
    assert "secret" not in str(raised.value)
