"""The tracker store's ports: a hot store for the live conversation, an archive for all of it.

Storage only: events are JSON dicts in Rasa's wire format (`{"event": ..., "timestamp": ...}`),
the snapshot is an opaque JSON dict that the reducer owns.

Numbering, the same everywhere: an event's *seq* is its 0-based position in the conversation;
a tracker's `seq` is the number of events it holds, which is also the seq its next event gets.
`append(cid, expected_seq=n, events)` stores `events` at seqs n, n+1, ..., and the caller archives
them with `write(cid, first_seq=n, events)`. `events(cid, start)` and `read(cid, start)` both return
the events whose seq is `start` or more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.common.errors import PermanentError, RetryableError


@dataclass(frozen=True)
class StoredTracker:
    """A conversation as stored: its version, the reducer's snapshot and (some of) its events."""

    conversation_id: str
    seq: int
    """Number of events stored (the version); 0 for a new conversation."""
    snapshot: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    """Events in order: all of them, or those from seq `start` on when a load asked for that."""


@dataclass(frozen=True)
class ConversationSummary:
    """One row of the console's conversation list."""

    sender_id: str
    events: int
    first_timestamp: float | None
    last_timestamp: float | None
    latest_intent: str | None


@dataclass(frozen=True)
class SearchHit:
    """An archived event whose text matched a search."""

    sender_id: str
    seq: int
    type_name: str
    timestamp: float | None
    text: str
    event: dict[str, Any]


class VersionConflict(RetryableError):
    """Another writer appended first: reload the conversation and apply the turn again."""

    def __init__(self, conversation_id: str, expected_seq: int, actual_seq: int) -> None:
        super().__init__(
            f"conversation {conversation_id!r} is at seq {actual_seq}, not {expected_seq}: "
            "another writer appended first"
        )
        self.conversation_id = conversation_id
        self.expected_seq = expected_seq
        self.actual_seq = actual_seq


class ArchiveGap(RetryableError):
    """The archive misses events before its last one, so a rebuild from it would be wrong.

    Usually the archive is still being written (an earlier batch is in flight): retry later.
    """


class InvalidEvent(PermanentError):
    """An event the archive cannot store: not a JSON object with a string `"event"` name."""


class HotStore(Protocol):
    """The live conversations (Redis): O(1) appends under optimistic concurrency."""

    async def load(self, conversation_id: str, start: int = 0) -> StoredTracker | None:
        """The conversation with its events from seq `start` on; None when it is not stored."""
        ...

    async def load_snapshot(self, conversation_id: str) -> tuple[int, dict[str, Any]] | None:
        """`(seq, snapshot)` without reading any event; None when it is not stored."""
        ...

    async def events(self, conversation_id: str, start: int = 0) -> list[dict[str, Any]]:
        """The events from seq `start` on ([] when the conversation is not stored)."""
        ...

    async def append(
        self,
        conversation_id: str,
        expected_seq: int,
        events: Sequence[dict[str, Any]],
        snapshot: dict[str, Any],
    ) -> int:
        """Append `events` and set `snapshot` atomically, only if the stored seq is
        `expected_seq` (0 for a new conversation); return the new seq.

        Raises `VersionConflict` when another writer got there first.
        """
        ...

    async def replace(self, conversation_id: str, stored: StoredTracker) -> None:
        """Overwrite the conversation unconditionally (a rebuild from the archive).

        `stored.events` must hold all `stored.seq` events.
        """
        ...

    async def delete(self, conversation_id: str) -> None:
        """Forget the conversation (a no-op when it is not stored)."""
        ...

    async def start(self) -> None:
        """Connect (and check the server answers)."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...


class Archive(Protocol):
    """Every event of every conversation (SQL), for rebuilds, analytics and the console."""

    async def write(
        self, conversation_id: str, first_seq: int, events: Sequence[dict[str, Any]]
    ) -> None:
        """Store `events` at seqs `first_seq`, `first_seq + 1`, ...; seqs already stored are
        left as they are, so writing the same batch twice is a no-op."""
        ...

    async def read(self, conversation_id: str, start: int = 0) -> list[dict[str, Any]]:
        """The archived events from seq `start` on, in seq order."""
        ...

    async def last_seq(self, conversation_id: str) -> int:
        """The seq of the last archived event: -1 when there is none.

        So `last_seq(cid) + 1` is the number of archived events (when there is no gap),
        comparable with a `StoredTracker.seq`.
        """
        ...

    async def conversations(
        self, *, since: float | None = None, limit: int = 100, offset: int = 0
    ) -> list[ConversationSummary]:
        """Conversations, most recently active first; with `since`, only those with an event
        at or after that epoch timestamp."""
        ...

    async def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """User and bot events whose text contains `text` (case-insensitive), newest first."""
        ...
