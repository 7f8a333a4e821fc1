"""The console's handoff queue and transcripts as folds of events, and the archive's query of
the open handoffs (SQLite; PostgreSQL under the integration marker)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.dialogue.store.migrate import migrate
from services.dialogue.store.sql_archive import SqlArchive
from services.gateway.auth import Principal
from services.gateway.console.live import OUTBOX_FRAMES, Viewer
from services.gateway.console.queue import LAST_MESSAGES, HandoffQueue
from services.gateway.console.transcript import entry_of, transcript
from tests.integration.test_tracker_store import pg_url  # noqa: F401 - fixture

T0 = 1_700_000_000.0


def user(text: str, ts: float, intent: str = "greet", confidence: float = 0.91) -> dict[str, Any]:
    return {
        "event": "user",
        "timestamp": ts,
        "text": text,
        "parse_data": {
            "intent": {"name": intent, "confidence": confidence},
            "entities": [{"entity": "bike", "value": "gravel", "start": 0, "end": 6}],
        },
    }


def bot(text: str, ts: float) -> dict[str, Any]:
    return {"event": "bot", "timestamp": ts, "text": text, "data": {}}


def pause(ts: float, reason: str | None = "requested") -> dict[str, Any]:
    event: dict[str, Any] = {"event": "pause", "timestamp": ts}
    if reason:
        event["metadata"] = {"handoff_reason": reason}
    return event


def agent_action(command: str, agent: str, ts: float, **more: Any) -> dict[str, Any]:
    return {"event": "agent_action", "timestamp": ts, "command": command, "agent_id": agent, **more}


def resume(ts: float) -> dict[str, Any]:
    return {"event": "resume", "timestamp": ts}


# -- the queue --------------------------------------------------------------------------------


def test_a_pause_with_a_reason_opens_a_handoff_with_the_messages_before_it() -> None:
    queue = HandoffQueue()
    queue.apply("c1", user("I want a human", T0))
    queue.apply("c1", bot("One moment", T0 + 1))
    change = queue.apply("c1", pause(T0 + 2, "requested"))

    assert change is not None
    assert change.handoff is not None
    handoff = change.handoff
    assert (handoff.reason, handoff.paused_at, handoff.claimed_by) == ("requested", T0 + 2, None)
    assert [m["text"] for m in handoff.last_messages] == ["I want a human", "One moment"]


def test_a_plain_pause_is_no_handoff() -> None:
    queue = HandoffQueue()
    assert queue.apply("c1", pause(T0, reason=None)) is None
    assert queue.items() == []


def test_claim_and_assign_set_the_holder_and_the_end_events_close_it() -> None:
    for end in ("resume", "restart", "session_started"):
        queue = HandoffQueue()
        queue.apply("c1", pause(T0, "fallback"))
        claimed = queue.apply("c1", agent_action("claim", "alice", T0 + 5))
        assert claimed is not None
        assert claimed.handoff is not None
        assert (claimed.handoff.claimed_by, claimed.handoff.claimed_at) == ("alice", T0 + 5)
        assigned = queue.apply("c1", agent_action("assign", "alice", T0 + 6, assignee="bob"))
        assert assigned is not None
        assert assigned.handoff is not None
        assert assigned.handoff.claimed_by == "bob"
        # A note changes nothing the queue shows.
        assert queue.apply("c1", agent_action("note", "bob", T0 + 7, text="vip")) is None

        ended = queue.apply("c1", {"event": end, "timestamp": T0 + 8})
        assert ended is not None
        assert ended.handoff is None
        assert queue.get("c1") is None
        # Events of a conversation not handed off change nothing.
        assert queue.apply("c1", agent_action("claim", "alice", T0 + 9)) is None


def test_new_messages_update_an_open_handoff_and_keep_only_the_last_few() -> None:
    queue = HandoffQueue()
    queue.apply("c1", pause(T0))
    for i in range(LAST_MESSAGES + 2):
        change = queue.apply("c1", user(f"message {i}", T0 + i + 1))
        assert change is not None
    handoff = queue.get("c1")
    assert handoff is not None
    assert handoff.last_activity == T0 + LAST_MESSAGES + 2
    assert [m["text"] for m in handoff.last_messages] == [
        f"message {i}" for i in range(2, LAST_MESSAGES + 2)
    ]


def test_unclaimed_conversations_come_first_then_the_longest_waiting() -> None:
    queue = HandoffQueue()
    queue.apply("late", pause(T0 + 20))
    queue.apply("early", pause(T0 + 10))
    queue.apply("held", pause(T0))
    queue.apply("held", agent_action("claim", "alice", T0 + 30))

    assert [h.conversation_id for h in queue.items()] == ["early", "late", "held"]


def test_a_claim_marked_here_is_pending_until_its_event_comes_back() -> None:
    queue = HandoffQueue()
    queue.apply("c1", pause(T0))
    marked = queue.mark_claimed("c1", "alice", T0 + 1)
    assert marked is not None
    assert marked.handoff is not None
    assert (marked.handoff.claimed_by, marked.handoff.pending) == ("alice", True)
    queue.apply("c1", agent_action("claim", "alice", T0 + 2))
    handoff = queue.get("c1")
    assert handoff is not None
    assert (handoff.claimed_by, handoff.pending) == ("alice", False)
    assert queue.mark_claimed("unknown", "alice", T0) is None


def test_a_new_handoff_after_a_resume_starts_unclaimed() -> None:
    queue = HandoffQueue()
    queue.apply_all(
        "c1",
        [
            pause(T0),
            agent_action("claim", "alice", T0 + 1),
            resume(T0 + 2),
            pause(T0 + 3, "low_confidence"),
        ],
    )
    handoff = queue.get("c1")
    assert handoff is not None
    assert (handoff.reason, handoff.claimed_by, handoff.paused_at) == (
        "low_confidence",
        None,
        T0 + 3,
    )


# -- transcripts ------------------------------------------------------------------------------


def test_the_transcript_shows_messages_with_nlu_notes_and_handoff_markers() -> None:
    events = [
        {"event": "action", "timestamp": T0, "name": "action_listen"},
        user("gravel bike please", T0 + 1, "human_handoff", 0.87654),
        bot("Connecting you", T0 + 2),
        pause(T0 + 3),
        agent_action("claim", "alice", T0 + 4),
        {
            "event": "agent",
            "timestamp": T0 + 5,
            "text": "Hi, Alice here",
            "data": {"agent_id": "alice"},
        },
        agent_action("note", "alice", T0 + 6, text="asked about gravel"),
        agent_action("hand_back", "alice", T0 + 7),
        resume(T0 + 7),
        {"event": "slot", "timestamp": T0 + 8, "name": "x", "value": 1},
    ]
    entries = transcript(events)

    assert [e["kind"] for e in entries] == [
        "user", "bot", "handoff", "action", "agent", "note", "action", "resume",
    ]  # fmt: skip
    said = entries[0]
    assert (said["intent"], said["confidence"]) == ("human_handoff", 0.8765)
    assert said["entities"] == [{"entity": "bike", "value": "gravel"}]
    assert entries[2]["reason"] == "requested"
    assert (entries[4]["text"], entries[4]["agent_id"]) == ("Hi, Alice here", "alice")
    assert (entries[5]["text"], entries[5]["agent_id"]) == ("asked about gravel", "alice")
    assert entries[6]["command"] == "hand_back"
    assert all(e["timestamp"] is not None for e in entries)


def test_a_bots_buttons_are_kept_and_a_plain_pause_is_not_shown() -> None:
    buttons = [{"title": "Yes", "payload": "/affirm"}]
    entry = entry_of(
        {"event": "bot", "timestamp": T0, "text": "Sure?", "data": {"buttons": buttons}}
    )
    assert entry is not None
    assert entry["buttons"] == buttons
    assert entry_of(pause(T0, reason=None)) is None


# -- the consoles' outboxes --------------------------------------------------------------------


def test_a_console_too_slow_to_read_is_dropped_not_waited_for() -> None:
    viewer = Viewer(Principal("alice", "agent"))
    for i in range(OUTBOX_FRAMES):
        viewer.offer({"type": "event", "n": i})
    assert not viewer.dropped
    viewer.offer({"type": "event", "n": OUTBOX_FRAMES})

    assert viewer.dropped
    # Its writer finds the end at once, and nothing more is queued.
    assert viewer.outbox.get_nowait() is None
    viewer.offer({"type": "event"})
    assert viewer.outbox.empty()


# -- the archive's open handoffs ----------------------------------------------------------


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[SqlArchive]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}"
    await migrate(url)
    async with SqlArchive(url) as archive:
        yield archive


async def test_open_handoffs_are_the_pauses_with_a_reason_and_no_later_end(
    archive: SqlArchive,
) -> None:
    await check_open_handoffs(archive)


@pytest.mark.integration
async def test_open_handoffs_on_postgresql(pg_url: str) -> None:  # noqa: F811 - fixture
    await migrate(pg_url)
    async with SqlArchive(pg_url) as archive:
        await check_open_handoffs(archive)


async def check_open_handoffs(archive: SqlArchive) -> None:
    await archive.write("waiting", 0, [user("human!", T0), pause(T0 + 1)])
    await archive.write("held", 0, [pause(T0 + 5, "fallback"), agent_action("claim", "a", T0 + 6)])
    await archive.write("resumed", 0, [pause(T0), resume(T0 + 2)])
    await archive.write("plain", 0, [pause(T0, reason=None)])
    await archive.write(
        "again", 0, [pause(T0 + 1), resume(T0 + 2), pause(T0 + 3, "action_failure")]
    )
    await archive.write("restarted", 0, [pause(T0), {"event": "restart", "timestamp": T0 + 1}])
    # A plain pause after a handoff does not end it, nor open a new one.
    await archive.write("mixed", 0, [pause(T0 + 4, "low_confidence"), pause(T0 + 9, reason=None)])

    found = await archive.open_handoffs()

    assert [(h.sender_id, h.seq, h.timestamp) for h in found] == [
        ("waiting", 1, T0 + 1),
        ("again", 2, T0 + 3),
        ("mixed", 0, T0 + 4),
        ("held", 0, T0 + 5),
    ]
    assert found[1].event["metadata"] == {"handoff_reason": "action_failure"}
    assert [h.sender_id for h in await archive.open_handoffs(limit=2)] == ["waiting", "again"]


def test_user_feedback_shows_in_the_transcript() -> None:
    entry = entry_of(
        {
            "event": "user_feedback",
            "timestamp": 7.0,
            "rating": -1,
            "scale": "thumbs",
            "comment": "not what I asked",
            "message_text": "Hello!",
        }
    )
    assert entry == {
        "kind": "feedback",
        "rating": -1,
        "scale": "thumbs",
        "text": "not what I asked",
        "message_text": "Hello!",
        "timestamp": 7.0,
    }
