"""The tracker store against the real Redis and PostgreSQL from `make services-up`.

Redis keys live under a prefix of the test's own (removed afterwards, found with SCAN); each
PostgreSQL test gets a database of its own (`parley_test_<hex>`, dropped afterwards). A service
that does not answer is a failure that says to run `make services-up`, never a skip.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from services.dialogue.store import StoredTracker, VersionConflict, load_or_rebuild
from services.dialogue.store.migrate import current_revision, head_revision, migrate
from services.dialogue.store.redis_store import RedisHotStore
from services.dialogue.store.sql_archive import SqlArchive, events_table, metadata
from tests.unit.dialogue_store.fakes import bot, count_snapshot, turn, user

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+asyncpg://parley@127.0.0.1:15432/parley")
TIMEOUT = 10.0
T0 = 1_700_000_000.0


def _not_answering(service: str, where: str, exc: BaseException) -> BaseException:
    return pytest.fail.Exception(
        f"{service} does not answer at {where} ({type(exc).__name__}: {exc}); "
        "run `make services-up` (scripts/services.sh up) first",
        pytrace=False,
    )


def _asyncpg_dsn(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


async def _admin() -> Any:
    try:
        return await asyncpg.connect(_asyncpg_dsn(DATABASE_URL), timeout=TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise _not_answering("PostgreSQL", DATABASE_URL, exc) from None


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = Redis.from_url(
        REDIS_URL, decode_responses=True, socket_connect_timeout=5, socket_timeout=TIMEOUT
    )
    try:
        try:
            await client.ping()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise _not_answering("Redis", REDIS_URL, exc) from None
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def key_prefix(redis_client: Redis) -> AsyncIterator[str]:
    prefix = f"parley-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    keys = [key async for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await redis_client.delete(*keys)


@pytest.fixture
async def hot(key_prefix: str) -> AsyncIterator[RedisHotStore]:
    async with RedisHotStore(REDIS_URL, key_prefix=key_prefix) as store:
        yield store


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """The URL of a fresh, empty database of this test's own."""
    name = f"parley_test_{uuid.uuid4().hex[:12]}"
    admin = await _admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield make_url(DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await _admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def pg_archive(pg_url: str) -> AsyncIterator[SqlArchive]:
    await migrate(pg_url)
    async with SqlArchive(pg_url) as archive:
        yield archive


@asynccontextmanager
async def redis_user(
    admin: Redis, name: str, key_pattern: str | None, commands: list[str]
) -> AsyncIterator[str]:
    """A Redis user allowed only `commands` (ACLs bind Lua scripts too); yields its URL."""
    password = uuid.uuid4().hex
    await admin.acl_setuser(
        name,
        enabled=True,
        reset=True,
        passwords=[f"+{password}"],
        keys=[key_pattern] if key_pattern else None,
        categories=["+@connection"],
        commands=commands,
    )
    parts = urlsplit(REDIS_URL)
    netloc = f"{name}:{password}@{parts.hostname}:{parts.port or 6379}"
    try:
        yield urlunsplit(parts._replace(netloc=netloc))
    finally:
        await admin.acl_deluser(name)


# Redis: the hot store


async def test_append_load_and_version_check(hot: RedisHotStore) -> None:
    assert await hot.load("alice") is None
    assert await hot.load_snapshot("alice") is None
    assert await hot.events("alice") == []

    first = [user("Grüß dich 👋", "greet", T0), bot("hello", T0 + 1)]
    assert await hot.append("alice", 0, first, {"turn": 1}) == 2
    second = turn(2, T0 + 2)
    assert await hot.append("alice", 2, second, {"turn": 2, "nested": {"a": [1, None]}}) == 6

    snapshot = {"turn": 2, "nested": {"a": [1, None]}}
    assert await hot.load("alice") == StoredTracker("alice", 6, snapshot, first + second)
    assert await hot.load("alice", 4) == StoredTracker("alice", 6, snapshot, second[2:])
    assert await hot.load("alice", 99) == StoredTracker("alice", 6, snapshot, [])
    assert await hot.load_snapshot("alice") == (6, snapshot)
    assert await hot.events("alice", 5) == second[3:]

    with pytest.raises(VersionConflict) as conflict:
        await hot.append("alice", 2, [bot("late", T0 + 9)], {"turn": "late"})
    assert (conflict.value.expected_seq, conflict.value.actual_seq) == (2, 6)
    assert conflict.value.retryable
    with pytest.raises(VersionConflict):
        await hot.append("alice", 0, [bot("new?", T0 + 9)], {})
    assert await hot.load_snapshot("alice") == (6, snapshot)

    assert await hot.append("alice", 6, [], {"turn": 3}) == 6  # a snapshot-only update
    assert await hot.load_snapshot("alice") == (6, {"turn": 3})

    await hot.delete("alice")
    assert await hot.load("alice") is None
    await hot.delete("alice")


async def test_keys_follow_the_documented_layout(hot: RedisHotStore, redis_client: Redis) -> None:
    await hot.append("a:b", 0, [bot("hi", T0)], {"k": 1})
    state, events = f"{hot.key_prefix}:tracker:a:b:state", f"{hot.key_prefix}:tracker:a:b:events"
    assert hot.keys_of("a:b") == (state, events)
    assert await redis_client.type(state) == "hash"
    assert await redis_client.type(events) == "list"
    assert await redis_client.hget(state, "seq") == "1"


async def test_concurrent_appenders_exactly_one_wins(key_prefix: str, redis_client: Redis) -> None:
    async with (
        RedisHotStore(REDIS_URL, key_prefix=key_prefix) as a,
        RedisHotStore(REDIS_URL, key_prefix=key_prefix) as b,
    ):
        seq = 0
        for round_ in range(25):
            results = await asyncio.gather(
                a.append("alice", seq, [bot(f"a{round_}", T0)], {"by": "a", "round": round_}),
                b.append(
                    "alice",
                    seq,
                    [bot(f"b{round_}", T0), bot("b", T0)],
                    {"by": "b", "round": round_},
                ),
                return_exceptions=True,
            )
            won = [r for r in results if isinstance(r, int)]
            lost = [r for r in results if isinstance(r, VersionConflict)]
            assert (len(won), len(lost)) == (1, 1), results
            seq = won[0]
            assert lost[0].actual_seq in (seq, seq - 1, seq - 2)
            state, events = a.keys_of("alice")
            assert await redis_client.llen(events) == seq
            assert int(await redis_client.hget(state, "seq") or -1) == seq
            loaded = await a.load("alice")
            assert loaded is not None
            assert loaded.snapshot["round"] == round_
            winner = loaded.snapshot["by"]
            assert loaded.events[-1]["text"] == (f"a{round_}" if winner == "a" else "b")


async def test_append_is_one_evalsha_whatever_the_history(
    hot: RedisHotStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = [bot(f"line {i}", T0 + i) for i in range(10)]
    long = [bot(f"line {i}", T0 + i) for i in range(10_000)]
    await hot.replace("short", StoredTracker("short", 10, {}, short))
    await hot.replace("long", StoredTracker("long", 10_000, {}, long))
    await hot.append("warm-up", 0, [bot("hi", T0)], {})  # loads the script into Redis

    commands: list[str] = []
    execute: Callable[..., Awaitable[Any]] = Redis.execute_command

    async def recording(self: Redis, *args: Any, **options: Any) -> Any:
        commands.append(str(args[0]))
        return await execute(self, *args, **options)

    monkeypatch.setattr(Redis, "execute_command", recording)
    assert await hot.append("short", 10, turn(1, T0), {"n": 14}) == 14
    assert commands == ["EVALSHA"]
    commands.clear()
    assert await hot.append("long", 10_000, turn(1, T0), {"n": 10_004}) == 10_004
    assert commands == ["EVALSHA"]


async def test_the_append_script_never_reads_or_rewrites_the_list(
    hot: RedisHotStore, redis_client: Redis, key_prefix: str
) -> None:
    """Run append as a Redis user who may not LRANGE, DEL or LSET: ACLs bind scripts too."""
    history = [bot(f"line {i}", T0 + i) for i in range(10_000)]
    await hot.replace("alice", StoredTracker("alice", 10_000, {}, history))
    allowed = ["+evalsha", "+script|load", "+hget", "+hset", "+llen", "+rpush"]
    async with (
        redis_user(redis_client, f"{key_prefix}-user", f"{key_prefix}:*", allowed) as url,
        RedisHotStore(url, key_prefix=key_prefix) as limited,
    ):
        assert await limited.append("alice", 10_000, turn(1, T0), {"n": 1}) == 10_004
        with pytest.raises(ResponseError):  # the restriction bites: loading needs LRANGE
            await limited.load("alice")
    loaded = await hot.load("alice", 10_000)
    assert loaded is not None
    assert (loaded.seq, loaded.snapshot, loaded.events) == (10_004, {"n": 1}, turn(1, T0))


async def test_expiry_sets_a_ttl_on_both_keys(key_prefix: str, redis_client: Redis) -> None:
    async with (
        RedisHotStore(REDIS_URL, key_prefix=key_prefix, expire_s=1) as expiring,
        RedisHotStore(REDIS_URL, key_prefix=key_prefix) as lasting,
    ):
        await expiring.append("alice", 0, turn(0, T0), {})
        for key in expiring.keys_of("alice"):
            assert 0 < await redis_client.pttl(key) <= 1000

        # Each append restarts the clock.
        for key in expiring.keys_of("alice"):
            await redis_client.pexpire(key, 100_000)
        await expiring.append("alice", 4, turn(1, T0), {})
        for key in expiring.keys_of("alice"):
            assert 0 < await redis_client.pttl(key) <= 1000

        await expiring.replace("bob", StoredTracker("bob", 1, {}, [bot("hi", T0)]))
        for key in expiring.keys_of("bob"):
            assert 0 < await redis_client.pttl(key) <= 1000

        await lasting.append("carol", 0, turn(0, T0), {})
        for key in lasting.keys_of("carol"):
            assert await redis_client.pttl(key) == -1


async def test_loads_are_consistent_while_appending(key_prefix: str) -> None:
    async with (
        RedisHotStore(REDIS_URL, key_prefix=key_prefix) as writer,
        RedisHotStore(REDIS_URL, key_prefix=key_prefix) as reader,
    ):
        done = asyncio.Event()
        seen: list[int] = []

        async def write() -> list[dict[str, Any]]:
            history: list[dict[str, Any]] = []
            for n in range(150):
                events = [bot(f"{n}.{i}", T0 + n) for i in range(1 + n % 3)]
                await writer.append(
                    "alice", len(history), events, {"seq": len(history) + len(events)}
                )
                history += events
            done.set()
            return history

        async def read() -> list[StoredTracker]:
            loads: list[StoredTracker] = []
            while not done.is_set():
                stored = await reader.load("alice")
                if stored is not None:
                    assert len(stored.events) == stored.seq == stored.snapshot["seq"]
                    loads.append(stored)
                    seen.append(stored.seq)
                tail = await reader.load("alice", 10)
                if tail is not None:
                    assert len(tail.events) == max(tail.seq - 10, 0)
                snapshot = await reader.load_snapshot("alice")
                if snapshot is not None:
                    assert snapshot[0] == snapshot[1]["seq"]
            return loads

        history, loads = await asyncio.gather(write(), read())
        assert loads, "the reader never saw the conversation"
        for stored in loads:
            assert stored.events == history[: stored.seq]
        assert len(set(seen)) > 1, "the reader saw a single version: no interleaving happened"


async def test_a_half_lost_conversation_counts_as_not_stored(
    hot: RedisHotStore, redis_client: Redis
) -> None:
    state, events = hot.keys_of("alice")
    await hot.append("alice", 0, turn(0, T0), {"n": 4})
    await redis_client.delete(events)  # say, evicted
    assert await hot.load("alice") is None
    assert await hot.load_snapshot("alice") is None
    with pytest.raises(VersionConflict):
        await hot.append("alice", 4, turn(1, T0), {})
    assert await hot.append("alice", 0, turn(2, T0), {"n": 4}) == 4

    await redis_client.delete(state)
    assert await hot.load("alice") is None
    assert await hot.append("alice", 0, [bot("again", T0)], {"n": 1}) == 1
    assert await hot.load("alice") == StoredTracker("alice", 1, {"n": 1}, [bot("again", T0)])


async def test_replace_overwrites_and_checks_its_argument(hot: RedisHotStore) -> None:
    await hot.append("alice", 0, turn(0, T0), {"old": True})
    rebuilt = StoredTracker("alice", 2, {"new": True}, [bot("x", T0), bot("y", T0)])
    await hot.replace("alice", rebuilt)
    assert await hot.load("alice") == rebuilt
    assert await hot.append("alice", 2, [bot("z", T0)], {}) == 3
    with pytest.raises(ValueError, match="needs all 3 events"):
        await hot.replace("alice", StoredTracker("alice", 3, {}, []))


async def test_a_restricted_user_sees_clear_permission_errors(
    redis_client: Redis, key_prefix: str
) -> None:
    async with (
        redis_user(redis_client, f"{key_prefix}-nobody", None, []) as url,
        RedisHotStore(url, key_prefix=key_prefix) as store,
    ):
        with pytest.raises(NoPermissionError):
            await store.append("alice", 0, [bot("hi", T0)], {})


# PostgreSQL: the archive, migrations and the rebuild


async def test_rebuild_from_postgres_after_redis_lost_the_keys(
    hot: RedisHotStore, pg_archive: SqlArchive, redis_client: Redis
) -> None:
    history: list[dict[str, Any]] = []
    for n in range(5):
        events = turn(n, T0 + n)
        seq = await hot.append("alice", len(history), events, count_snapshot(history + events))
        await pg_archive.write("alice", seq - len(events), events)
        history += events
    await redis_client.delete(*hot.keys_of("alice"))  # as if expired

    stored = await load_or_rebuild(hot, pg_archive, "alice", count_snapshot)
    expected = StoredTracker("alice", 20, count_snapshot(history), history)
    assert stored == expected
    assert await hot.load("alice") == expected
    assert await redis_client.llen(hot.keys_of("alice")[1]) == 20

    # Redis lost the last turn (a failover), the archive kept it: rebuilt again.
    await hot.replace("alice", StoredTracker("alice", 16, {"stale": True}, history[:16]))
    assert await load_or_rebuild(hot, pg_archive, "alice", count_snapshot) == expected
    assert await hot.append("alice", 20, turn(9, T0 + 9), {}) == 24


async def test_archive_writes_are_idempotent_on_postgres(pg_archive: SqlArchive) -> None:
    events = [e for n in range(5) for e in turn(n, T0 + n)]
    await pg_archive.write("alice", 8, events[8:])
    await asyncio.gather(*(pg_archive.write("alice", 0, events) for _ in range(5)))
    await pg_archive.write("alice", 4, events[4:12])

    assert await pg_archive.read("alice") == events
    assert await pg_archive.read("alice", 18) == events[18:]
    assert await pg_archive.last_seq("alice") == 19
    assert await pg_archive.last_seq("bob") == -1
    async with pg_archive.engine.connect() as connection:
        count = select(func.count()).select_from(events_table)
        assert (await connection.execute(count)).scalar() == 20


async def test_console_queries_on_postgres(pg_archive: SqlArchive) -> None:
    await pg_archive.write("alice", 0, [user("I want PIZZA", "order", T0), bot("ok", T0 + 1)])
    await pg_archive.write("bob", 0, [user("a 100% café", "chat", T0 + 5), bot("Pizza?", T0 + 6)])

    summaries = await pg_archive.conversations()
    assert [(s.sender_id, s.events, s.latest_intent) for s in summaries] == [
        ("bob", 2, "chat"),
        ("alice", 2, "order"),
    ]
    assert [s.sender_id for s in await pg_archive.conversations(since=T0 + 3)] == ["bob"]
    assert [(h.sender_id, h.seq) for h in await pg_archive.search("pizza")] == [
        ("bob", 1),
        ("alice", 0),
    ]
    assert [h.text for h in await pg_archive.search("100% CAF")] == ["a 100% café"]
    assert await pg_archive.search("order") == []


async def test_migrations_upgrade_twice_is_a_no_op_on_postgres(pg_url: str) -> None:
    assert await current_revision(pg_url) is None
    await migrate(pg_url)
    async with SqlArchive(pg_url) as archive:
        await archive.write("alice", 0, [bot("kept", T0)])
    await migrate(pg_url)

    assert await current_revision(pg_url) == head_revision()

    def inspect_sync(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    engine = create_async_engine(pg_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(inspect_sync) == []
            versions = await connection.execute(text("SELECT version_num FROM alembic_version"))
            assert versions.scalars().all() == [head_revision()]
            rows = await connection.execute(select(events_table.c.data))
            assert len(rows.all()) == 1
    finally:
        await engine.dispose()


async def test_replicas_migrating_at_once_do_not_collide(pg_url: str) -> None:
    await asyncio.gather(*(migrate(pg_url) for _ in range(3)))
    assert await current_revision(pg_url) == head_revision()
