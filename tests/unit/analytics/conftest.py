"""Fixtures: a migrated SQLite archive, empty or seeded with `seed.py`'s conversations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.dialogue.store.migrate import migrate
from services.dialogue.store.sql_archive import SqlArchive
from tests.unit.analytics.seed import seed


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}"


@pytest.fixture
async def empty_archive(sqlite_url: str) -> AsyncIterator[SqlArchive]:
    await migrate(sqlite_url)
    async with SqlArchive(sqlite_url) as archive:
        yield archive


@pytest.fixture
async def archive(empty_archive: SqlArchive) -> SqlArchive:
    await seed(empty_archive)
    return empty_archive
