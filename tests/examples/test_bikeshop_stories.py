"""Parley's own bot: every test story passes end to end, custom actions executed."""

from __future__ import annotations

from pathlib import Path

from schemas.project.loader import load_project
from services.dialogue.test_stories_cli import StoryTester
from services.dialogue.worker_cli import build_predictor
from services.story_backends import open_actions

BIKESHOP = Path(__file__).resolve().parents[2] / "examples" / "bikeshop"


async def test_every_bikeshop_test_story_passes() -> None:
    project = load_project(BIKESHOP)
    tester = StoryTester(
        project, build_predictor(project), actions=open_actions(BIKESHOP / "actions")
    )
    results = await tester.run(project.test_stories)
    assert len(results) == 11
    failed = [(r.story.name, r.failed_at, r.comment) for r in results if r.failed_at is not None]
    assert failed == []
