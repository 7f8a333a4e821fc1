"""What the gateway needs from the rest of Parley, as ports (adapters in `adapters.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from schemas.envelopes import Envelope
from schemas.topics import Topic

Publish = Callable[[Topic, Envelope], Awaitable[None]]
Check = Callable[[], Awaitable[tuple[bool, str]]]
# Which events a tracker includes (Rasa's `EventVerbosity`).
IncludeEvents = Literal["ALL", "AFTER_RESTART", "APPLIED", "NONE"]
INCLUDE_EVENTS: tuple[IncludeEvents, ...] = ("ALL", "AFTER_RESTART", "APPLIED", "NONE")


class TrackerReader(Protocol):
    """Conversations as the dialogue worker stored them (read only)."""

    async def tracker(
        self, conversation_id: str, include_events: IncludeEvents = "AFTER_RESTART"
    ) -> dict[str, Any]:
        """Rasa's `current_state()` of the conversation (a fresh one when it is unknown)."""
        ...


class ConversationArchive(Protocol):
    """The SQL archive, read only (the console's queue, transcripts and search)."""

    async def read(self, conversation_id: str, start: int = 0) -> list[dict[str, Any]]: ...

    async def last_seq(self, conversation_id: str) -> int: ...


class Parser(Protocol):
    """The NLU model, for `POST /model/parse` and `POST /conversations/{id}/messages`."""

    async def parse(self, text: str, message_id: str | None = None) -> dict[str, Any]:
        """Rasa's parse data (`text`, `intent`, `entities`, `intent_ranking`, ...)."""
        ...

    def status(self) -> dict[str, Any]:
        """Rasa's `GET /status` body (the loaded model)."""
        ...
