"""Analytics from the SQL archive: what `parley stats` and the console's stats page show.

Definitions (docs/analytics.md): a turn is a `user` event whose text does not start with
`EXTERNAL:`; its latency runs to the next `action_listen` of the conversation; fallbacks are
`action_default_fallback` / `action_two_stage_fallback` actions and `nlu_fallback` turns;
handoffs are `pause` events with `metadata.handoff_reason`; the failure rate is `action_failed`
events over custom action attempts. Days are UTC days of the event timestamps.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.errors import DependencyUnavailable, PermanentError
from services.dialogue import analytics_sql as q

__all__ = [
    "LATENCY_EDGES",
    "ActionStats",
    "ArchiveNotReady",
    "DayStats",
    "IntentStats",
    "LatencyStats",
    "StatsReport",
    "archive_stats",
    "is_custom_action",
    "percentile",
]

# builtin_actions.BUILTINS and the actions Rasa runs without recording them as custom ones; a
# literal, so `parley stats` does not import the dialogue engine (a test keeps it in step).
BUILTIN_ACTIONS = frozenset(
    {
        "action_listen",
        "action_unlikely_intent",
        "action_restart",
        "action_session_start",
        "action_default_fallback",
        "action_deactivate_loop",
        "action_back",
        "action_default_ask_affirmation",
        "action_default_ask_rephrase",
        "action_two_stage_fallback",
        "action_handoff",
        "action_extract_slots",
        "action_revert_fallback_events",
        "action_send_text",
    }
)
LATENCY_EDGES = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Lower edges (s) of the latency histogram's bins; the last bin is open."""
T = TypeVar("T")


class ArchiveNotReady(PermanentError):
    """The archive has no `events` table (run `parley db upgrade`)."""


def is_custom_action(name: str | None) -> bool:
    """An action the action server runs: not `action_listen`, a response or a built-in."""
    return bool(name) and not name.startswith("utter_") and name not in BUILTIN_ACTIONS  # type: ignore[union-attr]


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default) of sorted values."""
    if not ordered:
        return None
    rank = fraction * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class DayStats:
    day: str
    conversations: int = 0
    turns: int = 0
    fallbacks: int = 0
    nlu_fallbacks: int = 0
    handoffs: int = 0
    custom_actions: int = 0
    action_failures: int = 0
    reminders_scheduled: int = 0
    reminders_cancelled: int = 0
    reminders_fired: int = 0
    feedback: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    latency_p50: float | None = None
    latency_p95: float | None = None


@dataclass
class IntentStats:
    name: str | None
    turns: int
    mean_confidence: float | None
    histogram: list[int]


@dataclass
class ActionStats:
    name: str
    attempts: int
    failures: int
    failure_rate: float | None
    failure_reasons: dict[str, int]


@dataclass
class LatencyStats:
    turns: int
    p50: float | None
    p95: float | None
    mean: float | None
    max: float | None
    histogram: list[int]
    edges: list[float] = field(default_factory=lambda: list(LATENCY_EDGES))


@dataclass
class StatsReport:
    """Everything `parley stats` reports; `as_dict()` is the JSON (CLI `--json`, console API)."""

    since: float | None
    until: float | None
    conversations: int
    turns: int
    days: list[DayStats]
    intents: list[IntentStats]
    confidence_histogram: list[int]
    fallbacks: dict[str, int]
    fallback_rate: float | None
    nlu_fallback_rate: float | None
    handoffs: dict[str, int]
    handoff_rate: float | None
    actions: list[ActionStats]
    action_attempts: int
    action_failures: int
    action_failure_rate: float | None
    reminders: dict[str, int]
    feedback: dict[str, dict[str, float | int | None]]
    latency: LatencyStats

    @property
    def empty(self) -> bool:
        return not self.days

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("since", "until"):
            value = out[key]
            out[key] = None if value is None else _iso(value)
        return out


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _day_name(day: int) -> str:
    return datetime.fromtimestamp(day * q.DAY_S, UTC).date().isoformat()


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _feedback(count: int, total: float) -> dict[str, float | int | None]:
    return {"count": count, "average": total / count if count else None}


def _latency(values: list[float]) -> LatencyStats:
    values.sort()
    histogram = [0] * len(LATENCY_EDGES)
    for value in values:
        index = len(LATENCY_EDGES) - 1
        while index > 0 and value < LATENCY_EDGES[index]:
            index -= 1
        histogram[index] += 1
    return LatencyStats(
        turns=len(values),
        p50=percentile(values, 0.5),
        p95=percentile(values, 0.95),
        mean=sum(values) / len(values) if values else None,
        max=values[-1] if values else None,
        histogram=histogram,
    )


async def archive_stats(
    engine: AsyncEngine, since: float | None = None, until: float | None = None
) -> StatsReport:
    """The report for events with `since <= timestamp < until` (either side may be open).

    Raises `DependencyUnavailable` when the database does not answer and `ArchiveNotReady`
    when it has no `events` table.
    """
    window = q.Window(since, until)
    d = q.Dialect(engine.dialect.name)
    try:
        # Three connections at once: the latency pairing, the turn scans, and the rest.
        # Each finishes (and returns its connection) before an error is raised.
        results = await asyncio.gather(
            _on(engine, q.latencies, d, window),
            _on(engine, _turn_queries, d, window),
            _on(engine, _other_queries, d, window),
            return_exceptions=True,
        )
        latencies, (turns, intents), rest = (
            _settled(results[0]),
            _settled(results[1]),
            _settled(results[2]),
        )
    except ProgrammingError as exc:
        raise ArchiveNotReady(
            f"the archive has no events table ({exc.orig}): run `parley db upgrade`"
        ) from exc
    except OperationalError as exc:
        if "no such table" in str(exc):
            raise ArchiveNotReady(
                "the archive has no events table: run `parley db upgrade`"
            ) from exc
        raise DependencyUnavailable(f"the archive database does not answer: {exc}") from exc
    except (InterfaceError, OSError) as exc:
        raise DependencyUnavailable(f"the archive database does not answer: {exc}") from exc
    conversations, actions, nlu_fallbacks, handoffs, failures, counts, fired, feedback = rest
    return _assemble(
        since,
        until,
        turns=turns,
        conversations=conversations,
        intents=intents,
        actions=actions,
        nlu_fallbacks=nlu_fallbacks,
        handoffs=handoffs,
        failures=failures,
        counts=counts,
        fired=fired,
        feedback=feedback,
        latencies=latencies,
    )


def _settled(result: T | BaseException) -> T:
    if isinstance(result, BaseException):
        raise result
    return result


async def _on(
    engine: AsyncEngine,
    queries: Callable[[AsyncConnection, q.Dialect, q.Window], Awaitable[T]],
    d: q.Dialect,
    window: q.Window,
) -> T:
    async with engine.connect() as connection:
        return await queries(connection, d, window)


async def _turn_queries(
    connection: AsyncConnection, d: q.Dialect, window: q.Window
) -> tuple[list[tuple[int, int, int]], list[tuple[str | None, int | None, int, float | None]]]:
    return await q.turns_per_day(connection, d, window), await q.intents(connection, d, window)


async def _other_queries(connection: AsyncConnection, d: q.Dialect, window: q.Window) -> Any:
    return (
        await q.conversations(connection, d, window),
        await q.actions_per_day(connection, d, window),
        await q.nlu_fallbacks_per_day(connection, d, window),
        await q.handoffs_per_day(connection, d, window),
        await q.failures(connection, d, window),
        await q.counts_per_day(
            connection, d, window, ("reminder", "cancel_reminder", "action_failed")
        ),
        await q.fired_reminders_per_day(connection, d, window),
        await q.feedback_per_day(connection, d, window),
    )


def _assemble(
    since: float | None,
    until: float | None,
    *,
    turns: list[tuple[int, int, int]],
    conversations: int,
    intents: list[tuple[str | None, int | None, int, float | None]],
    actions: list[tuple[int, str | None, int]],
    nlu_fallbacks: list[tuple[int, int]],
    handoffs: list[tuple[int, str, int]],
    failures: list[tuple[str | None, str | None, int]],
    counts: list[tuple[int, str, int]],
    fired: list[tuple[int, int]],
    feedback: list[tuple[int, str, int, float]],
    latencies: list[tuple[float, float]],
) -> StatsReport:
    days: dict[int, DayStats] = {}

    def day(number: int) -> DayStats:
        if number not in days:
            days[number] = DayStats(_day_name(number))
        return days[number]

    for number, turn_count, conversation_count in turns:
        day(number).turns, day(number).conversations = turn_count, conversation_count

    fallbacks: dict[str, int] = defaultdict(int)
    attempts: dict[str, int] = defaultdict(int)
    for number, name, count in actions:
        if name in q.FALLBACK_ACTIONS:
            fallbacks[name] += count
            day(number).fallbacks += count
        elif name is not None and is_custom_action(name):
            attempts[name] += count
            day(number).custom_actions += count
    for number, count in nlu_fallbacks:
        fallbacks[q.NLU_FALLBACK] += count
        day(number).nlu_fallbacks += count

    by_reason: dict[str, int] = defaultdict(int)
    for number, reason, count in handoffs:
        by_reason[reason] += count
        day(number).handoffs += count

    failed: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for failed_name, failed_reason, count in failures:
        failed[failed_name or "?"][failed_reason or "failed"] += count
    reminders = {"scheduled": 0, "cancelled": 0, "fired": 0}
    for number, type_name, count in counts:
        if type_name == "reminder":
            reminders["scheduled"] += count
            day(number).reminders_scheduled += count
        elif type_name == "cancel_reminder":
            reminders["cancelled"] += count
            day(number).reminders_cancelled += count
        else:  # action_failed: attempts too
            day(number).action_failures += count
            day(number).custom_actions += count
    for number, count in fired:
        reminders["fired"] += count
        day(number).reminders_fired += count

    scales: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for number, scale, count, total in feedback:
        day(number).feedback[scale] = _feedback(count, total)
        scales[scale][0] += count
        scales[scale][1] += total

    per_day: dict[int, list[float]] = defaultdict(list)
    for timestamp, seconds in latencies:
        per_day[math.floor(timestamp / q.DAY_S)].append(seconds)
    for number, values in per_day.items():
        values.sort()
        day(number).latency_p50 = percentile(values, 0.5)
        day(number).latency_p95 = percentile(values, 0.95)

    action_rows = []
    for name in sorted(set(attempts) | set(failed)):
        failures_of = sum(failed[name].values()) if name in failed else 0
        tried = attempts.get(name, 0) + failures_of
        action_rows.append(
            ActionStats(
                name, tried, failures_of, _rate(failures_of, tried), dict(failed.get(name, {}))
            )
        )
    action_rows.sort(key=lambda a: (-a.attempts, a.name))
    total_attempts = sum(a.attempts for a in action_rows)
    total_failures = sum(a.failures for a in action_rows)

    intent_rows: dict[str | None, IntentStats] = {}
    sums: dict[str | None, float] = defaultdict(float)
    rated: dict[str | None, int] = defaultdict(int)
    overall = [0] * q.CONFIDENCE_BINS
    for intent, bin_, count, confidences in intents:
        row = intent_rows.setdefault(intent, IntentStats(intent, 0, None, [0] * q.CONFIDENCE_BINS))
        row.turns += count
        if bin_ is not None:
            row.histogram[bin_] += count
            overall[bin_] += count
            rated[intent] += count
            sums[intent] += confidences or 0.0
    for intent, row in intent_rows.items():
        row.mean_confidence = sums[intent] / rated[intent] if rated[intent] else None
    turn_total = sum(t for _, t, _ in turns)
    return StatsReport(
        since=since,
        until=until,
        conversations=conversations,
        turns=turn_total,
        days=[days[n] for n in sorted(days)],
        intents=sorted(intent_rows.values(), key=lambda i: (-i.turns, i.name or "")),
        confidence_histogram=overall,
        fallbacks=dict(sorted(fallbacks.items())),
        fallback_rate=_rate(sum(fallbacks[a] for a in q.FALLBACK_ACTIONS), turn_total),
        nlu_fallback_rate=_rate(fallbacks[q.NLU_FALLBACK], turn_total),
        handoffs=dict(sorted(by_reason.items())),
        handoff_rate=_rate(sum(by_reason.values()), conversations),
        actions=action_rows,
        action_attempts=total_attempts,
        action_failures=total_failures,
        action_failure_rate=_rate(total_failures, total_attempts),
        reminders=reminders,
        feedback={scale: _feedback(int(c), t) for scale, (c, t) in sorted(scales.items())},
        latency=_latency([seconds for _, seconds in latencies]),
    )
