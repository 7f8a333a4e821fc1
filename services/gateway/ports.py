"""What the gateway needs from the rest of Parley, as ports (adapters in `adapters.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from schemas.envelopes import Envelope
from schemas.topics import Topic
from services.dialogue.tracker import Verbosity

Publish = Callable[[Topic, Envelope], Awaitable[None]]
Check = Callable[[], Awaitable[tuple[bool, str]]]


class TrackerReader(Protocol):
    """Conversations as the dialogue worker stored them (read only)."""

    async def tracker(
        self, conversation_id: str, verbosity: Verbosity = Verbosity.AFTER_RESTART
    ) -> dict[str, Any]:
        """Rasa's `current_state()` of the conversation (a fresh one when it is unknown)."""
        ...


class Parser(Protocol):
    """The NLU model, for `POST /model/parse` and `POST /conversations/{id}/messages`."""

    async def parse(self, text: str, message_id: str | None = None) -> dict[str, Any]:
        """Rasa's parse data (`text`, `intent`, `entities`, `intent_ranking`, ...)."""
        ...

    def status(self) -> dict[str, Any]:
        """Rasa's `GET /status` body (the loaded model)."""
        ...
