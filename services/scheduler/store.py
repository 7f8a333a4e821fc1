"""Persistence: APScheduler's SQLAlchemy job store and Parley's fired ledger, in one database.

The job store is APScheduler's own table (`<prefix>_jobs`, jobs pickled with a textual function
reference and plain-data keyword arguments). `ClaimingJobStore.get_due_jobs` does not hand due
jobs to an executor: it calls back into the service, which claims them with `claim_due`. A claim
moves a due job from the job store into the ledger (`<prefix>_fired`) in one transaction, keyed by
the job's `fire_id`, so exactly one replica ever owns a firing (see the README).
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore  # type: ignore[import-untyped]
from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    Unicode,
    create_engine,
    delete,
    event,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from services.common.errors import PermanentError
from services.scheduler import jobs
from services.scheduler.jobs import JobSpec

logger = logging.getLogger(__name__)

PENDING, PUBLISHED, MISSED = "pending", "published", "missed"
_SYNC_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgresql+asyncpg": "postgresql+psycopg",
    "sqlite+aiosqlite": "sqlite",
}


def sync_url(url: str) -> str:
    """The synchronous twin of a database URL (APScheduler 3's job store is synchronous)."""
    parsed = make_url(url)
    driver = _SYNC_DRIVERS.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def build_engine(url: str) -> Engine:
    """A synchronous engine on `url`; PostgreSQL needs the `psycopg` driver installed."""
    target = sync_url(url)
    try:
        if target.startswith("sqlite"):
            return _immediate_transactions(create_engine(target))
        return create_engine(target, pool_pre_ping=True, pool_size=5, max_overflow=5)
    except ModuleNotFoundError as exc:
        raise PermanentError(
            f"the scheduler's job store needs a synchronous database driver ({exc}); "
            "for PostgreSQL install `psycopg[binary]`"
        ) from exc


def _immediate_transactions(engine: Engine) -> Engine:
    """SQLite takes its write lock at BEGIN: two claims never deadlock upgrading a read lock."""

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@dataclass(frozen=True)
class Claim:
    """A due job this replica now owns; `missed` when it came later than the grace time."""

    spec: JobSpec
    missed: bool


class ClaimingJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """APScheduler's SQLAlchemy job store; due jobs go to `on_due` (which claims them)."""

    def __init__(self, on_due: Callable[[datetime], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_due = on_due

    def get_due_jobs(self, now: datetime) -> list[Any]:
        self._on_due(now)
        return []


class SchedulerStore:
    """The job store and the fired ledger. Synchronous: call it from a thread (or APScheduler)."""

    def __init__(
        self,
        engine: Engine,
        *,
        table_prefix: str = "parley_scheduler",
        on_due: Callable[[datetime], None] | None = None,
    ) -> None:
        self.engine = engine
        self.jobstore = ClaimingJobStore(
            on_due or (lambda now: None), engine=engine, tablename=f"{table_prefix}_jobs"
        )
        self.jobs_t: Table = self.jobstore.jobs_t
        self.fired_t = Table(
            f"{table_prefix}_fired",
            MetaData(),
            Column("fire_id", String(64), primary_key=True),
            Column("job_id", Unicode(191), nullable=False),
            Column("conversation_id", Unicode(512), nullable=False),
            Column("due_at", Float, nullable=False),
            Column("status", String(16), nullable=False),
            Column("claimed_by", String(200), nullable=False),
            Column("claimed_at", Float, nullable=False),
            Column("attempts", Integer, nullable=False, default=1),
            Column("published_at", Float),
            Column("payload", Text, nullable=False),
            Index(f"ix_{table_prefix}_fired_status", "status", "claimed_at"),
        )

    def create_tables(self) -> None:
        """Create both tables if missing (a replica starting at the same time may win the race)."""
        for table in (self.jobs_t, self.fired_t):
            try:
                table.create(self.engine, checkfirst=True)
            except DBAPIError:
                if not inspect(self.engine).has_table(table.name):
                    raise

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # --- firing ---------------------------------------------------------------------------------

    def claim_due(
        self, now: datetime, *, grace_s: float, replica: str, limit: int = 500
    ) -> list[Claim]:
        """Move the jobs due at `now` into the ledger; return those this call won.

        One transaction: select the due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL), insert a
        ledger row per job (`ON CONFLICT DO NOTHING`: a firing already recorded is not won
        again), delete the jobs. A job too late for the grace time is recorded as missed.
        """
        stamp = now.timestamp()
        query = (
            select(self.jobs_t.c.id, self.jobs_t.c.job_state)
            .where(self.jobs_t.c.next_run_time <= stamp)
            .order_by(self.jobs_t.c.next_run_time)
            .limit(limit)
        )
        claims: list[Claim] = []
        with self.engine.begin() as conn:
            rows = conn.execute(_skip_locked(conn, query)).all()
            for row in rows:
                try:
                    spec = _spec(row.job_state)
                except Exception:  # one unreadable job must not block the others
                    logger.exception("scheduler job %s cannot be read: removing it", row.id)
                    continue
                missed = jobs.is_missed(spec.due_at, now, grace_s)
                values = _ledger_row(spec, MISSED if missed else PENDING, replica, stamp)
                insert = _insert(conn, self.fired_t).values(**values).on_conflict_do_nothing()
                # RETURNING, not rowcount: drivers differ on rowcount after ON CONFLICT.
                if conn.execute(insert.returning(self.fired_t.c.fire_id)).first() is not None:
                    claims.append(Claim(spec, missed))
            if rows:
                conn.execute(delete(self.jobs_t).where(self.jobs_t.c.id.in_([r.id for r in rows])))
        return claims

    def take_over_stale(
        self, now: datetime, *, lease_s: float, replica: str, limit: int = 100
    ) -> list[JobSpec]:
        """Claims still unpublished after the lease (their replica died): take them over."""
        fired = self.fired_t
        query = (
            select(fired.c.fire_id, fired.c.attempts, fired.c.payload)
            .where(fired.c.status == PENDING, fired.c.claimed_at < now.timestamp() - lease_s)
            .limit(limit)
        )
        taken: list[JobSpec] = []
        with self.engine.begin() as conn:
            for row in conn.execute(_skip_locked(conn, query)).all():
                moved = conn.execute(
                    update(fired)
                    .where(fired.c.fire_id == row.fire_id, fired.c.attempts == row.attempts)
                    .values(
                        claimed_by=replica, claimed_at=now.timestamp(), attempts=row.attempts + 1
                    )
                )
                if moved.rowcount == 1:
                    taken.append(JobSpec.from_payload(json.loads(row.payload)))
        return taken

    def mark_published(self, fire_id: str, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(self.fired_t)
                .where(self.fired_t.c.fire_id == fire_id)
                .values(status=PUBLISHED, published_at=now.timestamp())
            )

    def prune_fired(self, before: datetime) -> int:
        """Delete the ledger's published rows published before `before`; pending and missed
        rows stay (one is still to publish, the other is a report)."""
        fired = self.fired_t
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(fired).where(
                    fired.c.status == PUBLISHED, fired.c.published_at < before.timestamp()
                )
            )
            return int(result.rowcount)

    def has_fired(self, fire_id: str) -> bool:
        with self.engine.connect() as conn:
            query = select(self.fired_t.c.fire_id).where(self.fired_t.c.fire_id == fire_id)
            return conn.execute(query).first() is not None

    def fired(self, conversation_id: str | None = None) -> list[dict[str, Any]]:
        """Ledger rows (oldest due first), for reports and tests."""
        query = select(self.fired_t).order_by(self.fired_t.c.due_at)
        if conversation_id is not None:
            query = query.where(self.fired_t.c.conversation_id == conversation_id)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    # --- jobs -----------------------------------------------------------------------------------

    def jobs(self, *, job_id: str | None = None, prefix: str | None = None) -> list[JobSpec]:
        """Scheduled jobs: one by id, those whose id starts with `prefix`, or all."""
        query = select(self.jobs_t.c.job_state).order_by(self.jobs_t.c.next_run_time)
        if job_id is not None:
            query = query.where(self.jobs_t.c.id == job_id)
        if prefix is not None:
            # Prefixes are hex digests and colons: nothing LIKE would take for a wildcard.
            query = query.where(self.jobs_t.c.id.like(f"{prefix}%"))
        with self.engine.connect() as conn:
            return [_spec(row.job_state) for row in conn.execute(query)]

    def delete_jobs(self, job_ids: Sequence[str]) -> int:
        if not job_ids:
            return 0
        with self.engine.begin() as conn:
            result = conn.execute(delete(self.jobs_t).where(self.jobs_t.c.id.in_(list(job_ids))))
            return int(result.rowcount)


def _spec(job_state: bytes) -> JobSpec:
    state = pickle.loads(job_state)  # our own table, written by APScheduler
    return JobSpec.from_payload(state["kwargs"])


def _ledger_row(spec: JobSpec, status: str, replica: str, stamp: float) -> dict[str, Any]:
    return {
        "fire_id": spec.fire_id,
        "job_id": spec.job_id,
        "conversation_id": spec.conversation_id,
        "due_at": spec.due_at.timestamp(),
        "status": status,
        "claimed_by": replica,
        "claimed_at": stamp,
        "attempts": 1,
        "payload": json.dumps(spec.payload(), sort_keys=True),
    }


def _insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return pg_insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite_insert(table)
    raise NotImplementedError(f"the scheduler supports PostgreSQL and SQLite, not {conn.dialect}")


def _skip_locked(conn: Connection, query: Select[Any]) -> Select[Any]:
    # SQLite has one writer at a time, so it needs no row locks.
    if conn.dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query
