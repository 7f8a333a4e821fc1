"""load_or_rebuild: the hot store is trusted unless it lost the conversation or lags the archive."""

from __future__ import annotations

from typing import Any

import pytest

from services.dialogue.store import ArchiveGap, StoredTracker, load_or_rebuild
from services.dialogue.store.sql_archive import SqlArchive
from tests.unit.dialogue_store.fakes import MemoryHotStore, count_snapshot, turn

T0 = 1_700_000_000.0


class Recorder:
    """A snapshot_of that remembers what it was given."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    def __call__(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(events)
        return count_snapshot(events)


async def stored_turns(
    hot: MemoryHotStore, archive: SqlArchive, cid: str, turns: int, *, archived: int | None = None
) -> list[dict[str, Any]]:
    """Append `turns` turns to the hot store, archiving the first `archived` of them."""
    history: list[dict[str, Any]] = []
    for n in range(turns):
        events = turn(n, T0 + n)
        seq = len(history)
        history += events
        await hot.append(cid, seq, events, count_snapshot(history))
        if archived is None or n < archived:
            await archive.write(cid, seq, events)
    return history


async def test_a_conversation_in_the_hot_store_is_returned_as_is(archive: SqlArchive) -> None:
    hot, snapshot_of = MemoryHotStore(), Recorder()
    history = await stored_turns(hot, archive, "alice", 3)

    stored = await load_or_rebuild(hot, archive, "alice", snapshot_of)
    assert stored == StoredTracker("alice", 12, count_snapshot(history), history)
    assert snapshot_of.calls == []
    assert hot.replaced == []


async def test_the_hot_store_may_be_ahead_of_the_archive(archive: SqlArchive) -> None:
    hot, snapshot_of = MemoryHotStore(), Recorder()
    history = await stored_turns(hot, archive, "alice", 3, archived=1)

    stored = await load_or_rebuild(hot, archive, "alice", snapshot_of)
    assert stored is not None
    assert (stored.seq, stored.events) == (12, history)
    assert hot.replaced == []


async def test_an_unknown_conversation_is_none(archive: SqlArchive) -> None:
    hot, snapshot_of = MemoryHotStore(), Recorder()
    assert await load_or_rebuild(hot, archive, "nobody", snapshot_of) is None
    assert hot.replaced == []


async def test_a_lost_conversation_is_rebuilt_from_the_archive(archive: SqlArchive) -> None:
    hot, snapshot_of = MemoryHotStore(), Recorder()
    history = await stored_turns(hot, archive, "alice", 3)
    await hot.delete("alice")

    stored = await load_or_rebuild(hot, archive, "alice", snapshot_of)
    expected = StoredTracker("alice", 12, count_snapshot(history), history)
    assert stored == expected
    assert snapshot_of.calls == [history]
    assert await hot.load("alice") == expected
    # The next turn appends on top of the rebuilt version.
    assert await hot.append("alice", 12, turn(9, T0 + 9), {"n": 16}) == 16


async def test_a_write_the_hot_store_lost_is_recovered(archive: SqlArchive) -> None:
    hot, snapshot_of = MemoryHotStore(), Recorder()
    history = await stored_turns(hot, archive, "alice", 3)
    # Redis fails over to a replica that had not seen the last turn.
    stale = StoredTracker("alice", 8, count_snapshot(history[:8]), history[:8])
    hot.data["alice"] = stale

    stored = await load_or_rebuild(hot, archive, "alice", snapshot_of)
    assert stored is not None
    assert (stored.seq, stored.events, stored.snapshot) == (12, history, count_snapshot(history))
    assert hot.replaced == ["alice"]


async def test_start_limits_the_events_returned(archive: SqlArchive) -> None:
    hot, snapshot_of = MemoryHotStore(), Recorder()
    history = await stored_turns(hot, archive, "alice", 3)

    stored = await load_or_rebuild(hot, archive, "alice", snapshot_of, start=10)
    assert stored is not None
    assert (stored.seq, stored.events) == (12, history[10:])

    await hot.delete("alice")
    rebuilt = await load_or_rebuild(hot, archive, "alice", snapshot_of, start=10)
    assert rebuilt is not None
    assert (rebuilt.seq, rebuilt.events) == (12, history[10:])
    assert snapshot_of.calls == [history]
    assert await hot.events("alice") == history


async def test_an_archive_with_a_gap_is_not_rebuilt_from(archive: SqlArchive) -> None:
    hot, snapshot_of = MemoryHotStore(), Recorder()
    await archive.write("alice", 0, turn(0, T0))
    await archive.write("alice", 8, turn(2, T0 + 2))  # seqs 4..7 still in flight

    with pytest.raises(ArchiveGap, match="missing") as raised:
        await load_or_rebuild(hot, archive, "alice", snapshot_of)
    assert raised.value.retryable
    assert hot.data == {}
    assert snapshot_of.calls == []
