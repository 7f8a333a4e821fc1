"""Running workers in a test: start them in order, stop them in reverse, and forget an
action package's imports afterwards (each test imports its bot's `actions` afresh)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Protocol


class Startable(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@asynccontextmanager
async def running(*workers: Startable) -> AsyncIterator[None]:
    """Start `workers` in order; stop those that started, in reverse, whatever happens."""
    started: list[Startable] = []
    try:
        for worker in workers:
            await worker.start()
            started.append(worker)
        yield
    finally:
        for worker in reversed(started):
            await worker.stop()


@contextmanager
def imports_restored(saved_path: list[str], package: Callable[[], str]) -> Iterator[None]:
    """Put `sys.path` back as saved and drop the modules of `package()` on the way out."""
    try:
        yield
    finally:
        sys.path[:] = saved_path
        name = package()
        for module in [m for m in sys.modules if m.split(".")[0] == name]:
            del sys.modules[module]
