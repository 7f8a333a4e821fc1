"""The hot store on Redis: per conversation, a list of event JSON and a hash of seq and snapshot.

Keys: `<prefix>:tracker:<cid>:events` (LIST of event JSON strings, in seq order) and
`<prefix>:tracker:<cid>:state` (HASH: `seq`, `snapshot` JSON). Unlike Rasa's RedisTrackerStore,
which reads, merges and rewrites the whole history on every turn, an append is one Lua script
(EVALSHA) that pushes the new events and sets the state: its cost does not depend on the length of
the conversation. Both keys get the same TTL when `expire_s` is set.

A conversation whose list length differs from its `seq` (one key evicted or deleted by hand)
counts as not stored: `load` returns None, a rebuild from the archive replaces it, and an append
at seq 0 starts it afresh.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.errors import DependencyUnavailable
from services.dialogue.store.ports import StoredTracker, VersionConflict

# Lua's unpack() is bounded by the C stack (~8000 values): push long batches in slices.
_PUSH_SLICE = 1000

# KEYS: state, events. ARGV: expected seq, snapshot JSON, TTL seconds (0: none), event JSON...
# Reads only the hash and LLEN (O(1)); never LRANGE or rewrites the list, except to drop the
# leftover list of an inconsistent conversation that is being started afresh.
_APPEND = """
local stored = redis.call('HGET', KEYS[1], 'seq')
local length = redis.call('LLEN', KEYS[2])
local seq = 0
if stored and tonumber(stored) == length then
  seq = length
end
if seq ~= tonumber(ARGV[1]) then
  return {0, seq}
end
if seq == 0 and length > 0 then
  redis.call('DEL', KEYS[2])
end
local i = 4
while i <= #ARGV do
  local last = math.min(i + SLICE - 1, #ARGV)
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, last))
  i = last + 1
end
local new_seq = seq + #ARGV - 3
redis.call('HSET', KEYS[1], 'seq', new_seq, 'snapshot', ARGV[2])
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return {1, new_seq}
""".replace("SLICE", str(_PUSH_SLICE))


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _safe(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc}"))


@contextmanager
def _reachable(url: str) -> Iterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise DependencyUnavailable(f"Redis at {_safe(url)} does not answer: {exc}") from exc


class RedisHotStore:
    """`HotStore` on Redis. `async with RedisHotStore(url) as store: ...`; no I/O before that."""

    def __init__(
        self,
        redis_url: str,
        key_prefix: str = "parley",
        expire_s: int | None = None,
        *,
        socket_timeout_s: float = 5.0,
    ) -> None:
        if expire_s is not None and expire_s <= 0:
            raise ValueError(f"expire_s must be positive or None, not {expire_s}")
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.expire_s = expire_s
        self.socket_timeout_s = socket_timeout_s
        self._client: Redis | None = None
        self._append: AsyncScript | None = None

    async def start(self) -> None:
        """Connect and check that Redis answers."""
        client = Redis.from_url(
            self.redis_url,
            decode_responses=True,
            socket_timeout=self.socket_timeout_s,
            socket_connect_timeout=self.socket_timeout_s,
        )
        try:
            with _reachable(self.redis_url):
                await client.ping()
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        self._append = client.register_script(_APPEND)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client, self._append = self._client, None, None
            await client.aclose()

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

    def keys_of(self, conversation_id: str) -> tuple[str, str]:
        """The conversation's `(state, events)` keys."""
        base = f"{self.key_prefix}:tracker:{conversation_id}"
        return f"{base}:state", f"{base}:events"

    @property
    def _redis(self) -> Redis:
        if self._client is None:
            raise RuntimeError("RedisHotStore is not started: use `async with` or start()")
        return self._client

    async def load(self, conversation_id: str, start: int = 0) -> StoredTracker | None:
        if start < 0:
            raise ValueError(f"start must be >= 0, not {start}")
        state, events = self.keys_of(conversation_id)
        with _reachable(self.redis_url):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hmget(state, ["seq", "snapshot"])
                pipe.llen(events)
                pipe.lrange(events, start, -1)
                (seq, snapshot), length, raw = await pipe.execute()
        if seq is None or snapshot is None or int(seq) != length:
            return None
        return StoredTracker(
            conversation_id, length, json.loads(snapshot), [json.loads(e) for e in raw]
        )

    async def load_snapshot(self, conversation_id: str) -> tuple[int, dict[str, Any]] | None:
        state, events = self.keys_of(conversation_id)
        with _reachable(self.redis_url):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hmget(state, ["seq", "snapshot"])
                pipe.llen(events)
                (seq, snapshot), length = await pipe.execute()
        if seq is None or snapshot is None or int(seq) != length:
            return None
        return length, json.loads(snapshot)

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
        if self._append is None:
            raise RuntimeError("RedisHotStore is not started: use `async with` or start()")
        args: list[str | int] = [expected_seq, _dumps(snapshot), self.expire_s or 0]
        args.extend(_dumps(event) for event in events)
        with _reachable(self.redis_url):
            applied, seq = await self._append(keys=self.keys_of(conversation_id), args=args)
        if not applied:
            raise VersionConflict(conversation_id, expected_seq, int(seq))
        return int(seq)

    async def replace(self, conversation_id: str, stored: StoredTracker) -> None:
        if len(stored.events) != stored.seq:
            raise ValueError(
                f"replace needs all {stored.seq} events of {conversation_id!r}, "
                f"got {len(stored.events)}"
            )
        state, events = self.keys_of(conversation_id)
        encoded = [_dumps(event) for event in stored.events]
        with _reachable(self.redis_url):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(state, events)
                for i in range(0, len(encoded), _PUSH_SLICE):
                    pipe.rpush(events, *encoded[i : i + _PUSH_SLICE])
                pipe.hset(state, mapping={"seq": stored.seq, "snapshot": _dumps(stored.snapshot)})
                if self.expire_s is not None:
                    pipe.expire(state, self.expire_s)
                    pipe.expire(events, self.expire_s)
                await pipe.execute()

    async def delete(self, conversation_id: str) -> None:
        with _reachable(self.redis_url):
            await self._redis.delete(*self.keys_of(conversation_id))
