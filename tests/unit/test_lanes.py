"""The consumer's bookkeeping: which offset may be committed, and lanes that keep a key's order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from schemas.envelopes import UserMessage
from schemas.topics import Topic
from services.common.bus import Publication, Subscription
from services.common.lanes import Lanes, PartitionProgress, limited
from tests.support.clock import FakeClock


def test_the_position_is_the_first_offset_not_done() -> None:
    progress = PartitionProgress()
    for offset in (10, 11, 14, 15):  # 12 and 13 are not in the log (compacted, markers)
        assert progress.fetched(offset)
    assert progress.position is None
    assert not progress.completed(11)
    assert not progress.completed(15)
    assert progress.position is None, "10 is not done: nothing may be committed"
    assert progress.completed(10)
    assert progress.position == 12
    assert progress.outstanding == 2
    assert progress.completed(14)
    assert progress.position == 16, "the gap does not hold the position back"
    assert progress.outstanding == 0


def test_a_stale_fetch_is_refused() -> None:
    progress = PartitionProgress()
    assert progress.fetched(3)
    assert not progress.fetched(3)
    assert not progress.fetched(2)
    assert progress.outstanding == 1


async def test_a_lane_runs_its_items_in_order_while_others_overtake() -> None:
    release = {name: asyncio.Event() for name in ("a1", "a2", "b1")}
    order: list[str] = []
    watch = Watch()

    async def work(item: str) -> None:
        await release[item].wait()
        order.append(item)
        await watch.changed()

    lanes: Lanes[str] = Lanes(work)
    lanes.submit("a", "a1")
    lanes.submit("a", "a2")
    lanes.submit("b", "b1")
    release["a2"].set()
    release["b1"].set()
    await watch.until(lambda: order == ["b1"])
    release["a1"].set()
    await watch.until(lambda: len(order) == 3)
    assert order == ["b1", "a1", "a2"]


async def test_closing_drops_queued_items_and_cancels_what_outlives_the_grace() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    ran: list[str] = []
    watch = Watch()

    async def work(item: str) -> None:
        ran.append(item)
        await watch.changed()
        if item == "stuck":
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

    lanes: Lanes[str] = Lanes(work)
    lanes.submit(("p0", b"a"), "stuck")
    lanes.submit(("p0", b"a"), "queued")
    lanes.submit(("p1", b"a"), "other")
    await asyncio.wait_for(started.wait(), 5)

    abandoned = await lanes.close(lambda lane: lane == ("p0", b"a"), grace_s=0.05)

    assert abandoned == 1
    assert cancelled.is_set()
    await watch.until(lambda: "other" in ran)
    assert await lanes.close(lambda _: True, grace_s=5) == 0
    assert ran == ["stuck", "other"], "the queued item was dropped"


async def test_limited_caps_the_handler_calls_at_once() -> None:
    running, peak = 0, 0
    gate = asyncio.Event()
    watch = Watch()

    async def handler(message: UserMessage) -> Sequence[Publication]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await watch.changed()
        await gate.wait()
        running -= 1
        return ()

    subscription = limited(Subscription(Topic.NLU, "nlu", handler, UserMessage, concurrency=2))
    message = UserMessage(conversation_id="c", text="hi", sent_at=FakeClock().now())

    async def call() -> None:
        await subscription.handler(message)

    calls = [asyncio.create_task(call()) for _ in range(5)]
    await watch.until(lambda: running == 2)
    gate.set()
    await asyncio.gather(*calls)
    assert peak == 2
    assert subscription.group == "nlu"


class Watch:
    """State a test awaits: `changed()` after every change, `until(check)` to await one."""

    def __init__(self) -> None:
        self._condition = asyncio.Condition()

    async def changed(self) -> None:
        async with self._condition:
            self._condition.notify_all()

    async def until(self, check: Callable[[], bool], within: float = 5.0) -> None:
        async def reached() -> None:
            async with self._condition:
                await self._condition.wait_for(check)

        await asyncio.wait_for(reached(), within)
