"""Prometheus metrics every worker exposes at `GET /metrics`.

What the dispatcher counts, per subscription (`topic`, `group`):

- `parley_messages_handled_total`: records whose handler succeeded and whose results were
  published;
- `parley_messages_failed_total{kind}`: handler attempts that raised (`retryable`,
  `dependency`, `permanent`); a record retried three times counts three;
- `parley_messages_dead_lettered_total{reason}`: records sent to the dead-letter topic
  (`undecodable`, `retries_exhausted`, `permanent`);
- `parley_message_handling_seconds`: from decoding to the last publication (retries included);
- `parley_messages_in_progress`: records being handled now.

The process, platform and garbage-collector collectors of `prometheus_client`'s default
registry come with them. Metrics are per process (Prometheus's model): `default_metrics()`
registers one set on that registry; tests build their own on a fresh `CollectorRegistry`.
"""

from __future__ import annotations

import functools
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

FailureKind = Literal["retryable", "dependency", "permanent"]
DeadLetterReason = Literal["undecodable", "retries_exhausted", "permanent"]

# Chat latency: most turns take milliseconds; a held message (dependency down) takes minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
LABELS = ("topic", "group")


class DispatchMetrics:
    """The dispatcher's counters and histogram, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.handled = Counter(
            "parley_messages_handled",
            "Records handled and their results published.",
            LABELS,
            registry=registry,
        )
        self.failed = Counter(
            "parley_messages_failed",
            "Handler attempts that raised, by kind of failure.",
            (*LABELS, "kind"),
            registry=registry,
        )
        self.dead_lettered = Counter(
            "parley_messages_dead_lettered",
            "Records sent to the dead-letter topic, by reason.",
            (*LABELS, "reason"),
            registry=registry,
        )
        self.latency = Histogram(
            "parley_message_handling_seconds",
            "Time from decoding a record to its last publication, retries included.",
            LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "parley_messages_in_progress",
            "Records being handled now.",
            LABELS,
            registry=registry,
        )


@functools.cache
def default_metrics() -> DispatchMetrics:
    """The process's dispatch metrics, on `prometheus_client`'s default registry."""
    return DispatchMetrics(REGISTRY)


def exposition(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """`(body, content type)` of the Prometheus text format for `registry`."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
