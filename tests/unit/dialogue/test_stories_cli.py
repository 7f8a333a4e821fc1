"""`parley test stories`: Rasa's moodbot and formbot test stories pass end to end (formbot with
its real `validate_restaurant_form` run in process), a broken story fails and is written to
`failed_test_stories.yml` with the predicted action, and the policies `parley train` stores in
the model archive predict like freshly trained ones."""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

import pytest
import yaml

from schemas.envelopes import ActionRequest, ActionResult
from schemas.events import ActionExecuted, SlotSet, UserUttered
from schemas.project.loader import load_project
from services.cli import main
from services.common.model_archive import archives
from services.dialogue.engine import Conversation, DialogueEngine, Predictor
from services.dialogue.model import load_ensemble
from services.dialogue.test_stories_cli import StoryTester, add_test_stories
from services.dialogue.worker_cli import DialogueSettings, build_predictor
from services.nlu.archive import ModelArchive
from services.story_backends import in_process_backends, open_actions


def parley_test_stories(*args: str) -> int:
    """`parley test stories ARGS` (registered the way `services/cli.py` does)."""
    parser = argparse.ArgumentParser(prog="parley test")
    add_test_stories(parser.add_subparsers(), in_process_backends())
    parsed = parser.parse_args(["stories", *args])
    return int(parsed.func(parsed, None))


@pytest.fixture
def rasa_examples(shared_dir: Path) -> Path:
    return shared_dir / "examples" / "rasa"


def test_moodbot_stories_pass_with_the_stories_intents(
    rasa_examples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    assert parley_test_stories("--project", str(rasa_examples / "moodbot"), "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "stories: 7/7 correct" in printed
    assert "the stories' own intents" in printed
    assert yaml.safe_load((out / "failed_test_stories.yml").read_text())["stories"] == []
    report = json.loads((out / "story_report.json").read_text())
    assert report["conversation_accuracy"] == {
        "accuracy": 1.0,
        "correct": 7,
        "with_warnings": 0,
        "total": 7,
    }
    assert report["accuracy"] == 1.0
    assert report["utter_greet"]["support"] == 5
    assert report["action_listen"]["support"] > 0  # counted as Rasa counts it
    assert "own intents" in report["parley"]["nlu"]


def test_formbot_stories_pass_with_its_real_actions(
    rasa_examples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    formbot = rasa_examples / "formbot"
    out = tmp_path / "results"
    args = ["--project", str(formbot), "--actions", str(formbot / "actions"), "--out", str(out)]
    assert parley_test_stories(*args) == 0
    assert "stories: 3/3 correct" in capsys.readouterr().out
    report = json.loads((out / "story_report.json").read_text())
    assert report["restaurant_form"]["recall"] == 1.0
    assert report["parley"]["loops_completed_as_written"] == 3


async def test_formbot_runs_validate_restaurant_form(rasa_examples: Path) -> None:
    formbot = rasa_examples / "formbot"
    project = load_project(formbot)
    predictor = build_predictor(project)
    actions = open_actions(formbot / "actions")
    called: list[str] = []

    class Spy:
        async def run(self, request: ActionRequest) -> ActionResult:
            called.append(request.next_action)
            return await actions.run(request)

        def close(self) -> None:
            actions.close()

    try:
        tester = StoryTester(project, predictor, actions=Spy())
        results = await tester.run(project.test_stories)
    finally:
        actions.close()
    assert all(r.passed for r in results)
    assert "validate_restaurant_form" in called
    # the story's `[afghan](cuisine)` reached the form and its validation
    with_value = results[1].events
    assert any(isinstance(e, SlotSet) and e.name == "cuisine" for e in with_value)


def test_a_broken_story_fails_with_the_predicted_action(
    rasa_examples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "moodbot"
    shutil.copytree(rasa_examples / "moodbot", root)
    (root / "tests" / "test_stories.yml").write_text(
        'version: "3.1"\n'
        "stories:\n"
        "- story: greeted well\n"
        "  steps:\n"
        "  - intent: greet\n"
        "  - action: utter_greet\n"
        "- story: wrong answer\n"
        "  steps:\n"
        "  - user: |\n"
        "      hello\n"
        "    intent: greet\n"
        "  - action: utter_greet\n"
        "  - intent: mood_great\n"
        "  - action: utter_goodbye\n"
        "  - intent: goodbye\n"
        "  - action: utter_goodbye\n"
    )
    out = tmp_path / "results"
    assert parley_test_stories("--project", str(root), "--out", str(out)) == 1
    printed = capsys.readouterr().out
    assert "stories: 1/2 correct" in printed
    assert "FAILED wrong answer" in printed
    failed = (out / "failed_test_stories.yml").read_text()
    assert "  - action: utter_goodbye  # predicted: utter_happy\n" in failed
    assert "greeted well" not in failed
    stories = yaml.safe_load(failed)["stories"]
    assert [s["story"] for s in stories] == [f"wrong answer ({root / 'tests/test_stories.yml'})"]
    assert stories[0]["steps"][0] == {"intent": "greet", "user": "hello"}
    report = json.loads((out / "story_report.json").read_text())
    assert report["conversation_accuracy"]["correct"] == 1
    assert report["utter_goodbye"]["recall"] == 0.0
    assert report["utter_happy"]["precision"] == 0.0
    assert report["parley"]["actions_not_reached"] == 2  # utter_goodbye and action_listen
    assert report["parley"]["failed_stories"][0]["comment"] == "predicted: utter_happy"


def test_a_story_needing_a_custom_action_without_a_package_fails_clearly(
    rasa_examples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "formbot"
    shutil.copytree(rasa_examples / "formbot", root, ignore=shutil.ignore_patterns("actions"))
    assert parley_test_stories("--project", str(root), "--out", str(tmp_path / "r")) == 2
    err = capsys.readouterr().err
    assert "needs the custom action 'validate_restaurant_form'" in err
    assert "--actions" in err


RULES = """version: "3.1"
rules:
- rule: greet back
  steps:
  - intent: greet
  - action: utter_greet
- rule: say goodbye
  steps:
  - intent: goodbye
  - action: utter_goodbye
"""
STORIES = """version: "3.1"
stories:
- story: book
  steps:
  - intent: greet
  - action: utter_greet
  - intent: book_flight
    entities:
    - city: Berlin
  - action: utter_booked
"""
TEST_STORIES = """version: "3.1"
stories:
- story: hello and goodbye, parsed by the model
  steps:
  - user: |
      hello
    intent: greet
  - action: utter_greet
  - user: |
      bye bye
    intent: goodbye
  - action: utter_goodbye
"""
DOMAIN_EXTRA = """  utter_goodbye:
  - text: Bye!
  utter_booked:
  - text: Booked.
"""


def _actions(predictor: Predictor, root: Path) -> list[tuple[str | None, str | None, float]]:
    project = load_project(root)
    engine = DialogueEngine(project.domain, predictor, rng=random.Random(0))
    conv = Conversation.new("c", project.domain)
    for turn, (intent, entities) in enumerate(
        [("greet", []), ("book_flight", [{"entity": "city", "value": "Berlin"}]), ("goodbye", [])]
    ):
        now = 1_700_000_000.0 + turn
        parse = {"intent": {"name": intent, "confidence": 1.0}, "entities": entities}
        engine.on_user_message(conv, UserUttered(timestamp=now, parse_data=parse), now)
    return [
        (e.name, e.policy, float(e.confidence or 0))
        for e in conv.events
        if isinstance(e, ActionExecuted)
    ]


def test_train_stores_the_policies_and_the_worker_loads_them(
    tiny_project: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "project"
    shutil.copytree(tiny_project, root)
    first = ModelArchive.read(archives(root / "models")[-1])
    assert first.core is not None  # the tiny project has policies, no stories: trained on none
    assert first.core.metadata["trackers"] == 0
    # stories, rules, responses and a policy added: NLU data unchanged
    (root / "data" / "rules.yml").write_text(RULES)
    (root / "data" / "stories.yml").write_text(STORIES)
    (root / "tests").mkdir()
    (root / "tests" / "test_stories.yml").write_text(TEST_STORIES)
    with (root / "domain.yml").open("a") as handle:
        handle.write(DOMAIN_EXTRA)
    with (root / "config.yml").open("a") as handle:
        handle.write("  - name: MemoizationPolicy\n    max_history: 3\n")
    capsys.readouterr()
    assert main(["train", "--project", str(root), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "NLU not retrained" in printed
    assert "trained the policies (RulePolicy, MemoizationPolicy)" in printed
    second_path = archives(root / "models")[-1]
    second = ModelArchive.read(second_path)
    assert second.nlu.onnx == first.nlu.onnx
    assert second.metadata["nlu"] == first.metadata["nlu"]
    assert second.core is not None
    assert second.core.fingerprint != first.core.fingerprint
    assert second.core.metadata["trackers"] == 3
    assert second.core.metadata["policies"] == ["RulePolicy", "MemoizationPolicy"]
    assert second.core.ensemble == load_ensemble(second_path).to_json()
    # nothing changed: nothing retrained
    assert main(["train", "--project", str(root), "--no-progress"]) == 0
    assert "not retrained" in capsys.readouterr().out
    assert archives(root / "models")[-1] == second_path

    # the worker's predictor from the archive predicts what a freshly trained one does
    project = load_project(root)
    monkeypatch.setenv("PARLEY_DIALOGUE_MODEL", str(root / "models"))
    settings = DialogueSettings(project=root)
    assert settings.model == root / "models"
    loaded = _actions(build_predictor(project, settings.model), root)
    fresh = _actions(build_predictor(project), root)
    assert loaded == fresh
    names = [name for name, _, _ in loaded]
    assert names == [
        "action_session_start",
        "action_listen",
        "utter_greet",
        "action_listen",
        "utter_booked",
        "action_listen",
        "utter_goodbye",
        "action_listen",
    ]

    # and `parley test stories --model` parses the texts with the archive's NLU model
    out = tmp_path / "results"
    assert (
        parley_test_stories("--project", str(root), "--model", str(second_path), "--out", str(out))
        == 0
    )
    report = json.loads((out / "story_report.json").read_text())
    assert report["parley"]["nlu"] == f"user texts parsed by the NLU model of {second_path}"
    assert report["conversation_accuracy"]["correct"] == 1


def test_a_models_folder_without_policies_is_named(tmp_path: Path) -> None:
    from services.common.model_archive import ArchiveError

    with pytest.raises(ArchiveError, match="no model archive"):
        load_ensemble(tmp_path)
