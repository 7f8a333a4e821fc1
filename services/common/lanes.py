"""How one consumer works on many records at once without breaking a conversation's order.

Transport-agnostic: both buses fetch records with one reader per subscription and hand them
here. `Lanes` runs the records of one lane (a partition and key, so a conversation) one
after another in arrival order, lanes side by side; `limited` caps how many handler calls
run at once. `PartitionProgress` tracks which fetched offsets of a partition are done, so the
transport commits only the highest offset below which everything is done (records of other
keys may finish first).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from services.common.bus import Subscription

T = TypeVar("T")


def backlog(concurrency: int) -> int:
    """How many records of one partition a reader takes ahead of the first one not done."""
    return max(16, 2 * concurrency)


def limited(subscription: Subscription[Any]) -> Subscription[Any]:
    """The subscription with at most `concurrency` calls of its handler at once. Only the
    call is limited: decoding, retry back-off and publishing the results happen outside, so a
    slot is free again as soon as the handler returned."""
    slots = asyncio.Semaphore(subscription.concurrency)
    handler = subscription.handler

    async def run(message: Any) -> Any:
        async with slots:
            return await handler(message)

    return replace(subscription, handler=run)


class PartitionProgress:
    """Fetched and finished offsets of one partition; `position` is what may be committed."""

    def __init__(self) -> None:
        self._window: deque[int] = deque()  # fetched, not yet committable, in offset order
        self._done: set[int] = set()
        self.position: int | None = None  # next offset to consume after a restart
        self.last_fetched = -1

    @property
    def outstanding(self) -> int:
        """Records fetched and not yet committable (being handled, queued, or behind one)."""
        return len(self._window)

    def fetched(self, offset: int) -> bool:
        """Record a fetched offset; False for one already seen (a stale fetch)."""
        if offset <= self.last_fetched:
            return False
        self.last_fetched = offset
        self._window.append(offset)
        return True

    def completed(self, offset: int) -> bool:
        """Mark an offset done; True when `position` moved."""
        self._done.add(offset)
        moved = False
        while self._window and self._window[0] in self._done:
            head = self._window.popleft()
            self._done.discard(head)
            self.position = head + 1
            moved = True
        return moved


@dataclass(eq=False)
class _Lane(Generic[T]):
    queue: deque[T] = field(default_factory=deque)
    closed: bool = False
    task: asyncio.Task[None] | None = None


class Lanes(Generic[T]):
    """Runs `work` on submitted items; items of one lane run one after another in submission
    order, lanes side by side. `work` must not raise: a failure to handle is the caller's to
    retry inside `work`."""

    def __init__(self, work: Callable[[T], Awaitable[None]]) -> None:
        self._work = work
        self._lanes: dict[Hashable, _Lane[T]] = {}

    def __len__(self) -> int:
        return len(self._lanes)

    def submit(self, lane: Hashable, item: T) -> bool:
        """Queue `item` behind its lane; False if the lane is being closed."""
        state = self._lanes.get(lane)
        if state is None:
            state = self._lanes[lane] = _Lane()
            state.task = asyncio.create_task(self._run(lane, state), name=f"lane:{lane!r}")
        elif state.closed:
            return False
        state.queue.append(item)
        return True

    async def _run(self, lane: Hashable, state: _Lane[T]) -> None:
        try:
            while state.queue and not state.closed:
                await self._work(state.queue.popleft())
        finally:
            if self._lanes.get(lane) is state:
                del self._lanes[lane]

    async def close(self, which: Callable[[Hashable], bool], grace_s: float) -> int:
        """Drop the queued items of the lanes `which` selects, wait up to `grace_s` for their
        running items, then cancel those; returns how many were cancelled."""
        closing = [state for lane, state in self._lanes.items() if which(lane)]
        for state in closing:
            state.closed = True
            state.queue.clear()
        tasks = [state.task for state in closing if state.task is not None]
        if not tasks:
            return 0
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)
