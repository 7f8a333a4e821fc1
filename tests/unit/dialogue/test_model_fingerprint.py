"""The dialogue policies' fingerprint: what they are trained on, not where it was read from."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from schemas.project.loader import load_project
from services.dialogue.model import core_fingerprint

BIKESHOP = Path(__file__).resolve().parents[3] / "examples" / "bikeshop"


def test_the_fingerprint_ignores_where_the_project_is(tmp_path: Path) -> None:
    """Named relatively or absolutely, or copied elsewhere, the same project trains the same
    policies (a path in the fingerprint made `parley run` warn about an archive `parley train`
    had just written, and retrain every time)."""
    copy = tmp_path / "copy"
    shutil.copytree(BIKESHOP, copy, ignore=shutil.ignore_patterns("models", ".parley"))
    absolute = core_fingerprint(load_project(BIKESHOP))
    relative = core_fingerprint(load_project(os.path.relpath(BIKESHOP)))
    assert absolute == relative == core_fingerprint(load_project(copy))


def test_the_fingerprint_follows_what_is_trained_on(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(BIKESHOP, copy, ignore=shutil.ignore_patterns("models", ".parley"))
    before = core_fingerprint(load_project(copy))
    rules = copy / "data" / "rules.yml"
    rules.write_text(rules.read_text().replace("utter_goodbye", "utter_greet", 1))
    assert core_fingerprint(load_project(copy)) != before
