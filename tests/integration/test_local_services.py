"""The real local services from `make services-up` (scripts/services.sh) answer and work.

Redis, PostgreSQL, Triton (with the `parley_health` model) and Kafka, at the URLs from the
environment (`eval "$(scripts/services.sh env)"`) or the scripts' defaults. A service that does not
answer is a failure that says to run `make services-up`, never a skip.
"""

from __future__ import annotations

import asyncio
import os
import urllib.error
import urllib.request
import uuid
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.integration

KAFKA_BOOTSTRAP_SERVERS = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+asyncpg://parley@127.0.0.1:15432/parley")
TRITON_URL = os.environ.get("TRITON_URL", "127.0.0.1:18000")
TRITON_GRPC_URL = os.environ.get("TRITON_GRPC_URL", "127.0.0.1:18001")

HEALTH_MODEL = "parley_health"
TIMEOUT = 10.0


def _not_answering(service: str, where: str, exc: BaseException) -> BaseException:
    """The failure to raise (`from None`) when a service does not answer."""
    return pytest.fail.Exception(
        f"{service} does not answer at {where} ({type(exc).__name__}: {exc}); "
        "run `make services-up` (scripts/services.sh up) first",
        pytrace=False,
    )


def _asyncpg_dsn(url: str) -> str:
    """asyncpg wants postgresql://...; drop a SQLAlchemy driver suffix such as `+asyncpg`."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def _http_base(url: str) -> str:
    return (url if "://" in url else f"http://{url}").rstrip("/")


def _http_get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_redis_ping_set_get() -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=5, socket_timeout=TIMEOUT)
    try:
        try:
            pong = await client.ping()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise _not_answering("Redis", REDIS_URL, exc) from None
        assert pong is True

        key = f"parley:test:{uuid.uuid4().hex}"
        assert await client.set(key, "hello parley", ex=60) is True
        assert await client.get(key) == b"hello parley"
        assert await client.delete(key) == 1
        assert await client.get(key) is None
    finally:
        await client.aclose()


async def test_postgres_version_and_round_trip() -> None:
    import asyncpg

    dsn = _asyncpg_dsn(DATABASE_URL)
    try:
        conn = await asyncpg.connect(dsn, timeout=TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise _not_answering("PostgreSQL", DATABASE_URL, exc) from None
    try:
        version = await conn.fetchval("select version()")
        assert isinstance(version, str)
        assert version.startswith("PostgreSQL ")

        table = f"parley_test_{uuid.uuid4().hex[:12]}"
        await conn.execute(f"create table {table} (id serial primary key, body text not null)")
        try:
            await conn.executemany(
                f"insert into {table} (body) values ($1)", [("hi",), ("hello",), ("hey",)]
            )
            rows = await conn.fetch(f"select id, body from {table} order by id")
            assert [row["body"] for row in rows] == ["hi", "hello", "hey"]
            assert [row["id"] for row in rows] == [1, 2, 3]
        finally:
            await conn.execute(f"drop table {table}")
    finally:
        await conn.close()


async def test_triton_ready_and_infers_over_grpc() -> None:
    from tritonclient.grpc.aio import (
        InferenceServerClient,
        InferenceServerException,
        InferInput,
        InferRequestedOutput,
    )

    ready_url = f"{_http_base(TRITON_URL)}/v2/health/ready"
    try:
        status = await asyncio.to_thread(_http_get_status, ready_url)
    except OSError as exc:
        raise _not_answering("Triton (HTTP)", ready_url, exc) from None
    assert status == 200, f"{ready_url} answered {status}; run `make services-up`"

    client = InferenceServerClient(url=TRITON_GRPC_URL)
    try:
        try:
            server_ready = await asyncio.wait_for(client.is_server_ready(), TIMEOUT)
        except (InferenceServerException, TimeoutError) as exc:
            raise _not_answering("Triton (gRPC)", TRITON_GRPC_URL, exc) from None
        assert server_ready is True
        assert await client.is_model_ready(HEALTH_MODEL) is True, (
            f"model {HEALTH_MODEL} is not loaded; run `make services-up`"
        )

        async def double(values: list[float]) -> np.ndarray[Any, Any]:
            data = np.array([values], dtype=np.float32)
            tensor = InferInput("INPUT0", list(data.shape), "FP32")
            tensor.set_data_from_numpy(data)
            result = await client.infer(
                HEALTH_MODEL, [tensor], outputs=[InferRequestedOutput("OUTPUT0")]
            )
            output = result.as_numpy("OUTPUT0")
            assert output is not None
            return np.asarray(output)

        np.testing.assert_array_equal(
            await double([1.0, 2.5, -3.0]), np.array([[2.0, 5.0, -6.0]], dtype=np.float32)
        )
        # Concurrent requests of several lengths go through the dynamic batcher.
        inputs = [[float(i)] * (1 + i % 4) for i in range(16)]
        outputs = await asyncio.gather(*(double(values) for values in inputs))
        for values, output in zip(inputs, outputs, strict=True):
            np.testing.assert_array_equal(output, np.array([values], dtype=np.float32) * 2)
    finally:
        await client.close()


async def test_kafka_metadata_and_auto_created_topic() -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(
        bootstrap_servers=KAFKA_BOOTSTRAP_SERVERS, request_timeout_ms=int(TIMEOUT * 1000)
    )
    try:
        try:
            await asyncio.wait_for(admin.start(), TIMEOUT)
            cluster = await asyncio.wait_for(admin.describe_cluster(), TIMEOUT)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise _not_answering("Kafka", KAFKA_BOOTSTRAP_SERVERS, exc) from None
        assert cluster["brokers"], cluster

        topic = f"parley-test-{uuid.uuid4().hex[:12]}"
        producer = AIOKafkaProducer(
            bootstrap_servers=KAFKA_BOOTSTRAP_SERVERS, request_timeout_ms=int(TIMEOUT * 1000)
        )
        await asyncio.wait_for(producer.start(), TIMEOUT)
        try:
            metadata = await asyncio.wait_for(
                producer.send_and_wait(topic, b"ping", key=b"health"), TIMEOUT
            )
            assert metadata.topic == topic
            partitions = await producer.partitions_for(topic)
            if KAFKA_BOOTSTRAP_SERVERS == "127.0.0.1:19092":
                # The broker from scripts/services.sh auto-creates topics with num.partitions=4.
                assert len(partitions) == 4, partitions
            else:
                assert partitions
        finally:
            await producer.stop()
        await admin.delete_topics([topic])
    finally:
        await admin.close()
