"""The report on a seeded SQLite archive: every count, rate and latency is known."""

from __future__ import annotations

import pytest

from services.common.errors import DependencyUnavailable
from services.dialogue.analytics import (
    BUILTIN_ACTIONS,
    ArchiveNotReady,
    archive_stats,
    is_custom_action,
    percentile,
)
from services.dialogue.builtin_actions import BUILTINS
from services.dialogue.store.sql_archive import SqlArchive
from tests.unit.analytics.seed import DAY1


async def test_totals_and_days(archive: SqlArchive) -> None:
    report = await archive_stats(archive.engine)
    assert (report.conversations, report.turns) == (2, 6)
    assert [(d.day, d.conversations, d.turns) for d in report.days] == [
        ("2026-11-20", 1, 3),
        ("2026-11-21", 1, 3),
    ]
    assert [(d.fallbacks, d.nlu_fallbacks) for d in report.days] == [(1, 1), (1, 0)]
    assert [d.handoffs for d in report.days] == [1, 1]


async def test_intents_and_confidences(archive: SqlArchive) -> None:
    report = await archive_stats(archive.engine)
    by_name = {i.name: i for i in report.intents}
    assert list(by_name) == ["greet", "book", "nlu_fallback"]
    assert by_name["greet"].turns == 3
    assert by_name["greet"].mean_confidence == pytest.approx((0.95 + 1.0 + 0.4) / 3)
    assert by_name["greet"].histogram == [0, 0, 0, 0, 1, 0, 0, 0, 0, 2]
    assert by_name["book"].histogram == [0, 0, 0, 0, 0, 1, 0, 0, 1, 0]
    assert by_name["nlu_fallback"].mean_confidence == pytest.approx(0.2)
    assert report.confidence_histogram == [0, 0, 1, 0, 1, 1, 0, 0, 1, 2]


async def test_fallbacks_handoffs_failures(archive: SqlArchive) -> None:
    report = await archive_stats(archive.engine)
    assert report.fallbacks == {
        "action_default_fallback": 1,
        "action_two_stage_fallback": 1,
        "nlu_fallback": 1,
    }
    assert report.fallback_rate == pytest.approx(2 / 6)
    assert report.nlu_fallback_rate == pytest.approx(1 / 6)
    assert report.handoffs == {"fallback": 1, "requested": 1}
    assert report.handoff_rate == pytest.approx(1.0)
    assert [(a.name, a.attempts, a.failures) for a in report.actions] == [
        ("action_book", 2, 0),
        ("action_pay", 1, 1),
    ]
    assert report.actions[1].failure_reasons == {"timeout": 1}
    assert (report.action_attempts, report.action_failures) == (3, 1)
    assert report.action_failure_rate == pytest.approx(1 / 3)


async def test_reminders_and_feedback(archive: SqlArchive) -> None:
    report = await archive_stats(archive.engine)
    assert report.reminders == {"scheduled": 1, "cancelled": 1, "fired": 1}
    assert report.feedback == {
        "stars": {"count": 2, "average": 4.5},
        "thumbs": {"count": 1, "average": -1.0},
    }
    assert report.days[0].feedback == {"thumbs": {"count": 1, "average": -1.0}}
    assert report.days[1].feedback == {"stars": {"count": 2, "average": 4.5}}


async def test_latencies(archive: SqlArchive) -> None:
    report = await archive_stats(archive.engine)
    # a: 1.0, 3.0, 0.5 (the EXTERNAL: trigger is not a turn); b: 2.0, 4.0 and a last turn
    # that has no action_listen yet.
    assert report.latency.turns == 5
    assert report.latency.p50 == pytest.approx(2.0)
    assert report.latency.p95 == pytest.approx(3.8)
    assert report.latency.mean == pytest.approx(2.1)
    assert report.latency.max == pytest.approx(4.0)
    assert report.latency.histogram == [0, 0, 0, 1, 1, 3, 0, 0, 0, 0]
    assert [d.latency_p50 for d in report.days] == pytest.approx([1.0, 3.0])
    assert [d.latency_p95 for d in report.days] == pytest.approx([2.8, 3.9])


async def test_window(archive: SqlArchive) -> None:
    report = await archive_stats(archive.engine, since=DAY1)
    assert (report.conversations, report.turns) == (1, 3)
    assert report.handoffs == {"requested": 1}
    assert report.reminders == {"scheduled": 0, "cancelled": 1, "fired": 0}
    before = await archive_stats(archive.engine, until=DAY1)
    assert (before.conversations, before.turns, before.latency.turns) == (1, 3, 3)
    assert before.as_dict()["until"] == "2026-11-21T00:00:00+00:00"


async def test_empty_archive(empty_archive: SqlArchive) -> None:
    report = await archive_stats(empty_archive.engine)
    assert report.empty
    assert (report.conversations, report.turns, report.latency.p50) == (0, 0, None)
    assert report.action_failure_rate is None


async def test_unmigrated_and_unreachable(sqlite_url: str, tmp_path: object) -> None:
    async with SqlArchive(sqlite_url) as bare:
        with pytest.raises(ArchiveNotReady, match="parley db upgrade"):
            await archive_stats(bare.engine)
    async with SqlArchive("postgresql+asyncpg://nobody@127.0.0.1:1/none") as missing:
        with pytest.raises(DependencyUnavailable):
            await archive_stats(missing.engine)


def test_custom_actions_and_percentiles() -> None:
    assert is_custom_action("action_book")
    assert not any(
        is_custom_action(n) for n in ("action_listen", "utter_greet", "action_handoff", None)
    )
    assert percentile([], 0.5) is None
    assert percentile([1.0], 0.95) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)


def test_every_built_in_action_is_known() -> None:
    assert set(BUILTINS) <= BUILTIN_ACTIONS
