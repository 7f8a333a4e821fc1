"""Rasa-shaped event builders and an in-memory `HotStore`, for the tracker store's tests."""

from __future__ import annotations

from typing import Any

from services.dialogue.store.memory_store import MemoryHotStore


def user(text: str, intent: str | None, timestamp: float) -> dict[str, Any]:
    parse_data: dict[str, Any] = {"text": text, "intent": {}, "entities": []}
    if intent is not None:
        parse_data["intent"] = {"name": intent, "confidence": 0.97}
    return {
        "event": "user",
        "timestamp": timestamp,
        "metadata": {},
        "text": text,
        "parse_data": parse_data,
        "input_channel": "rest",
        "message_id": f"m{timestamp}",
    }


def bot(text: str, timestamp: float) -> dict[str, Any]:
    return {"event": "bot", "timestamp": timestamp, "metadata": {}, "text": text, "data": {}}


def action(name: str, timestamp: float) -> dict[str, Any]:
    return {
        "event": "action",
        "timestamp": timestamp,
        "name": name,
        "policy": "RulePolicy",
        "confidence": 1.0,
    }


def slot(name: str, value: Any, timestamp: float) -> dict[str, Any]:
    return {"event": "slot", "timestamp": timestamp, "name": name, "value": value}


def turn(n: int, timestamp: float) -> list[dict[str, Any]]:
    """One turn: the user says something, the bot answers."""
    return [
        user(f"message {n}", "greet" if n % 2 else "ask", timestamp),
        action("utter_answer", timestamp + 0.1),
        bot(f"answer {n}", timestamp + 0.2),
        action("action_listen", timestamp + 0.3),
    ]


def count_snapshot(events: list[dict[str, Any]]) -> dict[str, Any]:
    """A stand-in for the reducer: what a snapshot_of function returns."""
    return {"events": len(events), "last": events[-1]["event"] if events else None}


__all__ = ["MemoryHotStore", "action", "bot", "count_snapshot", "slot", "turn", "user"]
