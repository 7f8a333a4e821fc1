"""The adapters' lifecycles and failures, without a server: they say what is wrong."""

from __future__ import annotations

import re

import pytest

from services.common.errors import DependencyUnavailable
from services.dialogue.store.redis_store import RedisHotStore
from services.dialogue.store.sql_archive import SqlArchive

# Port 1 on loopback refuses connections at once.
NO_REDIS = "redis://parley:secret@127.0.0.1:1/0"
NO_POSTGRES = "postgresql+asyncpg://parley:secret@127.0.0.1:1/parley"


async def test_an_unreachable_redis_fails_start_as_a_dependency() -> None:
    store = RedisHotStore(NO_REDIS, socket_timeout_s=2)
    with pytest.raises(
        DependencyUnavailable, match=re.escape("redis://parley:***@127.0.0.1:1/0")
    ) as raised:
        await store.start()
    assert raised.value.retryable
    assert "secret" not in str(raised.value)
    await store.close()


async def test_the_redis_store_does_nothing_before_start() -> None:
    store = RedisHotStore(NO_REDIS)  # no I/O in the constructor
    assert store.keys_of("alice") == ("parley:tracker:alice:state", "parley:tracker:alice:events")
    with pytest.raises(RuntimeError, match="not started"):
        await store.load("alice")
    with pytest.raises(RuntimeError, match="not started"):
        await store.append("alice", 0, [], {})
    await store.close()


def test_expiry_must_be_positive() -> None:
    with pytest.raises(ValueError, match="expire_s"):
        RedisHotStore(NO_REDIS, expire_s=0)


async def test_an_unreachable_database_fails_as_a_dependency() -> None:
    async with SqlArchive(NO_POSTGRES) as archive:
        with pytest.raises(
            DependencyUnavailable, match=re.escape("parley:***@127.0.0.1:1")
        ) as raised:
            await archive.last_seq("alice")
    assert "secret" not in str(raised.value)
