"""Rasa-shaped event builders and an in-memory `HotStore`, for the tracker store's tests."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from services.dialogue.store import HotStore, StoredTracker, VersionConflict


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


class MemoryHotStore:
    """`HotStore` in memory, with the same version check as Redis; counts calls."""

    def __init__(self) -> None:
        self.data: dict[str, StoredTracker] = {}
        self.replaced: list[str] = []

    async def load(self, conversation_id: str, start: int = 0) -> StoredTracker | None:
        stored = self.data.get(conversation_id)
        if stored is None:
            return None
        return StoredTracker(
            conversation_id,
            stored.seq,
            copy.deepcopy(stored.snapshot),
            copy.deepcopy(stored.events[start:]),
        )

    async def load_snapshot(self, conversation_id: str) -> tuple[int, dict[str, Any]] | None:
        stored = self.data.get(conversation_id)
        return None if stored is None else (stored.seq, copy.deepcopy(stored.snapshot))

    async def events(self, conversation_id: str, start: int = 0) -> list[dict[str, Any]]:
        stored = await self.load(conversation_id, start)
        return [] if stored is None else stored.events

    async def append(
        self,
        conversation_id: str,
        expected_seq: int,
        events: Sequence[dict[str, Any]],
        snapshot: dict[str, Any],
    ) -> int:
        stored = self.data.get(conversation_id)
        seq = 0 if stored is None else stored.seq
        if seq != expected_seq:
            raise VersionConflict(conversation_id, expected_seq, seq)
        history = [] if stored is None else stored.events
        new = StoredTracker(
            conversation_id,
            seq + len(events),
            copy.deepcopy(snapshot),
            history + copy.deepcopy(list(events)),
        )
        self.data[conversation_id] = new
        return new.seq

    async def replace(self, conversation_id: str, stored: StoredTracker) -> None:
        assert len(stored.events) == stored.seq
        self.replaced.append(conversation_id)
        self.data[conversation_id] = copy.deepcopy(stored)

    async def delete(self, conversation_id: str) -> None:
        self.data.pop(conversation_id, None)


_: type[HotStore] = MemoryHotStore
