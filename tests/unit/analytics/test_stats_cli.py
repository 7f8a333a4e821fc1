"""`parley stats` end to end on a seeded SQLite archive: text, JSON, plots and errors."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.cli import build_parser
from services.dialogue.analytics_plots import PLOTS
from services.dialogue.store.migrate import migrate
from services.dialogue.store.sql_archive import SqlArchive
from services.platform.stats_cli import Usage, main, parse_when
from tests.unit.analytics.seed import DAY1, seed


async def _seeded(url: str, with_events: bool) -> None:
    await migrate(url)
    if with_events:
        async with SqlArchive(url) as archive:
            await seed(archive)


@pytest.fixture
def seeded_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'seeded.db'}"
    asyncio.run(_seeded(url, True))
    return url


def test_text_report(seeded_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--database-url", seeded_url]) == 0
    out = capsys.readouterr().out
    assert "conversations 2   turns 6   latency p50 2.000s  p95 3.800s" in out
    assert "fallback rate 33.3% (nlu_fallback 16.7%)   handoff rate 100.0%" in out
    assert "action failure rate 33.3%" in out
    assert "2026-11-20      1      3       1       1        1       1" in out
    assert "action_pay          1         1  100.0%  timeout 1" in out
    assert "Reminders: scheduled 1, fired 1, cancelled 1" in out
    assert "Feedback: stars 2 (average 4.50), thumbs 1 (average -1.00)" in out


def test_json_report_and_window(seeded_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--database-url", seeded_url, "--json", "--since", "2026-11-21"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["conversations"], report["turns"]) == (1, 3)
    assert report["since"] == "2026-11-21T00:00:00+00:00"
    assert [d["day"] for d in report["days"]] == ["2026-11-21"]
    assert report["handoffs"] == {"requested": 1}
    assert report["latency"]["p50"] == pytest.approx(3.0)
    assert report["feedback"]["stars"] == {"count": 2, "average": 4.5}


def test_plots_are_png_files(
    seeded_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "plots"
    assert main(["stats", "--database-url", seeded_url, "--plots", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == sorted(PLOTS)
    for name in PLOTS:
        data = (folder / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(data) > 5000
    assert f"wrote {folder / 'latency.png'}" in capsys.readouterr().err


def test_empty_archive_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    asyncio.run(_seeded(url, False))
    assert main(["stats", "--database-url", url]) == 1
    assert "holds no conversations yet" in capsys.readouterr().err
    assert main(["stats", "--database-url", url, "--since", "7d"]) == 0
    assert "no conversations in this window" in capsys.readouterr().out


def test_database_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = f"sqlite+aiosqlite:///{tmp_path / 'bare.db'}"
    assert main(["stats", "--database-url", bare]) == 1
    assert "run `parley db upgrade`" in capsys.readouterr().err
    down = "postgresql+asyncpg://nobody@127.0.0.1:1/none"
    assert main(["stats", "--database-url", down]) == 1
    assert "does not answer" in capsys.readouterr().err
    assert main(["stats", "--database-url", bare, "--since", "yesterday"]) == 2
    assert "is not a date" in capsys.readouterr().err


def test_parse_when() -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert parse_when("7d", now) == datetime(2026, 11, 18, 12, tzinfo=UTC).timestamp()
    assert parse_when("30m", now) == now.timestamp() - 1800
    assert parse_when("2026-11-21", now) == DAY1
    assert parse_when("2026-11-21T01:00:00+01:00", now) == DAY1
    assert parse_when("2026-11-21T00:00:00", now) == DAY1
    with pytest.raises(Usage):
        parse_when("soon", now)


def test_registered_on_the_parley_cli() -> None:
    parser = build_parser()
    stats = parser.parse_args(["stats", "--json", "--since", "7d"])
    assert (stats.json, stats.since) == (True, "7d")
    export = parser.parse_args(["export", "conversations", "--conversation", "a"])
    assert (export.conversation, export.format) == ("a", "jsonl")
    triton = parser.parse_args(["export", "triton", "--model", "m.tar.gz", "--out", "repo"])
    assert triton.export_target == "triton"
