"""Prometheus metrics: what the dispatcher counts, and `/metrics` on the health server and the
gateway's router."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from schemas.envelopes import UserMessage
from schemas.topics import Topic
from services.common import codec
from services.common.bus import Handler, Publication, RawRecord, RetryPolicy, Subscription
from services.common.dispatch import Dispatcher
from services.common.errors import DependencyUnavailable, PermanentError, RetryableError
from services.common.health import HealthServer
from services.common.metrics import DispatchMetrics
from services.gateway.metrics import metrics_router
from tests.support.clock import FakeClock

CLOCK = FakeClock()
LABELS = {"topic": "nlu", "group": "parley-nlu"}


async def _discard(topic: Topic, message: object) -> None:
    return None


async def _no_sleep(seconds: float) -> None:
    return None


def _record(value: bytes | None = None) -> RawRecord:
    message = UserMessage(conversation_id="c1", text="hello", sent_at=CLOCK.now())
    return RawRecord("parley.nlu", 0, 5, b"c1", value or codec.encode(message))


def _dispatcher(handler: Handler[UserMessage], metrics: DispatchMetrics) -> Dispatcher:
    subscription = Subscription(
        Topic.NLU, "parley-nlu", handler, UserMessage, retry=RetryPolicy(attempts=3)
    )
    return Dispatcher(subscription, _discard, CLOCK, sleep=_no_sleep, metrics=metrics)


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, {**LABELS, **labels})
    return 0.0 if value is None else value


async def test_a_handled_record_is_counted_and_timed() -> None:
    registry = CollectorRegistry()

    async def handler(message: UserMessage) -> Sequence[Publication]:
        return [Publication(Topic.DIALOGUE, message)]

    await _dispatcher(handler, DispatchMetrics(registry)).handle(_record())
    assert _value(registry, "parley_messages_handled_total") == 1
    assert _value(registry, "parley_message_handling_seconds_count") == 1
    assert _value(registry, "parley_messages_in_progress") == 0
    assert _value(registry, "parley_messages_dead_lettered_total", reason="permanent") == 0


async def test_failures_count_each_attempt_and_dead_letters_their_reason() -> None:
    registry = CollectorRegistry()
    metrics = DispatchMetrics(registry)

    async def flaky(message: UserMessage) -> Sequence[Publication]:
        raise RetryableError("triton is down")

    async def broken(message: UserMessage) -> Sequence[Publication]:
        raise PermanentError("bad input")

    await _dispatcher(flaky, metrics).handle(_record())
    await _dispatcher(broken, metrics).handle(_record())
    await _dispatcher(broken, metrics).handle(_record(b"not json"))

    assert _value(registry, "parley_messages_failed_total", kind="retryable") == 3
    assert _value(registry, "parley_messages_failed_total", kind="permanent") == 1
    dead = "parley_messages_dead_lettered_total"
    assert _value(registry, dead, reason="retries_exhausted") == 1
    assert _value(registry, dead, reason="permanent") == 1
    assert _value(registry, dead, reason="undecodable") == 1
    assert _value(registry, "parley_messages_handled_total") == 0


async def test_a_held_message_counts_dependency_failures_then_its_success() -> None:
    registry = CollectorRegistry()
    calls = 0

    async def handler(message: UserMessage) -> Sequence[Publication]:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise DependencyUnavailable("redis is down", delay=0.0)
        return []

    await _dispatcher(handler, DispatchMetrics(registry)).handle(_record())
    assert _value(registry, "parley_messages_failed_total", kind="dependency") == 2
    assert _value(registry, "parley_messages_handled_total") == 1


async def _get(port: int, path: str) -> tuple[str, dict[str, str], str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.decode().partition("\r\n\r\n")
    status, *lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


async def test_the_health_server_serves_metrics_in_the_text_format() -> None:
    registry = CollectorRegistry()
    DispatchMetrics(registry).handled.labels("nlu", "parley-nlu").inc(2)
    server = HealthServer("127.0.0.1", 0, registry=registry)
    await server.start()
    try:
        status, headers, body = await _get(server.port, "/metrics")
        live_status, _, _ = await _get(server.port, "/health/live")
    finally:
        await server.stop()
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"].startswith("text/plain; version=")
    assert 'parley_messages_handled_total{group="parley-nlu",topic="nlu"} 2.0' in body
    assert live_status == "HTTP/1.1 200 OK"


async def test_the_default_registry_has_process_metrics() -> None:
    server = HealthServer("127.0.0.1", 0)
    await server.start()
    try:
        _, _, body = await _get(server.port, "/metrics")
    finally:
        await server.stop()
    assert "process_resident_memory_bytes" in body
    assert "python_info" in body


def test_the_gateway_router_serves_metrics() -> None:
    registry = CollectorRegistry()
    DispatchMetrics(registry).dead_lettered.labels("outbound", "gw", "permanent").inc()
    app = FastAPI()
    app.include_router(metrics_router(registry))
    with TestClient(app) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    line = 'parley_messages_dead_lettered_total{group="gw",reason="permanent",topic="outbound"} 1.0'
    assert line in response.text
    assert "/metrics" not in app.openapi()["paths"]
