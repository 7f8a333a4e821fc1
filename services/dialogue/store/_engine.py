"""What the SQL stores share: one async engine on PostgreSQL or SQLite, opened by `start()`,
closed by `close()`, usable as an async context manager, and database failures reported as
`DependencyUnavailable` with the URL (password hidden)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, ClassVar, Self

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.common.errors import DependencyUnavailable

SUPPORTED_DIALECTS = ("postgresql", "sqlite")


class EngineOwner:
    """A store that owns an async SQLAlchemy engine; subclasses open it in `start()` with
    `_open_engine()` and wrap their statements in `_reachable()`."""

    NAME: ClassVar[str] = "the store"  # in "the store supports ..."
    DATABASE: ClassVar[str] = "the store's database"  # in "... database (url) fails"

    def __init__(self, database_url: str, *, pool_size: int = 5) -> None:
        self.database_url = database_url
        self.pool_size = pool_size
        self._engine: AsyncEngine | None = None

    async def start(self) -> None:
        raise NotImplementedError

    @property
    def _safe_url(self) -> str:
        return make_url(self.database_url).render_as_string(hide_password=True)

    async def _open_engine(self) -> AsyncEngine:
        """A new engine (connections open on first use); ValueError for another dialect."""
        options: dict[str, Any] = {"pool_pre_ping": True}
        if not self.database_url.startswith("sqlite"):
            options["pool_size"] = self.pool_size
        engine = create_async_engine(self.database_url, **options)
        if engine.dialect.name not in SUPPORTED_DIALECTS:
            await engine.dispose()
            raise ValueError(
                f"{self.NAME} supports {', '.join(SUPPORTED_DIALECTS)}, not {engine.dialect.name}"
            )
        return engine

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, InterfaceError, OSError) as exc:
            raise DependencyUnavailable(f"{self.DATABASE} ({self._safe_url}) fails: {exc}") from exc

    def _insert(self) -> Callable[..., Any]:
        """The dialect's INSERT (with `on_conflict_do_nothing`)."""
        return postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert

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
