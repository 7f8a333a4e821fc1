"""How every worker process runs: start, serve until SIGTERM/SIGINT, stop cleanly."""

from __future__ import annotations

import asyncio
import signal
from typing import Protocol


class Worker(Protocol):
    """A worker's lifecycle: `start` (serve health, connect, consume), `run` until `stop` is
    set (then it stops itself), `stop` (idempotent)."""

    async def start(self) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...

    async def stop(self) -> None: ...


class ConsumingWorker:
    """What every worker shares: the `bus` readiness check (ready once it consumes) and
    `run`, which serves until `stop` is set and then stops. Subclasses set `consuming` in
    their `start`/`stop` and register `bus_check` on their health server."""

    consuming: bool = False

    async def bus_check(self) -> tuple[bool, str]:
        return self.consuming, "consuming" if self.consuming else "not consuming"

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then stop."""
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        raise NotImplementedError


async def serve(worker: Worker) -> int:
    """Run `worker` until SIGTERM or SIGINT; a failed start stops what had started."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await worker.start()
    except BaseException:
        await worker.stop()
        raise
    await worker.run(stop)
    return 0
