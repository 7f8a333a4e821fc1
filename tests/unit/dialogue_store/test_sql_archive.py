"""The SQL archive on SQLite: idempotent, ordered writes, the console's queries."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from services.dialogue.store import Archive, InvalidEvent
from services.dialogue.store.sql_archive import SqlArchive, events_table
from tests.unit.dialogue_store.fakes import action, bot, slot, turn, user

T0 = 1_700_000_000.0


async def rows(archive: SqlArchive, sender_id: str | None = None) -> list[dict[str, Any]]:
    statement = select(events_table).order_by(events_table.c.sender_id, events_table.c.seq)
    if sender_id is not None:
        statement = statement.where(events_table.c.sender_id == sender_id)
    async with archive.engine.connect() as connection:
        return [dict(row._mapping) for row in await connection.execute(statement)]


async def test_is_an_archive(archive: SqlArchive) -> None:
    port: Archive = archive
    assert await port.last_seq("nobody") == -1


async def test_reads_back_what_was_written_in_seq_order(archive: SqlArchive) -> None:
    events = turn(1, T0) + turn(2, T0 + 10)
    await archive.write("alice", 4, events[4:])
    await archive.write("alice", 0, events[:4])

    assert await archive.read("alice") == events
    assert await archive.read("alice", 6) == events[6:]
    assert await archive.read("alice", 8) == []
    assert await archive.last_seq("alice") == 7
    assert [row["seq"] for row in await rows(archive)] == list(range(8))


async def test_rewriting_the_same_seqs_is_a_no_op(archive: SqlArchive) -> None:
    events = turn(1, T0)
    await archive.write("alice", 0, events)
    await archive.write("alice", 0, events)
    await archive.write("alice", 2, events[2:])
    # The first write of a seq wins: a different event at a stored seq is ignored.
    await archive.write("alice", 3, [bot("changed", T0 + 5), bot("new", T0 + 6)])

    assert await archive.read("alice") == [*events, bot("new", T0 + 6)]
    assert len(await rows(archive, "alice")) == 5


async def test_conversations_are_kept_apart(archive: SqlArchive) -> None:
    await archive.write("alice", 0, turn(1, T0))
    await archive.write("bob", 0, turn(2, T0))
    await archive.write("alice", 4, turn(3, T0 + 1))

    assert await archive.read("bob") == turn(2, T0)
    assert await archive.last_seq("alice") == 7
    assert await archive.last_seq("bob") == 3
    assert await archive.read("carol") == []


async def test_columns_follow_rasas_sql_tracker_store(archive: SqlArchive) -> None:
    events = [
        user("hi", "greet", T0),
        user("??", None, T0 + 1),
        action("action_listen", T0 + 2),
        slot("city", "Paris", T0 + 3),
        bot("hello", T0 + 4),
        {"event": "session_started"},
    ]
    await archive.write("alice", 0, events)

    got = [
        (r["type_name"], r["timestamp"], r["intent_name"], r["action_name"])
        for r in await rows(archive)
    ]
    assert got == [
        ("user", T0, "greet", None),
        ("user", T0 + 1, None, None),
        ("action", T0 + 2, None, "action_listen"),
        ("slot", T0 + 3, None, None),
        ("bot", T0 + 4, None, None),
        ("session_started", None, None, None),
    ]
    assert [json.loads(r["data"]) for r in await rows(archive)] == events


async def test_json_text_is_stored_exactly_as_given(archive: SqlArchive) -> None:
    given = '{ "event": "bot",  "timestamp": 1.50, "text": "caf\\u00e9", "metadata": {} }'
    await archive.write("alice", 0, [given, bot("naïve", T0)])

    stored = await rows(archive)
    assert stored[0]["data"] == given
    assert json.loads(stored[1]["data"]) == bot("naïve", T0)
    assert await archive.read("alice") == [json.loads(given), bot("naïve", T0)]


@pytest.mark.parametrize(
    "event",
    [
        {"timestamp": T0},
        {"event": "", "timestamp": T0},
        {"event": "x" * 65},
        {"event": 3},
        "not json",
        "[1, 2]",
    ],
)
async def test_invalid_events_are_refused_and_nothing_is_written(
    archive: SqlArchive, event: Any
) -> None:
    with pytest.raises(InvalidEvent):
        await archive.write("alice", 0, [bot("fine", T0), event])
    assert await rows(archive) == []


async def test_an_overlong_sender_id_is_refused(archive: SqlArchive) -> None:
    with pytest.raises(InvalidEvent, match="sender_id"):
        await archive.write("a" * 256, 0, [bot("fine", T0)])


async def test_conversations_summarise_the_latest_first(archive: SqlArchive) -> None:
    await archive.write("alice", 0, [user("hi", "greet", T0), bot("hello", T0 + 1)])
    await archive.write("alice", 2, [user("bye", "goodbye", T0 + 2), action("utter_bye", T0 + 3)])
    await archive.write("bob", 0, [user("hey", "greet", T0 + 50), user("?", None, T0 + 51)])
    await archive.write("carol", 0, [action("action_session_start", T0 + 20)])

    summaries = await archive.conversations()
    assert [(s.sender_id, s.events, s.latest_intent) for s in summaries] == [
        ("bob", 2, "greet"),
        ("carol", 1, None),
        ("alice", 4, "goodbye"),
    ]
    assert (summaries[2].first_timestamp, summaries[2].last_timestamp) == (T0, T0 + 3)

    recent = await archive.conversations(since=T0 + 10)
    assert [s.sender_id for s in recent] == ["bob", "carol"]
    page = await archive.conversations(limit=1, offset=1)
    assert [s.sender_id for s in page] == ["carol"]
    assert await archive.conversations(since=T0 + 100) == []


async def test_search_finds_user_and_bot_text_case_insensitively(archive: SqlArchive) -> None:
    await archive.write(
        "alice",
        0,
        [
            user("I want a PIZZA", "order", T0),
            action("utter_pizza", T0 + 1),
            bot("One pizza coming", T0 + 2),
            slot("food", "pizza", T0 + 3),
        ],
    )
    await archive.write("bob", 0, [user("no thanks", "deny", T0 + 4)])

    hits = await archive.search("Pizza")
    assert [(h.sender_id, h.seq, h.type_name, h.text) for h in hits] == [
        ("alice", 2, "bot", "One pizza coming"),
        ("alice", 0, "user", "I want a PIZZA"),
    ]
    assert hits[1].event == user("I want a PIZZA", "order", T0)
    assert hits[1].timestamp == T0
    assert len(await archive.search("pizza", limit=1)) == 1
    assert await archive.search("sushi") == []


async def test_search_matches_text_not_json_keys(archive: SqlArchive) -> None:
    await archive.write("alice", 0, [user("hello", "greet", T0), bot("hi there", T0 + 1)])
    assert await archive.search("intent") == []
    assert await archive.search("timestamp") == []
    assert await archive.search("greet") == []


@pytest.mark.parametrize("text", ['say "hi"', "100% sure", "snake_case", "back\\slash", "a!b"])
async def test_search_takes_its_text_literally(archive: SqlArchive, text: str) -> None:
    await archive.write("alice", 0, [bot(f"x {text} y", T0), bot("decoy 100 sure snakeXcase", T0)])
    hits = await archive.search(text)
    assert [h.text for h in hits] == [f"x {text} y"]


async def test_search_finds_non_ascii_text_however_it_was_encoded(archive: SqlArchive) -> None:
    escaped = json.dumps(bot("un café noir", T0))  # \u00e9, as Rasa stores it
    await archive.write("alice", 0, [escaped, bot("deux cafés", T0 + 1)])
    hits = await archive.search("café")
    assert sorted(h.seq for h in hits) == [0, 1]


async def test_search_pages_past_false_positives(
    archive: SqlArchive, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("services.dialogue.store.sql_archive._SEARCH_BATCH", 3)
    # The JSON of these mentions "needle" outside the text: SQL matches them, Python drops them.
    decoys = [{**bot("nothing here", T0 + i), "data": {"needle": 1}} for i in range(10)]
    await archive.write("alice", 0, [bot("a needle", T0 - 1), *decoys, bot("needle 2", T0 + 20)])

    hits = await archive.search("needle")
    assert [h.seq for h in hits] == [11, 0]
    assert [h.seq for h in await archive.search("needle", limit=1)] == [11]


async def test_the_table_has_the_indexes_the_queries_use(archive: SqlArchive) -> None:
    async with archive.engine.connect() as connection:
        names = (
            await connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"
            )
        ).scalars()
        found = set(names)
    indexes = {"ix_events_timestamp", "ix_events_type_name_timestamp", "ix_events_intent_name"}
    assert indexes <= found
    assert any(name.startswith("sqlite_autoindex_events") for name in found)  # the UNIQUE


async def test_many_events_in_one_write(archive: SqlArchive) -> None:
    events = [bot(f"line {i}", T0 + i) for i in range(2_000)]
    await archive.write("alice", 0, events)
    assert await archive.read("alice", 1_990) == events[1_990:]
    async with archive.engine.connect() as connection:
        count = select(func.count()).select_from(events_table)
        assert (await connection.execute(count)).scalar() == 2_000


async def test_is_unusable_before_start(sqlite_url: str) -> None:
    archive = SqlArchive(sqlite_url)
    with pytest.raises(RuntimeError, match="not started"):
        await archive.read("alice")
