"""A small archive whose every figure is known: two conversations on two UTC days."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.dialogue.store.sql_archive import SqlArchive

DAY0 = datetime(2026, 11, 20, tzinfo=UTC).timestamp()
DAY1 = DAY0 + 86400


def user(
    ts: float,
    text: str,
    intent: str,
    confidence: float,
    entities: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "event": "user",
        "timestamp": ts,
        "metadata": metadata or {},
        "text": text,
        "parse_data": {
            "intent": {"name": intent, "confidence": confidence},
            "entities": entities or [],
            "text": text,
            "message_id": None,
            "metadata": {},
        },
        "input_channel": "rest",
        "message_id": f"m{ts}",
    }


def action(ts: float, name: str) -> dict[str, Any]:
    return {"event": "action", "timestamp": ts, "name": name, "policy": None, "confidence": 1.0}


def bot(ts: float, text: str) -> dict[str, Any]:
    return {"event": "bot", "timestamp": ts, "metadata": {}, "text": text, "data": {}}


def event(ts: float, type_name: str, **fields: Any) -> dict[str, Any]:
    return {"event": type_name, "timestamp": ts, **fields}


def conversation_a(t: float = DAY0) -> list[dict[str, Any]]:
    return [
        action(t, "action_session_start"),
        event(t, "session_started"),
        action(t, "action_listen"),
        user(t + 10, "hi", "greet", 0.95),
        action(t + 10.5, "utter_greet"),
        bot(t + 10.5, "Hello!"),
        action(t + 11, "action_listen"),
        user(
            t + 20,
            "book a table for two",
            "book",
            0.55,
            [{"entity": "people", "value": "two", "start": 16, "end": 19}],
        ),
        action(t + 20.25, "action_book"),
        event(t + 22, "action_failed", name="action_pay", reason="timeout", error=None),
        action(t + 23, "action_listen"),
        user(t + 30, "blah", "nlu_fallback", 0.2),
        action(t + 30.125, "action_default_fallback"),
        bot(t + 30.125, "Sorry?"),
        event(t + 30.25, "pause", metadata={"handoff_reason": "fallback"}),
        action(t + 30.5, "action_listen"),
        event(t + 31, "reminder", intent="remind", date_time="2026-11-20T00:01:00", name="r1"),
        user(t + 40, "EXTERNAL: remind", "remind", 1.0, metadata={"is_external": True}),
        action(t + 41, "action_listen"),
        event(t + 50, "user_feedback", rating=-1, scale="thumbs"),
    ]


def conversation_b(t: float = DAY1) -> list[dict[str, Any]]:
    return [
        user(t + 5, "hello", "greet", 1.0),
        action(t + 6, "utter_greet"),
        action(t + 7, "action_listen"),
        user(t + 10, "book now", "book", 0.85),
        action(t + 11, "action_book"),
        action(t + 12, "action_two_stage_fallback"),
        event(t + 13, "pause", metadata={"handoff_reason": "requested"}),
        action(t + 14, "action_listen"),
        event(t + 15, "cancel_reminder", name="r1"),
        event(t + 16, "user_feedback", rating=4, scale="stars"),
        event(t + 17, "user_feedback", rating=5, scale="stars", comment="great"),
        user(t + 20, "anyone?", "greet", 0.4),
    ]


async def seed(archive: SqlArchive) -> None:
    await archive.write("a", 0, conversation_a())
    await archive.write("b", 0, conversation_b())
