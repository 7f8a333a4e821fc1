"""A probe's handler for `parley.outbound`: the bot's messages per conversation, awaited by
completed turns or by what was said."""

from __future__ import annotations

import asyncio

from schemas.envelopes import OutboundMessage
from services.common.bus import Publication


class Outbound:
    """Every outbound message, per conversation; waits for turns or texts."""

    def __init__(self) -> None:
        self.by_conversation: dict[str, list[OutboundMessage]] = {}
        self._changed = asyncio.Condition()

    async def __call__(self, message: OutboundMessage) -> list[Publication]:
        async with self._changed:
            self.by_conversation.setdefault(message.conversation_id, []).append(message)
            self._changed.notify_all()
        return []

    def texts(self, conversation: str) -> list[str]:
        """Everything the bot said in the conversation, in order."""
        return [
            m.text or "" for out in self.by_conversation.get(conversation, []) for m in out.messages
        ]

    def turn(self, conversation: str, message_id: str) -> list[str]:
        """The texts the bot said in reply to `message_id`."""
        return [
            m.text or ""
            for out in self.by_conversation.get(conversation, [])
            if out.in_reply_to == message_id
            for m in out.messages
        ]

    async def completed(self, conversation: str, count: int, within: float = 30) -> None:
        """Wait until `count` turns of the conversation are complete."""

        def done() -> bool:
            got = self.by_conversation.get(conversation, [])
            return sum(m.turn_complete for m in got) >= count

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(done), within)

    async def said(self, conversation: str, text: str, within: float = 30) -> OutboundMessage:
        """Wait for the batch in which the bot says `text`."""

        def found() -> OutboundMessage | None:
            for out in self.by_conversation.get(conversation, []):
                if any(m.text == text for m in out.messages):
                    return out
            return None

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: found() is not None), within)
            except TimeoutError:
                raise AssertionError(
                    f"{text!r} not said within {within:g}s; said: {self.texts(conversation)}"
                ) from None
        out = found()
        assert out is not None
        return out
