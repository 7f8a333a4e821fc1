"""The analytics queries on the archive's `events` table, for PostgreSQL and SQLite alike.

Each query aggregates in the database and returns a few rows; only turn latencies come back one
per turn, as floats, for exact percentiles on both backends. The JSON in `data` is read only
where a column does not say enough (a confidence, a handoff reason, a rating), and the cheap
`LIKE` prefilter in `_external` spares that parse for almost every user event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import JSON

from services.dialogue.store.sql_archive import events_table

e = events_table.c
DAY_S = 86400
LISTEN = "action_listen"
FALLBACK_ACTIONS = ("action_default_fallback", "action_two_stage_fallback")
NLU_FALLBACK = "nlu_fallback"
EXTERNAL_PREFIX = "EXTERNAL:"
CONFIDENCE_BINS = 10


@dataclass(frozen=True)
class Window:
    """Event timestamps in [since, until); None leaves a side open."""

    since: float | None = None
    until: float | None = None

    def clause(self) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = []
        if self.since is not None:
            parts.append(e.timestamp >= self.since)
        if self.until is not None:
            parts.append(e.timestamp < self.until)
        return and_(true(), *parts)


class Dialect:
    """The few expressions PostgreSQL and SQLite spell differently."""

    def __init__(self, name: str) -> None:
        self.name = name

    def json_text(self, *path: str) -> ColumnElement[Any]:
        if self.name == "postgresql":
            return func.json_extract_path_text(cast(e.data, JSON), *(literal(p) for p in path))
        return func.json_extract(e.data, "$." + ".".join(path))

    def json_number(self, *path: str) -> ColumnElement[float]:
        return cast(self.json_text(*path), Float)

    def json_true(self, *path: str) -> ColumnElement[bool]:
        value = self.json_text(*path)
        return value == ("true" if self.name == "postgresql" else literal(1))

    def floor(self, value: ColumnElement[Any]) -> ColumnElement[int]:
        if self.name == "postgresql":
            return cast(func.floor(value), Integer)
        # SQLite's CAST truncates toward zero: the same as floor for the positive values here.
        return cast(value, Integer)

    def day(self) -> ColumnElement[int]:
        return self.floor(e.timestamp / DAY_S)

    def external(self) -> ColumnElement[bool]:
        """A user event whose text starts with `EXTERNAL:` (a trigger, not a turn)."""
        return and_(
            e.data.like(f"%{EXTERNAL_PREFIX}%"),
            self.json_text("text").like(f"{EXTERNAL_PREFIX}%"),
        )


async def has_events(connection: AsyncConnection) -> bool:
    return (await connection.execute(select(e.id).limit(1))).first() is not None


def _turns(d: Dialect, window: Window) -> ColumnElement[bool]:
    return and_(e.type_name == "user", window.clause(), ~d.external())


async def turns_per_day(
    connection: AsyncConnection, d: Dialect, window: Window
) -> list[tuple[int, int, int]]:
    """(day, turns, conversations with a turn that day)."""
    day = d.day().label("day")
    statement = (
        select(day, func.count(), func.count(e.sender_id.distinct()))
        .where(_turns(d, window))
        .group_by(day)
        .order_by(day)
    )
    return [(int(a), int(b), int(c)) for a, b, c in await connection.execute(statement)]


async def conversations(connection: AsyncConnection, d: Dialect, window: Window) -> int:
    statement = select(func.count(e.sender_id.distinct())).where(_turns(d, window))
    return int((await connection.execute(statement)).scalar() or 0)


async def intents(
    connection: AsyncConnection, d: Dialect, window: Window
) -> list[tuple[str | None, int | None, int, float | None]]:
    """(intent, confidence bin 0..9 or None, turns, sum of confidences)."""
    # OFFSET 0 keeps the subquery: flattened, each use of the confidence would parse the JSON.
    turns = (
        select(e.intent_name, d.json_number("parse_data", "intent", "confidence").label("c"))
        .where(_turns(d, window))
        .offset(0)
        .subquery()
    )
    confidence = turns.c.c
    bin_ = case(
        (confidence >= 1, CONFIDENCE_BINS - 1),
        (confidence < 0, 0),
        else_=d.floor(confidence * CONFIDENCE_BINS),
    ).label("bin")
    statement = select(turns.c.intent_name, bin_, func.count(), func.sum(confidence)).group_by(
        turns.c.intent_name, bin_
    )
    return [
        (name, None if b is None else int(b), int(n), None if s is None else float(s))
        for name, b, n, s in await connection.execute(statement)
    ]


async def actions_per_day(
    connection: AsyncConnection, d: Dialect, window: Window
) -> list[tuple[int, str | None, int]]:
    """(day, action name, action events)."""
    day = d.day().label("day")
    statement = (
        select(day, e.action_name, func.count())
        .where(e.type_name == "action", window.clause())
        .group_by(day, e.action_name)
    )
    return [(int(a), n, int(c)) for a, n, c in await connection.execute(statement)]


async def counts_per_day(
    connection: AsyncConnection, d: Dialect, window: Window, type_names: Sequence[str]
) -> list[tuple[int, str, int]]:
    """(day, type name, events) for events of `type_names`."""
    day = d.day().label("day")
    statement = (
        select(day, e.type_name, func.count())
        .where(e.type_name.in_(type_names), window.clause())
        .group_by(day, e.type_name)
    )
    return [(int(a), t, int(c)) for a, t, c in await connection.execute(statement)]


async def nlu_fallbacks_per_day(
    connection: AsyncConnection, d: Dialect, window: Window
) -> list[tuple[int, int]]:
    day = d.day().label("day")
    statement = (
        select(day, func.count())
        .where(_turns(d, window), e.intent_name == NLU_FALLBACK)
        .group_by(day)
    )
    return [(int(a), int(c)) for a, c in await connection.execute(statement)]


async def handoffs_per_day(
    connection: AsyncConnection, d: Dialect, window: Window
) -> list[tuple[int, str, int]]:
    """(day, reason, handoffs): `pause` events with `metadata.handoff_reason`."""
    day = d.day().label("day")
    reason = d.json_text("metadata", "handoff_reason").label("reason")
    statement = (
        select(day, reason, func.count())
        .where(e.type_name == "pause", window.clause(), e.data.like('%"handoff_reason"%'))
        .group_by(day, reason)
    )
    return [(int(a), r, int(c)) for a, r, c in await connection.execute(statement) if r]


async def failures(
    connection: AsyncConnection, d: Dialect, window: Window
) -> list[tuple[str | None, str | None, int]]:
    """(action name, reason, `action_failed` events)."""
    name, reason = d.json_text("name"), d.json_text("reason")
    statement = (
        select(name, reason, func.count())
        .where(e.type_name == "action_failed", window.clause())
        .group_by(name, reason)
    )
    return [(n, r, int(c)) for n, r, c in await connection.execute(statement)]


async def fired_reminders_per_day(
    connection: AsyncConnection, d: Dialect, window: Window
) -> list[tuple[int, int]]:
    day = d.day().label("day")
    statement = (
        select(day, func.count())
        .where(
            e.type_name == "user",
            window.clause(),
            d.external(),
            d.json_true("metadata", "is_external"),
        )
        .group_by(day)
    )
    return [(int(a), int(c)) for a, c in await connection.execute(statement)]


async def feedback_per_day(
    connection: AsyncConnection, d: Dialect, window: Window
) -> list[tuple[int, str, int, float]]:
    """(day, scale, ratings, sum of ratings) of `user_feedback` events."""
    day = d.day().label("day")
    rating = d.json_number("rating")
    scale = func.coalesce(d.json_text("scale"), "thumbs").label("scale")
    statement = (
        select(day, scale, func.count(rating), func.sum(rating))
        .where(e.type_name == "user_feedback", window.clause())
        .group_by(day, scale)
    )
    return [
        (int(a), str(s), int(n), float(t or 0))
        for a, s, n, t in await connection.execute(statement)
    ]


def _latency_statement(d: Dialect, window: Window) -> Select[Any]:
    is_listen = and_(e.type_name == "action", e.action_name == LISTEN)
    # Numbered from the end, each `action_listen` opens a group holding the user events
    # before it (back to the previous listen): the group's listen is each one's next listen.
    group = (
        func.count(case((is_listen, 1)))
        .over(partition_by=e.sender_id, order_by=e.seq.desc(), rows=(None, 0))
        .label("grp")
    )
    external = case((and_(e.type_name == "user", d.external()), 1), else_=0).label("external")
    marked = (
        select(e.sender_id, e.type_name, e.timestamp, external, group)
        .where(or_(e.type_name == "user", is_listen), window.clause())
        .subquery()
    )
    listen_at = (
        func.max(case((marked.c.type_name == "action", marked.c.timestamp)))
        .over(partition_by=(marked.c.sender_id, marked.c.grp))
        .label("listen_at")
    )
    paired = select(marked.c.type_name, marked.c.external, marked.c.timestamp, listen_at).subquery()
    return select(paired.c.timestamp, paired.c.listen_at - paired.c.timestamp).where(
        paired.c.type_name == "user",
        paired.c.external == 0,
        paired.c.listen_at.is_not(None),
        paired.c.timestamp.is_not(None),
    )


async def latencies(
    connection: AsyncConnection, d: Dialect, window: Window
) -> list[tuple[float, float]]:
    """(turn timestamp, seconds to the next `action_listen`) per turn that has one."""
    if d.name == "postgresql":
        # The pairing sorts every user and listen event: in memory, not in temporary files.
        # SET LOCAL ends with this connection's transaction.
        await connection.execute(text("SET LOCAL work_mem = '64MB'"))
    result = await connection.execute(_latency_statement(d, window))
    return [(float(t), float(s)) for t, s in result]
