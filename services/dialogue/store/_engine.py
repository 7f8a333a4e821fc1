"""What the SQL stores share: owning one async engine, opened by `start()`, closed by
`close()`, usable as an async context manager."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncEngine


class EngineOwner:
    """A store that owns an async SQLAlchemy engine; subclasses open it in `start()`."""

    _engine: AsyncEngine | None = None

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def engine(self) -> AsyncEngine:
        """The engine, for health checks and tests."""
        if self._engine is None:
            name = type(self).__name__
            raise RuntimeError(f"{name} is not started: use `async with` or start()")
        return self._engine
