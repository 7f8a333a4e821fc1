"""Shared fixtures."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture
def unique_prefix() -> str:
    """A topic prefix of this test's own, so tests never read each other's messages."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` beside the repository; a clear failure when it is missing."""
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: these tests need the shared fixtures beside the repo")
    return SHARED


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small DistilBERT built from a config, with the default encoder's vocabulary."""
    from tests.support.nlu_models import build_distilbert_encoder

    return build_distilbert_encoder(tmp_path_factory.mktemp("distilbert"))


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path) -> Path:
    """The tiny project, trained once by `parley train` (models/ holds one archive)."""
    from services.cli import main
    from tests.support.nlu_models import write_project

    root = write_project(tmp_path_factory.mktemp("project"), tiny_encoder)
    assert main(["train", "--project", str(root), "--no-progress"]) == 0
    return root


@pytest.fixture(scope="session")
def tiny_archive(tiny_project: Path) -> Path:
    from services.nlu.archive import latest_archive

    path = latest_archive(tiny_project / "models")
    assert path is not None
    return path


BIKESHOP = REPO / "examples" / "bikeshop"


@pytest.fixture(scope="session")
def bikeshop_model() -> Path:
    """Parley's example bot trained by `parley train` into `examples/bikeshop/models/`
    (git-ignored), as `make demo` does: on a fresh clone the first run trains it (about five
    minutes on two cores); later runs reuse it ("not retrained" while its data is unchanged)."""
    from services.cli import main
    from services.nlu.archive import latest_archive

    assert main(["train", "--project", str(BIKESHOP), "--no-progress"]) == 0
    path = latest_archive(BIKESHOP / "models")
    assert path is not None
    return path
