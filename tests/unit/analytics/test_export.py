"""`parley export conversations`: JSON lines round trip, and a test story the loader reads."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from schemas.events import parse_event_record
from schemas.project.loader import read_project
from schemas.project.stories import ActionStep, LoopStep, SlotStep, Story, UserStep
from services.dialogue.analytics_export import annotate, story_yaml
from services.dialogue.store.migrate import migrate
from services.dialogue.store.sql_archive import SqlArchive
from services.platform.stats_cli import main
from tests.unit.analytics.seed import (
    DAY0,
    action,
    bot,
    conversation_a,
    conversation_b,
    event,
    seed,
    user,
)

BIKESHOP = Path(__file__).resolve().parents[3] / "examples" / "bikeshop"


async def _seeded(url: str) -> None:
    await migrate(url)
    async with SqlArchive(url) as archive:
        await seed(archive)


@pytest.fixture
def seeded_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'seeded.db'}"
    asyncio.run(_seeded(url))
    return url


def _test_story(tmp_path: Path, text: str, name: str) -> Story:
    project = tmp_path / "bikeshop"
    shutil.copytree(BIKESHOP, project, ignore=shutil.ignore_patterns("models"))
    path = project / "tests" / "test_exported.yml"
    path.write_text(text, encoding="utf-8")
    loaded, problems = read_project(project)
    assert [p for p in problems if p.source.file == path] == []
    return next(s for s in loaded.test_stories if s.name == name)


def test_jsonl_round_trip(seeded_url: str, tmp_path: Path) -> None:
    out = tmp_path / "a.jsonl"
    assert (
        main(
            [
                "export",
                "conversations",
                "--database-url",
                seeded_url,
                "--conversation",
                "a",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    lines = out.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert records == [{"sender_id": "a", **e} for e in conversation_a()]
    assert [parse_event_record(r)[1].event for r in records] == [
        e["event"] for e in conversation_a()
    ]


def test_jsonl_of_a_window(seeded_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "export",
                "conversations",
                "--database-url",
                seeded_url,
                "--all",
                "--since",
                "2026-11-21",
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records == [{"sender_id": "b", **e} for e in conversation_b()]


def test_unknown_conversation_and_story_of_all(
    seeded_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["export", "conversations", "--database-url", seeded_url, "--conversation", "zz"]) == 2
    )
    assert "no conversation 'zz'" in capsys.readouterr().err
    assert (
        main(
            ["export", "conversations", "--database-url", seeded_url, "--all", "--format", "story"]
        )
        == 2
    )
    assert "--format story exports one conversation" in capsys.readouterr().err


def test_seeded_conversation_as_a_test_story(
    seeded_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "export",
        "conversations",
        "--database-url",
        seeded_url,
        "--conversation",
        "a",
        "--format",
        "story",
    ]
    assert main(args) == 0
    story = _test_story(tmp_path, capsys.readouterr().out, "conversation a")
    assert story.kind == "test"
    steps = [
        (s.text, s.intent) if isinstance(s, UserStep) else s.name
        for s in story.steps
        if isinstance(s, UserStep | ActionStep)
    ]
    assert steps == [
        ("hi", "greet"),
        "utter_greet",
        ("book a table for two", "book"),
        "action_book",
        ("blah", "nlu_fallback"),
        "action_default_fallback",
        (None, "remind"),
    ]
    booking = story.steps[2]
    assert isinstance(booking, UserStep)
    assert [(a.entity, a.value) for a in booking.annotations] == [("people", "two")]


def _form_conversation(t: float = DAY0) -> list[dict[str, Any]]:
    bike = {"entity": "bike_type", "value": "mountain", "start": 3, "end": 6}
    problem = {"entity": "problem", "value": "flat tyre", "start": 13, "end": 22}
    day = {"entity": "day", "value": "saturday", "start": 0, "end": 8, "role": "start"}
    return [
        action(t, "action_session_start"),
        event(t, "session_started"),
        action(t, "action_listen"),
        user(t + 1, "hello", "greet", 0.99),
        action(t + 2, "utter_greet"),
        bot(t + 2, "Hi!"),
        action(t + 2, "action_listen"),
        user(t + 3, "oops", "deny", 0.9),
        action(t + 4, "utter_goodbye"),
        event(t + 5, "rewind"),
        user(t + 6, "my mtb has a flat tyre", "book_repair", 0.93, [bike, problem]),
        action(t + 7, "repair_form"),
        event(t + 7, "active_loop", name="repair_form"),
        event(t + 7, "slot", name="requested_slot", value="day"),
        action(t + 7, "action_listen"),
        user(t + 8, "saturday please", "inform", 0.8, [day]),
        action(t + 9, "repair_form"),
        event(t + 9, "active_loop", name=None),
        event(t + 9, "slot", name="requested_slot", value=None),
        action(t + 10, "action_book_repair"),
        event(t + 10, "slot", name="booking_ref", value={"ref": "R-1", "n": 2}),
        event(t + 10, "action_failed", name="action_notify", reason="failed", error="x"),
        event(t + 11, "user_feedback", rating=5, scale="stars"),
        event(t + 12, "pause", metadata={"handoff_reason": "requested"}),
        action(t + 12, "action_listen"),
    ]


def test_story_steps_load_as_written(tmp_path: Path) -> None:
    text = story_yaml("c1", _form_conversation(), name="repair from production")
    story = _test_story(tmp_path, text, "repair from production")
    kinds = [type(s).__name__ for s in story.steps]
    assert kinds == [
        "UserStep",
        "ActionStep",
        "UserStep",
        "ActionStep",
        "LoopStep",
        "SlotStep",
        "UserStep",
        "ActionStep",
        "LoopStep",
        "SlotStep",
        "ActionStep",
        "SlotStep",
    ]
    repair = story.steps[2]
    assert isinstance(repair, UserStep)
    assert (repair.text, repair.intent) == ("my mtb has a flat tyre", "book_repair")
    assert [(a.entity, a.value) for a in repair.annotations] == [
        ("bike_type", "mountain"),
        ("problem", "flat tyre"),
    ]
    saturday = story.steps[6]
    assert isinstance(saturday, UserStep)
    assert [(a.entity, a.value, a.role) for a in saturday.annotations] == [
        ("day", "saturday", "start")
    ]
    loop_on, loop_off = story.steps[4], story.steps[8]
    assert isinstance(loop_on, LoopStep)
    assert isinstance(loop_off, LoopStep)
    assert (loop_on.name, loop_off.name) == ("repair_form", None)
    slots = [s.slots for s in story.steps if isinstance(s, SlotStep)]
    assert slots == [
        (("requested_slot", "day"),),
        (("requested_slot", None),),
        (("booking_ref", {"ref": "R-1", "n": 2}),),
    ]


def test_annotate() -> None:
    assert annotate("my mtb", [{"entity": "bike", "value": "mountain", "start": 3, "end": 6}]) == (
        'my [mtb]{"entity": "bike", "value": "mountain"}'
    )
    assert annotate("at 5", [{"entity": "time", "value": "5", "start": 3, "end": 4}]) == (
        "at [5](time)"
    )
    out_of_range = [{"entity": "x", "value": "y", "start": 3, "end": 40}]
    assert annotate("abc", out_of_range) == "abc"
