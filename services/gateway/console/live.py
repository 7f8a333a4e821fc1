"""The console's live state: the handoff queue, loaded from the archive once and kept current
from `parley.events`, and the agents' websockets that hear of every change.

Every gateway replica reads every event, so each keeps its own queue. Each websocket has a
bounded outbox drained by its own task: a slow browser is disconnected (it reconnects and
reloads) rather than holding up the event stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

from schemas.envelopes import OutboundMessage
from services.common.clock import Clock
from services.gateway.auth import Principal
from services.gateway.console.queue import Change, Handoff, HandoffQueue
from services.gateway.console.transcript import entry_of
from services.gateway.replies import ReplyHub

logger = logging.getLogger(__name__)
OUTBOX_FRAMES = 500
EARLY_EVENTS = 10_000
# Messages before the handoff that the queue shows as its context.
CONTEXT_EVENTS = 30
Frame = dict[str, Any]


class HandoffRecord(Protocol):
    sender_id: str
    seq: int


class ConsoleArchive(Protocol):
    """What the console reads from the SQL archive (`SqlArchive`)."""

    async def read(self, conversation_id: str, start: int = 0) -> list[dict[str, Any]]: ...

    async def open_handoffs(self, limit: int = 1000) -> Sequence[HandoffRecord]: ...


class Viewer:
    """One agent's console websocket: who, which conversations it shows, what is to send."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.watching: set[str] = set()
        self.outbox: asyncio.Queue[Frame | None] = asyncio.Queue(OUTBOX_FRAMES)
        self.dropped = False

    def offer(self, frame: Frame) -> None:
        if self.dropped:
            return
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            logger.warning("console of %s is too slow: disconnecting it", self.principal.subject)
            self.close()

    def close(self) -> None:
        self.dropped = True
        while not self.outbox.empty():
            self.outbox.get_nowait()
        self.outbox.put_nowait(None)


def queue_frame(change: Change) -> Frame:
    if change.handoff is None:
        return {"type": "queue_removed", "conversation_id": change.conversation_id}
    return {"type": "queue_item", "item": change.handoff.to_json()}


class Console:
    """The queue and the connected consoles of this replica."""

    def __init__(self, archive: ConsoleArchive | None, clock: Clock) -> None:
        self.archive = archive
        self.clock = clock
        self.queue = HandoffQueue()
        self.viewers: set[Viewer] = set()
        self._loaded = False
        self._lock = asyncio.Lock()
        # Events that came before the archive was read; the archive has the older ones,
        # since the dialogue worker archives a turn before it publishes its events.
        self._early: deque[tuple[str, Mapping[str, Any]]] = deque(maxlen=EARLY_EVENTS)
        self.claims = asyncio.Lock()

    def attach(self, hub: ReplyHub) -> Callable[[], None]:
        """Listen to the hub; returns the function that stops listening."""
        stop_events = hub.watch_events(self.on_event)
        stop_outbound = hub.watch(self.on_outbound)

        def detach() -> None:
            stop_events()
            stop_outbound()

        return detach

    async def ready(self) -> None:
        """Read the open handoffs from the archive, once."""
        if self._loaded:
            return
        async with self._lock:
            if self._loaded:
                return
            if self.archive is not None:
                for handoff in await self.archive.open_handoffs():
                    start = max(0, handoff.seq - CONTEXT_EVENTS)
                    events = await self.archive.read(handoff.sender_id, start)
                    self.queue.apply_all(handoff.sender_id, events)
            while self._early:
                self._fold(*self._early.popleft())
            self._loaded = True
            logger.info("console: %d open handoffs", len(self.queue))

    async def on_event(self, record: dict[str, Any]) -> None:
        conversation_id = record.get("sender_id")
        if not isinstance(conversation_id, str):
            return
        if not self._loaded:
            self._early.append((conversation_id, record))
            return
        self._fold(conversation_id, record)

    async def on_outbound(self, outbound: OutboundMessage) -> None:
        frame = {
            "type": "delivered",
            "conversation_id": outbound.conversation_id,
            "source": outbound.source,
            "texts": [m.text for m in outbound.messages if m.text],
        }
        for viewer in list(self.viewers):
            if outbound.conversation_id in viewer.watching:
                viewer.offer(frame)

    def _fold(self, conversation_id: str, record: Mapping[str, Any]) -> None:
        change = self.queue.apply(conversation_id, record)
        if change is not None:
            self.broadcast(queue_frame(change))
        entry = entry_of(record)
        if entry is not None:
            frame = {"type": "event", "conversation_id": conversation_id, "entry": entry}
            for viewer in list(self.viewers):
                if conversation_id in viewer.watching:
                    viewer.offer(frame)

    def now(self) -> float:
        return self.clock.now().timestamp()

    @contextlib.asynccontextmanager
    async def claiming(self, conversation_id: str, agent_id: str) -> AsyncIterator[None]:
        """Show the conversation held by `agent_id` while its command is sent; undone when
        sending fails."""
        before = self.queue.get(conversation_id)
        change = self.queue.mark_claimed(conversation_id, agent_id, self.now())
        if before is None or change is None or change.handoff is None:
            yield
            return
        self.broadcast(queue_frame(change))
        sent = False
        try:
            yield
            sent = True
        finally:
            undone = None if sent else self.queue.restore(before, change.handoff)
            if undone is not None:
                self.broadcast(queue_frame(undone))

    def broadcast(self, frame: Frame) -> None:
        for viewer in list(self.viewers):
            viewer.offer(frame)

    def snapshot(self) -> Frame:
        return {
            "type": "queue",
            "now": self.clock.now().timestamp(),
            "items": [h.to_json() for h in self.queue.items()],
        }

    def get(self, conversation_id: str) -> Handoff | None:
        return self.queue.get(conversation_id)

    def close(self) -> None:
        for viewer in list(self.viewers):
            viewer.close()
