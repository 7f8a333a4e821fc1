"""`HotStore` in memory (the embedded mode, and tests): the same version check as Redis."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from services.dialogue.store.ports import HotStore, StoredTracker, VersionConflict


class MemoryHotStore:
    """`HotStore` in memory, with the same version check as Redis; counts calls."""

    def __init__(self) -> None:
        self.data: dict[str, StoredTracker] = {}
        self.replaced: list[str] = []

    async def start(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to disconnect from."""

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
