"""`parley stats` (analytics from the archive) and `parley export conversations`.

Both read the dialogue archive's `events` table directly (SQLAlchemy), no worker needed.
`python -m services.platform.stats_cli stats ...` runs the same commands without loading the
rest of the `parley` CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from services.common.clock import Clock, SystemClock
from services.common.errors import ParleyError
from services.dialogue.store.settings import StoreSettings

if TYPE_CHECKING:
    from services.dialogue.analytics import StatsReport

__all__ = ["add_stats_commands", "main", "parse_when", "render_text"]

RELATIVE = re.compile(r"^(\d+)([dhm])$")
UNITS = {"d": "days", "h": "hours", "m": "minutes"}


class Usage(ParleyError):
    """A wrong option: exit 2."""


def parse_when(value: str, now: datetime) -> float:
    """`7d` / `24h` / `30m` before `now`, an ISO date (UTC midnight) or an ISO date-time
    (UTC unless it names its offset), as a Unix timestamp."""
    relative = RELATIVE.match(value.strip())
    if relative:
        delta = timedelta(**{UNITS[relative.group(2)]: int(relative.group(1))})
        return (now - delta).timestamp()
    try:
        if len(value.strip()) == 10:
            day = date.fromisoformat(value.strip())
            return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Usage(
            f"{value!r} is not a date (2026-11-01), a date-time or an age (7d, 24h, 30m)"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _url(args: argparse.Namespace) -> str:
    url: str | None = args.database_url or StoreSettings().database_url
    if not url:
        raise Usage("no database: pass --database-url or set DATABASE_URL")
    try:
        make_url(url)
    except ArgumentError as exc:
        raise Usage(f"--database-url: {exc}") from exc
    return url


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _window(args: argparse.Namespace, clock: Clock) -> tuple[float | None, float | None]:
    now = clock.now()
    since = parse_when(args.since, now) if args.since else None
    until = parse_when(args.until, now) if args.until else None
    if since is not None and until is not None and until <= since:
        raise Usage("--until must be later than --since")
    return since, until


def _guarded(run: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        return asyncio.run(run())
    except Usage as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ParleyError, SQLAlchemyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _fmt(value: float | int | None, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "%":
        return f"{100 * value:.1f}%"
    if kind == "s":
        return f"{value:.3f}s"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    cells = [list(header), *[list(r) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        pairs = enumerate(zip(row, widths, strict=True))
        padded = (c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs)
        lines.append("  ".join(padded).rstrip())
    return [lines[0], "  ".join("-" * w for w in widths), *lines[1:]]


def render_text(report: StatsReport) -> str:
    """The report as the readable tables `parley stats` prints."""
    r = report
    window = f"{r.as_dict()['since'] or 'the beginning'} to {r.as_dict()['until'] or 'now'}"
    out = [
        f"Parley stats, {window} (days in UTC)",
        "",
        f"conversations {r.conversations}   turns {r.turns}   "
        f"latency p50 {_fmt(r.latency.p50, 's')}  p95 {_fmt(r.latency.p95, 's')}",
        f"fallback rate {_fmt(r.fallback_rate, '%')}"
        f" (nlu_fallback {_fmt(r.nlu_fallback_rate, '%')})"
        f"   handoff rate {_fmt(r.handoff_rate, '%')}"
        f"   action failure rate {_fmt(r.action_failure_rate, '%')}",
        "",
    ]
    day_rows = []
    for d in r.days:
        thumbs, stars = d.feedback.get("thumbs", {}), d.feedback.get("stars", {})
        day_rows.append(
            [
                d.day,
                str(d.conversations),
                str(d.turns),
                str(d.fallbacks),
                str(d.nlu_fallbacks),
                str(d.handoffs),
                str(d.action_failures),
                f"{d.reminders_scheduled}/{d.reminders_fired}/{d.reminders_cancelled}",
                f"{thumbs.get('count', 0)}:{_fmt(thumbs.get('average'))}",
                f"{stars.get('count', 0)}:{_fmt(stars.get('average'))}",
                _fmt(d.latency_p50, "s"),
                _fmt(d.latency_p95, "s"),
            ]
        )
    out += _table(
        [
            "day",
            "convs",
            "turns",
            "fallbk",
            "nlu_fb",
            "handoff",
            "failed",
            "remind set/fired/cancel",
            "thumbs n:avg",
            "stars n:avg",
            "p50",
            "p95",
        ],
        day_rows,
    )
    out += ["", "Intents (confidence: mean, and turns per tenth from 0.0-0.1 to 0.9-1.0)"]
    out += _table(
        ["intent", "turns", "mean", "histogram"],
        [
            [
                i.name or "(none)",
                str(i.turns),
                _fmt(i.mean_confidence),
                " ".join(str(n) for n in i.histogram),
            ]
            for i in r.intents
        ],
    )
    out += ["", "Fallbacks"]
    out += _table(["kind", "count"], [[k, str(v)] for k, v in r.fallbacks.items()])
    out += ["", "Handoffs by reason"]
    out += _table(
        ["reason", "count", "per conversation"],
        [
            [k, str(v), _fmt(v / r.conversations if r.conversations else None, "%")]
            for k, v in r.handoffs.items()
        ],
    )
    out += ["", "Custom actions"]
    out += _table(
        ["action", "attempts", "failures", "rate", "reasons"],
        [
            [
                a.name,
                str(a.attempts),
                str(a.failures),
                _fmt(a.failure_rate, "%"),
                ", ".join(f"{k} {v}" for k, v in sorted(a.failure_reasons.items())),
            ]
            for a in r.actions
        ],
    )
    rem = r.reminders
    out += [
        "",
        f"Reminders: scheduled {rem['scheduled']}, fired {rem['fired']}, "
        f"cancelled {rem['cancelled']}",
    ]
    feedback = ", ".join(
        f"{scale} {v['count']} (average {_fmt(v['average'])})" for scale, v in r.feedback.items()
    )
    out.append(f"Feedback: {feedback or 'none'}")
    return "\n".join(out) + "\n"


def cmd_stats(args: argparse.Namespace, settings: object = None, clock: Clock | None = None) -> int:
    """Print the report (text or `--json`), and write PNGs with `--plots DIR`."""

    async def run() -> int:
        from services.dialogue.analytics import archive_stats
        from services.dialogue.store.sql_archive import SqlArchive

        url = _url(args)
        since, until = _window(args, clock or SystemClock())
        async with SqlArchive(url, pool_size=3) as archive:
            report = await archive_stats(archive.engine, since, until)
        if report.empty and since is None and until is None:
            print(f"error: the archive at {_safe(url)} holds no conversations yet", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(report.as_dict(), indent=2))
        else:
            if report.empty:
                print("no conversations in this window")
            print(render_text(report), end="")
        if args.plots:
            from services.dialogue.analytics_plots import write_plots

            for path in write_plots(report, Path(args.plots)):
                print(f"wrote {path}", file=sys.stderr)
        return 0

    return _guarded(run)


def cmd_export(
    args: argparse.Namespace, settings: object = None, clock: Clock | None = None
) -> int:
    """Write one conversation (JSON lines or a test story) or every event in a window."""

    async def run() -> int:
        from services.dialogue.analytics_export import (
            archived_events,
            jsonl_line,
            records,
            story_yaml,
        )
        from services.dialogue.store.sql_archive import SqlArchive

        url = _url(args)
        if args.all and args.format == "story":
            raise Usage("--format story exports one conversation: pass --conversation ID")
        since, until = _window(args, clock or SystemClock())
        async with SqlArchive(url, pool_size=1) as archive:
            with _output(args.out) as out:
                if args.all:
                    async for sender_id, event in records(archive.engine, since, until):
                        out.write(jsonl_line(sender_id, event))
                    return 0
                events = await archived_events(archive.engine, args.conversation)
                if not events:
                    raise Usage(f"no conversation {args.conversation!r} in {_safe(url)}")
                if args.format == "story":
                    out.write(story_yaml(args.conversation, events))
                else:
                    out.writelines(jsonl_line(args.conversation, e) for e in events)
        return 0

    return _guarded(run)


@contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if not path or path == "-":
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8") as file:
        yield file


def _database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="the archive's SQLAlchemy async URL (default: $DATABASE_URL)",
    )
    parser.add_argument("--since", metavar="WHEN", help="2026-11-01, an ISO date-time, or 7d/24h")
    parser.add_argument("--until", metavar="WHEN", help="same forms as --since (exclusive)")


def _subparsers(parser: argparse.ArgumentParser) -> Any:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="export_target", metavar="TARGET", required=True)


def add_stats_commands(commands: Any) -> None:
    """Register `stats`, and `export conversations` beside the NLU's `export triton`."""
    stats: argparse.ArgumentParser = commands.add_parser(
        "stats",
        help="analytics from the dialogue archive: turns, intents, fallbacks, handoffs, ...",
        description="Conversations, turns, intents, fallback/handoff/failure rates, reminders, "
        "feedback and turn latency from the archive (docs/analytics.md).",
    )
    _database_option(stats)
    stats.add_argument("--json", action="store_true", help="print the report as JSON")
    stats.add_argument("--plots", metavar="DIR", help="also write PNG charts into DIR")
    stats.set_defaults(func=cmd_stats)

    export = commands.choices.get("export") or commands.add_parser(
        "export", help="export models or conversations"
    )
    conversations: argparse.ArgumentParser = _subparsers(export).add_parser(
        "conversations",
        help="archived conversations as JSON lines of Rasa event records, or a test story",
    )
    _database_option(conversations)
    which = conversations.add_mutually_exclusive_group(required=True)
    which.add_argument("--conversation", metavar="ID", help="one conversation (sender_id)")
    which.add_argument("--all", action="store_true", help="every event in --since/--until")
    conversations.add_argument("--format", choices=("jsonl", "story"), default="jsonl")
    conversations.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    conversations.set_defaults(func=cmd_export)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.platform.stats_cli")
    add_stats_commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
