"""The hot store on SQL alone (`PARLEY_STORE_BACKEND=sql`): no Redis, the archive is the store.

A conversation's events are its rows in the archive's `events` table; its version and the
reducer's snapshot (the same JSON the Redis store keeps) are one row of `conversation_snapshots`.
An append is one transaction: it moves the snapshot row from `expected_seq` to the new seq
(`UPDATE ... WHERE seq = expected`, or an INSERT for a new conversation) and inserts the events;
another writer makes the UPDATE match no row (PostgreSQL re-checks the WHERE after the row lock,
SQLite serialises writers), the insert of a seq already taken fails, and either way the
transaction rolls back with `VersionConflict`. So the events are archived when the append
commits: `AppendedArchive.write`, which the handler calls next, only checks that they are there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.common.errors import DependencyUnavailable
from services.dialogue.store._engine import EngineOwner
from services.dialogue.store.ports import HotStore, InvalidEvent, StoredTracker, VersionConflict
from services.dialogue.store.sql_archive import (
    NAME_LENGTH,
    SUPPORTED_DIALECTS,
    SqlArchive,
    event_row,
    events_table,
    snapshots_table,
)


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@contextmanager
def _reachable(url: str) -> Iterator[None]:
    try:
        yield
    except (OperationalError, InterfaceError, OSError) as exc:
        raise DependencyUnavailable(f"the tracker store's database ({url}) fails: {exc}") from exc


class SqlHotStore(EngineOwner):
    """`HotStore` on the archive's database. `async with SqlHotStore(url) as store: ...`;
    run `migrate(url)` first (this class never creates tables)."""

    def __init__(self, database_url: str, *, pool_size: int = 5) -> None:
        self.database_url = database_url
        self.pool_size = pool_size
        self._engine: AsyncEngine | None = None

    @property
    def _safe_url(self) -> str:
        return make_url(self.database_url).render_as_string(hide_password=True)

    async def start(self) -> None:
        """Create the engine and check that the database answers."""
        options: dict[str, Any] = {"pool_pre_ping": True}
        if not self.database_url.startswith("sqlite"):
            options["pool_size"] = self.pool_size
        engine = create_async_engine(self.database_url, **options)
        try:
            if engine.dialect.name not in SUPPORTED_DIALECTS:
                raise ValueError(
                    f"the SQL tracker store supports {', '.join(SUPPORTED_DIALECTS)}, "
                    f"not {engine.dialect.name}"
                )
            with _reachable(self._safe_url):
                async with engine.connect() as connection:
                    await connection.execute(select(1))
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine

    def _insert(self) -> Any:
        return postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert

    async def load(self, conversation_id: str, start: int = 0) -> StoredTracker | None:
        if start < 0:
            raise ValueError(f"start must be >= 0, not {start}")
        e = events_table.c
        with _reachable(self._safe_url):
            async with self.engine.connect() as connection:
                head = await self._head(connection, conversation_id)
                if head is None:
                    return None
                seq, snapshot = head
                # Rows past `seq` belong to no committed append of this snapshot: ignored.
                statement = (
                    select(e.data)
                    .where(e.sender_id == conversation_id, e.seq >= start, e.seq < seq)
                    .order_by(e.seq)
                )
                rows = (await connection.execute(statement)).scalars().all()
        if len(rows) != max(seq - start, 0):
            return None  # events deleted by hand: rebuilt from what the archive still has
        return StoredTracker(conversation_id, seq, snapshot, [json.loads(d) for d in rows])

    @staticmethod
    async def _head(
        connection: AsyncConnection, conversation_id: str
    ) -> tuple[int, dict[str, Any]] | None:
        s = snapshots_table.c
        statement = select(s.seq, s.snapshot).where(s.sender_id == conversation_id)
        row = (await connection.execute(statement)).first()
        return None if row is None else (int(row[0]), json.loads(row[1]))

    async def load_snapshot(self, conversation_id: str) -> tuple[int, dict[str, Any]] | None:
        with _reachable(self._safe_url):
            async with self.engine.connect() as connection:
                return await self._head(connection, conversation_id)

    async def events(self, conversation_id: str, start: int = 0) -> list[dict[str, Any]]:
        stored = await self.load(conversation_id, start)
        return [] if stored is None else stored.events

    async def append(
        self,
        conversation_id: str,
        expected_seq: int,
        events: Sequence[dict[str, Any]],
        snapshot: dict[str, Any],
    ) -> int:
        if len(conversation_id) > NAME_LENGTH:
            raise InvalidEvent(f"sender_id longer than {NAME_LENGTH}: {conversation_id[:40]!r}...")
        rows = [event_row(conversation_id, expected_seq + i, e) for i, e in enumerate(events)]
        new_seq = expected_seq + len(rows)
        s = snapshots_table.c
        encoded = _dumps(snapshot)
        with _reachable(self._safe_url):
            try:
                async with self.engine.begin() as connection:
                    if expected_seq == 0:
                        statement = (
                            self._insert()(snapshots_table)
                            .values(sender_id=conversation_id, seq=new_seq, snapshot=encoded)
                            .on_conflict_do_nothing(index_elements=["sender_id"])
                        )
                    else:
                        statement = (
                            update(snapshots_table)
                            .where(s.sender_id == conversation_id, s.seq == expected_seq)
                            .values(seq=new_seq, snapshot=encoded, updated_at=func.now())
                        )
                    moved = (await connection.execute(statement)).rowcount
                    if moved != 1:
                        head = await self._head(connection, conversation_id)
                        actual = 0 if head is None else head[0]
                        raise VersionConflict(conversation_id, expected_seq, actual)
                    if rows:
                        await connection.execute(events_table.insert(), rows)
            except IntegrityError:
                # The events' seqs were taken (archived by another writer, or left over):
                # a reload rebuilds from them.
                actual = await self._archived(conversation_id)
                raise VersionConflict(conversation_id, expected_seq, actual) from None
        return new_seq

    async def _archived(self, conversation_id: str) -> int:
        e = events_table.c
        statement = select(func.max(e.seq)).where(e.sender_id == conversation_id)
        async with self.engine.connect() as connection:
            last = (await connection.execute(statement)).scalar()
        return 0 if last is None else int(last) + 1

    async def replace(self, conversation_id: str, stored: StoredTracker) -> None:
        """Set the snapshot row; events already archived are kept as they are (they are the
        archive, which a rebuild reads them from), missing ones inserted."""
        if len(stored.events) != stored.seq:
            raise ValueError(
                f"replace needs all {stored.seq} events of {conversation_id!r}, "
                f"got {len(stored.events)}"
            )
        rows = [event_row(conversation_id, i, e) for i, e in enumerate(stored.events)]
        insert = self._insert()
        upsert = insert(snapshots_table).values(
            sender_id=conversation_id, seq=stored.seq, snapshot=_dumps(stored.snapshot)
        )
        upsert = upsert.on_conflict_do_update(
            index_elements=["sender_id"],
            set_={"seq": upsert.excluded.seq, "snapshot": upsert.excluded.snapshot,
                  "updated_at": func.now()},
        )  # fmt: skip
        with _reachable(self._safe_url):
            async with self.engine.begin() as connection:
                if rows:
                    events = insert(events_table).on_conflict_do_nothing(
                        index_elements=["sender_id", "seq"]
                    )
                    await connection.execute(events, rows)
                await connection.execute(upsert)

    async def delete(self, conversation_id: str) -> None:
        """Forget the live state (the snapshot row); the archived events stay."""
        s = snapshots_table.c
        with _reachable(self._safe_url):
            async with self.engine.begin() as connection:
                await connection.execute(
                    snapshots_table.delete().where(s.sender_id == conversation_id)
                )


class AppendedArchive(SqlArchive):
    """The archive beside `SqlHotStore`: reads as `SqlArchive`; `write` finds the events
    already stored by the append's transaction and only checks that (one indexed MAX), and
    inserts them (idempotently) only when they are not."""

    async def write(
        self,
        conversation_id: str,
        first_seq: int,
        events: Sequence[Mapping[str, Any] | str],
    ) -> None:
        if events and await self.last_seq(conversation_id) >= first_seq + len(events) - 1:
            return
        await super().write(conversation_id, first_seq, events)


_: type[HotStore] = SqlHotStore
