"""The `HotStore` contract, one suite over every in-process backend: memory and SQL (SQLite).

Redis runs the same checks against a real server in tests/integration/test_tracker_store.py,
and the SQL store on PostgreSQL in tests/integration/test_sql_hot_store.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.dialogue.store.memory_store import MemoryHotStore
from services.dialogue.store.migrate import migrate
from services.dialogue.store.ports import HotStore, StoredTracker, VersionConflict
from services.dialogue.store.sql_hot_store import SqlHotStore
from tests.unit.dialogue_store.fakes import count_snapshot, turn

T0 = 1_700_000_000.0


@pytest.fixture(params=["memory", "sql"])
async def store(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[HotStore]:
    if request.param == "memory":
        yield MemoryHotStore()
        return
    await migrate(sqlite_url)
    async with SqlHotStore(sqlite_url) as sql:
        yield sql


async def test_an_unknown_conversation_is_not_stored(store: HotStore) -> None:
    assert await store.load("alice") is None
    assert await store.load_snapshot("alice") is None
    assert await store.events("alice") == []


async def test_appends_grow_the_conversation_and_load_from_a_seq(store: HotStore) -> None:
    first, second = turn(0, T0), turn(1, T0 + 1)
    assert await store.append("alice", 0, first, count_snapshot(first)) == 4
    assert await store.append("alice", 4, second, count_snapshot(first + second)) == 8

    stored = await store.load("alice")
    assert stored == StoredTracker("alice", 8, count_snapshot(first + second), first + second)
    tail = await store.load("alice", 6)
    assert tail is not None
    assert (tail.seq, tail.events) == (8, second[2:])
    assert await store.load_snapshot("alice") == (8, count_snapshot(first + second))
    assert await store.events("alice", 4) == second
    assert await store.load("bob") is None


async def test_an_append_at_a_stale_seq_conflicts_and_changes_nothing(store: HotStore) -> None:
    first = turn(0, T0)
    await store.append("alice", 0, first, {"n": 1})
    with pytest.raises(VersionConflict) as raised:
        await store.append("alice", 0, turn(9, T0 + 9), {"n": 2})
    assert (raised.value.expected_seq, raised.value.actual_seq) == (0, 4)
    with pytest.raises(VersionConflict) as raised:
        await store.append("alice", 8, turn(9, T0 + 9), {"n": 2})
    assert (raised.value.expected_seq, raised.value.actual_seq) == (8, 4)
    assert raised.value.retryable
    assert await store.load("alice") == StoredTracker("alice", 4, {"n": 1}, first)


async def test_a_new_conversation_at_a_later_seq_conflicts(store: HotStore) -> None:
    with pytest.raises(VersionConflict) as raised:
        await store.append("alice", 3, turn(0, T0), {})
    assert raised.value.actual_seq == 0
    assert await store.load("alice") is None


async def test_an_append_of_no_events_moves_only_the_snapshot(store: HotStore) -> None:
    await store.append("alice", 0, turn(0, T0), {"n": 1})
    assert await store.append("alice", 4, [], {"n": 2}) == 4
    assert await store.load_snapshot("alice") == (4, {"n": 2})


async def test_replace_and_delete(store: HotStore) -> None:
    history = turn(0, T0) + turn(1, T0 + 1)
    await store.replace("alice", StoredTracker("alice", 8, {"rebuilt": True}, history))
    assert await store.load("alice") == StoredTracker("alice", 8, {"rebuilt": True}, history)
    assert await store.append("alice", 8, turn(2, T0 + 2), {"n": 3}) == 12

    await store.delete("alice")
    assert await store.load("alice") is None
    assert await store.load_snapshot("alice") is None
    await store.delete("alice")  # a no-op the second time


async def test_snapshots_and_events_keep_unicode(store: HotStore) -> None:
    events = [{"event": "user", "timestamp": T0, "text": "grüß dich 👋"}]
    await store.append("élise", 0, events, {"name": "Élise"})
    assert await store.load("élise") == StoredTracker("élise", 1, {"name": "Élise"}, events)
