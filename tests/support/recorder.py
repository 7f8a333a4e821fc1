"""A handler that records what it was given and lets a test await a count."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from services.common.bus import Publication


class Recorder:
    """Collects handled messages; `wait_for(n)` awaits the n-th one."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Condition()

    async def __call__(self, message: Any) -> Sequence[Publication]:
        await self.add(message)
        return ()

    async def add(self, message: Any) -> None:
        async with self._changed:
            self.items.append(message)
            self._changed.notify_all()

    async def wait_for(self, count: int, within: float = 30.0) -> list[Any]:
        async def reached() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.items) >= count)

        try:
            await asyncio.wait_for(reached(), within)
        except TimeoutError:
            raise AssertionError(
                f"expected {count} messages within {within}s, got {len(self.items)}"
            ) from None
        return list(self.items)
