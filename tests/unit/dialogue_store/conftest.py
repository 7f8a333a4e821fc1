"""Fixtures: a migrated SQLite archive in the test's own folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.dialogue.store.migrate import migrate
from services.dialogue.store.sql_archive import SqlArchive


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}"


@pytest.fixture
async def archive(sqlite_url: str) -> AsyncIterator[SqlArchive]:
    await migrate(sqlite_url)
    async with SqlArchive(sqlite_url) as archive:
        yield archive
