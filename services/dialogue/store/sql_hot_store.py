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
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dialogue.store._engine import EngineOwner
from services.dialogue.store.ports import HotStore, InvalidEvent, StoredTracker, VersionConflict
from services.dialogue.store.sql_archive import (
    NAME_LENGTH,
    SqlArchive,
    event_row,
    events_table,
    snapshots_table,
)


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class SqlHotStore(EngineOwner):
    """`HotStore` on the archive's database. `async with SqlHotStore(url) as store: ...`;
    run `migrate(url)` first (this class never creates tables)."""

    NAME = "the SQL tracker store"
    DATABASE = "the tracker store's database"

    async def start(self) -> None:
        """Create the engine and check that the database answers."""
        engine = await self._open_engine()
        try:
            with self._reachable():
                async with engine.connect() as connection:
                    await connection.execute(select(1))
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine

    async def load(self, conversation_id: str, start: int = 0) -> StoredTracker | None:
        if start < 0:
            raise ValueError(f"start must be >= 0, not {start}")
        e = events_table.c
        with self._reachable():
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
        with self._reachable():
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
        with self._reachable():
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
        with self._reachable():
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
        with self._reachable():
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
