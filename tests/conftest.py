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
