"""Routing bot messages from `parley.outbound` to the connections waiting for them.

Every gateway replica reads every outbound message (a consumer group of its own) and
delivers what concerns the connections it holds, so a reply always reaches the replica that
holds the user's connection, whichever replica the turn's input came through:

- a REST request waits (`expect`) for the batches answering its message id until the one
  marked `turn_complete`, or its timeout;
- websocket connections of a conversation (`connect`) get every batch of that conversation,
  proactive ones included (reminders, agent replies);
- a message for a conversation with no live connection that a REST request of this replica
  has seen (reminders, an agent's reply) waits in a small mailbox: it is returned first by
  the conversation's next REST request, or fetched from `GET /webhooks/rest/inbox/{sender}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from schemas.envelopes import OutboundMessage, new_message_id
from services.common.correlation import correlated

logger = logging.getLogger(__name__)

Send = Callable[[OutboundMessage], Awaitable[None]]
EventSink = Callable[[dict[str, Any]], Awaitable[None]]
MAILBOX_CONVERSATIONS = 10_000
MAILBOX_MESSAGES = 50


@dataclass
class Waiter:
    """One REST request's turn: the bot messages so far and whether the turn completed."""

    conversation_id: str
    message_id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, outbound: OutboundMessage) -> None:
        self.messages.extend(m.to_rest(outbound.conversation_id) for m in outbound.messages)
        if outbound.turn_complete:
            self.done.set()


class ReplyHub:
    """Waiters, live connections and mailboxes of this replica."""

    def __init__(self) -> None:
        self._waiters: dict[str, Waiter] = {}
        self._connections: dict[str, set[Send]] = {}
        self._watchers: set[Send] = set()
        self._event_watchers: set[EventSink] = set()
        self._mailboxes: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()

    # -- REST ----------------------------------------------------------------------------

    def expect(self, conversation_id: str, message_id: str) -> Waiter:
        """Register before publishing the input, so no answer can slip past."""
        waiter = Waiter(conversation_id, message_id)
        self._waiters[message_id] = waiter
        self.remember(conversation_id)
        return waiter

    def remember(self, conversation_id: str) -> None:
        """Keep the conversation's undelivered messages from now on (most recent first to
        stay when there are too many conversations)."""
        self._mailboxes.setdefault(conversation_id, deque(maxlen=MAILBOX_MESSAGES))
        self._mailboxes.move_to_end(conversation_id)
        while len(self._mailboxes) > MAILBOX_CONVERSATIONS:
            self._mailboxes.popitem(last=False)

    async def ask(
        self,
        conversation_id: str,
        publish: Callable[[str], Awaitable[None]],
        timeout_s: float,
    ) -> tuple[Waiter, bool]:
        """Publish an input (`publish` gets its fresh message id) and wait for its turn. The
        waiter is registered before publishing, so no answer slips past, and forgotten after,
        published or not. Returns the waiter and whether the turn completed in time."""
        message_id = new_message_id()
        waiter = self.expect(conversation_id, message_id)
        with correlated(conversation_id, message_id):
            try:
                await publish(message_id)
            except BaseException:
                self._waiters.pop(message_id, None)
                raise
            return waiter, await self.wait(waiter, timeout_s)

    async def wait(self, waiter: Waiter, timeout_s: float) -> bool:
        """True when the turn completed in time; the waiter is forgotten either way."""
        try:
            await asyncio.wait_for(waiter.done.wait(), timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters.pop(waiter.message_id, None)

    def take_mailbox(self, conversation_id: str) -> list[dict[str, Any]]:
        box = self._mailboxes.get(conversation_id)
        if not box:
            return []
        items = list(box)
        box.clear()
        return items

    # -- websockets and the console -------------------------------------------------------

    def connect(self, conversation_id: str, send: Send) -> Callable[[], None]:
        """Deliver the conversation's messages to `send`; returns the disconnect function."""
        self._connections.setdefault(conversation_id, set()).add(send)
        self.remember(conversation_id)

        def disconnect() -> None:
            sends = self._connections.get(conversation_id)
            if sends is not None:
                sends.discard(send)
                if not sends:
                    del self._connections[conversation_id]

        return disconnect

    def watch(self, send: Send) -> Callable[[], None]:
        """Every outbound message (the console's live view)."""
        self._watchers.add(send)
        return lambda: self._watchers.discard(send)

    def watch_events(self, sink: EventSink) -> Callable[[], None]:
        """Every new tracker event, as Rasa's event-broker record `{sender_id, event, ...}`
        (the console's live transcripts and queue)."""
        self._event_watchers.add(sink)
        return lambda: self._event_watchers.discard(sink)

    async def handle_event(self, record: dict[str, Any]) -> None:
        """The `parley.events` subscription's handler."""
        for sink in list(self._event_watchers):
            try:
                await sink(record)
            except Exception:
                logger.info("a console connection is gone", exc_info=True)

    def connected(self, conversation_id: str) -> bool:
        return bool(self._connections.get(conversation_id))

    # -- the bus handler --------------------------------------------------------------------

    async def handle(self, outbound: OutboundMessage) -> None:
        """Deliver one outbound message (the `parley.outbound` subscription's handler)."""
        cid = outbound.conversation_id
        waiter = self._waiters.get(outbound.in_reply_to or "")
        if waiter is not None and waiter.conversation_id == cid:
            waiter.add(outbound)
        sends = list(self._connections.get(cid, ()))
        for send in sends:
            try:
                await send(outbound)
            except Exception:
                logger.info("a connection of %s is gone", cid, exc_info=True)
        if waiter is None and not sends and outbound.messages and cid in self._mailboxes:
            box = self._mailboxes[cid]
            box.extend(m.to_rest(cid) for m in outbound.messages)
        for watcher in list(self._watchers):
            try:
                await watcher(outbound)
            except Exception:
                logger.info("a console connection is gone", exc_info=True)
