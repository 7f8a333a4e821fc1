"""The archive on SQL (async SQLAlchemy 2): PostgreSQL via asyncpg, SQLite via aiosqlite.

The `events` table keeps the shape of Rasa's SQLTrackerStore (one row per event, the event JSON as
TEXT in `data`, `type_name`, `timestamp`, `intent_name`, `action_name`), so tools that read Rasa's
table read ours, plus `seq` and UNIQUE(sender_id, seq), which make writes idempotent. `data` is
TEXT rather than a JSON column for that compatibility, and so that a caller's JSON is stored as
given. The schema belongs to Alembic (`services.dialogue.store.migrate`): run it before use; this
class never creates tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dialogue.store._engine import EngineOwner
from services.dialogue.store.ports import ConversationSummary, InvalidEvent, SearchHit


@dataclass(frozen=True)
class OpenHandoff:
    """A conversation whose latest handoff `pause` has no later `resume` (nor restart, nor new
    session): it waits for, or is held by, a human agent."""

    sender_id: str
    seq: int
    timestamp: float | None
    event: dict[str, Any]


NAME_LENGTH = 255
TYPE_NAME_LENGTH = 64
TEXT_EVENTS = ("user", "bot")
# Events that end a handoff (services/dialogue/handoff.py): the bot takes over again.
HANDOFF_ENDS = ("resume", "restart", "session_started")
_HANDOFF_MARK = '%"handoff_reason"%'
_SEARCH_BATCH = 200
_LIKE_ESCAPE = "!"

metadata = MetaData()

events_table = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sender_id", String(NAME_LENGTH), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type_name", String(TYPE_NAME_LENGTH), nullable=False),
    Column("timestamp", Float, nullable=True),
    Column("intent_name", String(NAME_LENGTH), nullable=True),
    Column("action_name", String(NAME_LENGTH), nullable=True),
    Column("data", Text, nullable=True),
    UniqueConstraint("sender_id", "seq", name="uq_events_sender_id_seq"),
    Index("ix_events_timestamp", "timestamp"),
    Index("ix_events_type_name_timestamp", "type_name", "timestamp"),
    Index("ix_events_intent_name", "intent_name"),
)

# The SQL hot store's version and snapshot per conversation (`sql_hot_store.SqlHotStore`, with
# `PARLEY_STORE_BACKEND=sql`): here so that the one `metadata` holds the whole schema.
snapshots_table = Table(
    "conversation_snapshots",
    metadata,
    Column("sender_id", String(NAME_LENGTH), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("snapshot", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def _dumps(event: Mapping[str, Any]) -> str:
    encoded = json.dumps(event, ensure_ascii=False)
    try:
        encoded.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only the escaped form is storable
        return json.dumps(event)
    return encoded


def _name(value: Any) -> str | None:
    # Index columns only: an over-long name is cut, `data` keeps it whole.
    return value[:NAME_LENGTH] if isinstance(value, str) and value else None


def event_row(sender_id: str, seq: int, event: Mapping[str, Any] | str) -> dict[str, Any]:
    """The `events` row of one event: a dict, or its JSON text (stored exactly as given)."""
    if isinstance(event, str):
        data = event
        try:
            parsed = json.loads(event)
        except ValueError as exc:
            raise InvalidEvent(f"event {seq} of {sender_id!r} is not JSON: {exc}") from None
    else:
        parsed, data = event, _dumps(event)
    if not isinstance(parsed, dict):
        raise InvalidEvent(f"event {seq} of {sender_id!r} is not a JSON object")
    type_name = parsed.get("event")
    if not isinstance(type_name, str) or not 0 < len(type_name) <= TYPE_NAME_LENGTH:
        raise InvalidEvent(f"event {seq} of {sender_id!r} has no valid 'event' name")
    timestamp = parsed.get("timestamp")
    intent_name = action_name = None
    if type_name == "user":
        parse_data = parsed.get("parse_data")
        intent = parse_data.get("intent") if isinstance(parse_data, dict) else None
        intent_name = _name(intent.get("name")) if isinstance(intent, dict) else None
    elif type_name == "action":
        action_name = _name(parsed.get("name"))
    return {
        "sender_id": sender_id,
        "seq": seq,
        "type_name": type_name,
        "timestamp": (
            float(timestamp)
            if isinstance(timestamp, int | float) and not isinstance(timestamp, bool)
            else None
        ),
        "intent_name": intent_name,
        "action_name": action_name,
        "data": data,
    }


def _like_patterns(text: str) -> set[str]:
    """LIKE patterns that find `text` inside a JSON string value, however it was escaped."""
    patterns = set()
    for ensure_ascii in (False, True):
        escaped = json.dumps(text, ensure_ascii=ensure_ascii)[1:-1]
        for char in (_LIKE_ESCAPE, "%", "_"):
            escaped = escaped.replace(char, _LIKE_ESCAPE + char)
        patterns.add(f"%{escaped}%")
    return patterns


class SqlArchive(EngineOwner):
    """`Archive` on SQL. `async with SqlArchive(url) as archive: ...`; run `migrate(url)` first."""

    NAME = "the archive"
    DATABASE = "the archive database"

    async def start(self) -> None:
        """Create the engine (connections are opened on first use)."""
        self._engine = await self._open_engine()

    async def write(
        self,
        conversation_id: str,
        first_seq: int,
        events: Sequence[Mapping[str, Any] | str],
    ) -> None:
        """Store `events` at seqs `first_seq`, ...; already stored seqs are left untouched.

        An event is a dict (stored as its JSON) or JSON text (stored exactly as given).
        """
        if first_seq < 0:
            raise ValueError(f"first_seq must be >= 0, not {first_seq}")
        if len(conversation_id) > NAME_LENGTH:
            raise InvalidEvent(f"sender_id longer than {NAME_LENGTH}: {conversation_id[:40]!r}...")
        if not events:
            return
        rows = [event_row(conversation_id, first_seq + i, e) for i, e in enumerate(events)]
        statement = self._insert()(events_table).on_conflict_do_nothing(
            index_elements=["sender_id", "seq"]
        )
        with self._reachable():
            async with self.engine.begin() as connection:
                await connection.execute(statement, rows)

    async def read(self, conversation_id: str, start: int = 0) -> list[dict[str, Any]]:
        statement = (
            select(events_table.c.data)
            .where(events_table.c.sender_id == conversation_id, events_table.c.seq >= start)
            .order_by(events_table.c.seq)
        )
        with self._reachable():
            async with self.engine.connect() as connection:
                rows = (await connection.execute(statement)).scalars().all()
        return [json.loads(data) for data in rows]

    async def last_seq(self, conversation_id: str) -> int:
        """The seq of the last archived event of the conversation; -1 when there is none."""
        statement = select(func.max(events_table.c.seq)).where(
            events_table.c.sender_id == conversation_id
        )
        with self._reachable():
            async with self.engine.connect() as connection:
                last = (await connection.execute(statement)).scalar()
        return -1 if last is None else int(last)

    async def conversations(
        self, *, since: float | None = None, limit: int = 100, offset: int = 0
    ) -> list[ConversationSummary]:
        e = events_table.c
        last = func.max(e.timestamp)
        statement = (
            select(e.sender_id, func.count(), func.min(e.timestamp), last)
            .group_by(e.sender_id)
            .order_by(last.desc().nulls_last(), e.sender_id)
            .limit(limit)
            .offset(offset)
        )
        if since is not None:
            active = select(e.sender_id).where(e.timestamp >= since).distinct()
            statement = statement.where(e.sender_id.in_(active))
        with self._reachable():
            async with self.engine.connect() as connection:
                rows = (await connection.execute(statement)).all()
                intents = await self._latest_intents(connection, [row[0] for row in rows])
        return [
            ConversationSummary(
                sender_id=sender_id,
                events=count,
                first_timestamp=first,
                last_timestamp=latest,
                latest_intent=intents.get(sender_id),
            )
            for sender_id, count, first, latest in rows
        ]

    @staticmethod
    async def _latest_intents(connection: AsyncConnection, sender_ids: list[str]) -> dict[str, str]:
        if not sender_ids:
            return {}
        e = events_table.c
        latest = (
            select(e.sender_id, func.max(e.seq).label("seq"))
            .where(e.sender_id.in_(sender_ids), e.intent_name.is_not(None))
            .group_by(e.sender_id)
            .subquery()
        )
        statement = select(e.sender_id, e.intent_name).join(
            latest, (e.sender_id == latest.c.sender_id) & (e.seq == latest.c.seq)
        )
        return {sender_id: intent for sender_id, intent in (await connection.execute(statement))}

    async def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """User and bot events whose text contains `text`, most recently archived first.

        Case-insensitive as the database folds case: fully on PostgreSQL with a Unicode-aware
        collation, ASCII letters only on SQLite.
        """
        e = events_table.c
        needle = text.lower()
        matches = or_(*(e.data.ilike(p, escape=_LIKE_ESCAPE) for p in _like_patterns(text)))
        hits: list[SearchHit] = []
        before: int | None = None
        with self._reachable():
            async with self.engine.connect() as connection:
                while len(hits) < limit:
                    statement = (
                        select(e.id, e.sender_id, e.seq, e.type_name, e.timestamp, e.data)
                        .where(e.type_name.in_(TEXT_EVENTS), matches)
                        .order_by(e.id.desc())
                        .limit(_SEARCH_BATCH)
                    )
                    if before is not None:
                        statement = statement.where(e.id < before)
                    rows = (await connection.execute(statement)).all()
                    for row_id, sender_id, seq, type_name, timestamp, data in rows:
                        before = row_id
                        event = json.loads(data)
                        found = event.get("text") if isinstance(event, dict) else None
                        if isinstance(found, str) and needle in found.lower():
                            hits.append(
                                SearchHit(sender_id, seq, type_name, timestamp, found, event)
                            )
                            if len(hits) == limit:
                                break
                    if len(rows) < _SEARCH_BATCH:
                        break
        return hits

    async def open_handoffs(self, limit: int = 1000) -> list[OpenHandoff]:
        """Conversations handed to a human and not handed back, longest waiting first.

        A handoff is a `pause` whose metadata has `handoff_reason`; it ends with `resume`,
        `restart` or `session_started`. Both sides are found through the `type_name` index,
        the ends only among the conversations that have a handoff.
        """
        e = events_table.c
        pauses = (
            select(e.sender_id, func.max(e.seq).label("seq"))
            .where(e.type_name == "pause", e.data.like(_HANDOFF_MARK))
            .group_by(e.sender_id)
            .subquery()
        )
        ends = (
            select(e.sender_id, func.max(e.seq).label("seq"))
            .where(e.type_name.in_(HANDOFF_ENDS), e.sender_id.in_(select(pauses.c.sender_id)))
            .group_by(e.sender_id)
            .subquery()
        )
        statement = (
            select(pauses.c.sender_id, pauses.c.seq, e.timestamp, e.data)
            .join(
                events_table,
                (e.sender_id == pauses.c.sender_id) & (e.seq == pauses.c.seq),
            )
            .outerjoin(ends, ends.c.sender_id == pauses.c.sender_id)
            .where(or_(ends.c.seq.is_(None), ends.c.seq < pauses.c.seq))
            .order_by(e.timestamp.asc().nulls_last(), pauses.c.sender_id)
            .limit(limit)
        )
        with self._reachable():
            async with self.engine.connect() as connection:
                rows = (await connection.execute(statement)).all()
        found = []
        for sender_id, seq, timestamp, data in rows:
            event = json.loads(data)
            metadata = event.get("metadata") if isinstance(event, dict) else None
            if isinstance(metadata, dict) and metadata.get("handoff_reason"):
                found.append(OpenHandoff(sender_id, seq, timestamp, event))
        return found
