"""Acceptance: Rasa's example bots and the NLU benchmark data in ../shared load as they are."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from schemas.project.loader import read_nlu_file, read_project
from schemas.project.problems import Level
from schemas.project.validation import validate

# What `parley validate` reports on each bot: all warnings, each a real problem of the bot
# (or a Rasa component Parley does not implement), and no errors.
EXPECTED_WARNINGS: dict[str, dict[str, int]] = {
    "concertbot": {"unsupported-component": 1, "intent-no-examples": 1},
    "e2ebot": {"unsupported-component": 1},
    "formbot": {"unsupported-component": 1, "duplicate-example": 6},
    "knowledgebasebot": {},
    "moodbot": {"no-version": 1},
    "reminderbot": {"unsupported-component": 1, "intent-no-examples": 3},
    "responseselectorbot": {"unsupported-component": 1, "duplicate-example": 1},
    "rules": {
        "unsupported-component": 1,
        "duplicate-example": 6,
        "nlu-intent": 5,
        "nlu-entity": 3,
        "intent-no-examples": 6,
        "unused-response": 2,
    },
}
TEST_STORIES = {"moodbot": 7, "formbot": 3, "e2ebot": 4}


@pytest.mark.parametrize("bot", sorted(EXPECTED_WARNINGS))
def test_example_bot_loads_and_validates(shared_dir: Path, bot: str) -> None:
    project, problems = read_project(shared_dir / "examples" / "rasa" / bot)
    problems += validate(project)
    errors = [p.render() for p in problems if p.level is Level.ERROR]
    assert errors == []
    assert dict(Counter(p.code for p in problems)) == EXPECTED_WARNINGS[bot]
    assert project.nlu.examples
    assert project.stories or project.rules
    assert len(project.test_stories) == TEST_STORIES.get(bot, 0)


def test_every_shared_bot_is_covered(shared_dir: Path) -> None:
    bots = {p.name for p in (shared_dir / "examples" / "rasa").iterdir() if p.is_dir()}
    assert bots == set(EXPECTED_WARNINGS)


@pytest.mark.parametrize(
    ("split", "examples", "intents", "entity_types"),
    [
        ("hwu64/yaml/KFold_1/train.yml", 9960, 64, 54),
        ("hwu64/yaml/KFold_1/test.yml", 1076, 64, 45),
        ("snips/yaml/train.yml", 13084, 7, 39),
        ("snips/yaml/val.yml", 700, 7, 39),
        ("snips/yaml/test.yml", 700, 7, 39),
    ],
)
def test_benchmark_data_loads(
    shared_dir: Path, split: str, examples: int, intents: int, entity_types: int
) -> None:
    data, problems = read_nlu_file(shared_dir / "data" / "nlu" / split)
    assert problems == []
    assert len(data.examples) == examples
    assert len(data.intents()) == intents
    assert len({e.entity for x in data.examples for e in x.entities}) == entity_types
    for example in data.examples:
        for entity in example.entities:
            assert example.text[entity.start : entity.end] == entity.text
