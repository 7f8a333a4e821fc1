"""Alembic migrations, configured in code, and `parley db upgrade|current` on SQLite."""

from __future__ import annotations

import argparse
import fnmatch
import tomllib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from services.common.errors import DependencyUnavailable
from services.dialogue.store.db_cli import add_db_command
from services.dialogue.store.migrate import MIGRATIONS, current_revision, head_revision, migrate
from services.dialogue.store.sql_archive import SqlArchive, metadata
from tests.unit.dialogue_store.fakes import bot

REPO = Path(__file__).resolve().parents[3]
HEAD = head_revision()


async def schema_of(url: str) -> tuple[list[str], list[object]]:
    """The tables, and the differences between the database and the archive's metadata."""

    def inspect_sync(connection: Connection) -> tuple[list[str], list[object]]:
        tables = sorted(inspect(connection).get_table_names())
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
        return tables, list(diff)

    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(inspect_sync)
    finally:
        await engine.dispose()


async def test_upgrade_creates_the_archive_schema(sqlite_url: str) -> None:
    assert await current_revision(sqlite_url) is None
    await migrate(sqlite_url)

    assert await current_revision(sqlite_url) == HEAD
    tables, diff = await schema_of(sqlite_url)
    assert tables == ["alembic_version", "conversation_snapshots", "events"]
    assert diff == []


async def test_the_sql_hot_stores_table_comes_after_the_archives(sqlite_url: str) -> None:
    await migrate(sqlite_url, "0001")
    async with SqlArchive(sqlite_url) as archive:
        await archive.write("alice", 0, [bot("kept", 1.0)])
    tables, _ = await schema_of(sqlite_url)
    assert "conversation_snapshots" not in tables

    await migrate(sqlite_url, "0002")
    tables, _ = await schema_of(sqlite_url)
    assert "conversation_snapshots" in tables
    async with SqlArchive(sqlite_url) as archive:
        assert await archive.read("alice") == [bot("kept", 1.0)]


async def test_upgrading_twice_is_a_no_op(sqlite_url: str) -> None:
    await migrate(sqlite_url)
    async with SqlArchive(sqlite_url) as archive:
        await archive.write("alice", 0, [bot("kept", 1.0)])
    await migrate(sqlite_url)

    assert await current_revision(sqlite_url) == head_revision()
    async with SqlArchive(sqlite_url) as archive:
        assert await archive.read("alice") == [bot("kept", 1.0)]


async def test_the_archive_never_creates_its_tables(sqlite_url: str) -> None:
    async with SqlArchive(sqlite_url) as archive:
        with pytest.raises(DependencyUnavailable, match="no such table: events"):
            await archive.write("alice", 0, [bot("lost", 1.0)])
    tables, _ = await schema_of(sqlite_url)
    assert tables == []


def test_the_migrations_ship_in_the_package() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["services"]
    services = REPO / "services"
    shipped = [
        path for path in MIGRATIONS.rglob("*") if path.is_file() and "__pycache__" not in path.parts
    ]
    assert {p.name for p in shipped} >= {
        "env.py",
        "script.py.mako",
        "0001_events.py",
        "0002_conversation_snapshots.py",
    }
    for path in shipped:
        relative = path.relative_to(services).as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), f"{relative} is not shipped"


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="parley")
    add_db_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args, None))


def test_db_upgrade_and_current(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["db", "current", "--database-url", sqlite_url]) == 1
    assert f"none (head is {HEAD}: run `parley db upgrade`)" in capsys.readouterr().out

    assert run_cli(["db", "upgrade", "--database-url", sqlite_url]) == 0
    assert f"from nothing to {HEAD} (head)" in capsys.readouterr().out
    assert run_cli(["db", "upgrade", "--database-url", sqlite_url]) == 0
    assert f"is already at {HEAD} (head)" in capsys.readouterr().out

    assert run_cli(["db", "current", "--database-url", sqlite_url]) == 0
    assert capsys.readouterr().out == f"{HEAD} (head)\n"


def test_db_reads_database_url_from_the_environment(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    assert run_cli(["db", "upgrade"]) == 0
    assert f"to {HEAD} (head)" in capsys.readouterr().out


def test_db_without_a_database_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("PARLEY_STORE_DATABASE_URL", raising=False)
    assert run_cli(["db", "current"]) == 1
    assert "pass --database-url or set DATABASE_URL" in capsys.readouterr().err


def test_db_reports_an_unreachable_database(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 1 on loopback refuses connections at once.
    url = "postgresql+asyncpg://parley:secret@127.0.0.1:1/parley"
    assert run_cli(["db", "upgrade", "--database-url", url]) == 1
    err = capsys.readouterr().err
    assert "error: cannot migrate postgresql+asyncpg://parley:***@127.0.0.1:1/parley" in err
    assert "secret" not in err
