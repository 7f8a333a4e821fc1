"""`parley db upgrade|current`: the archive's schema, migrated by Alembic."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from services.dialogue.store.migrate import current_revision, head_revision, migrate
from services.dialogue.store.settings import StoreSettings


def add_db_command(commands: Any) -> None:
    """Register `db` on the CLI's subparsers; its handlers are `(args, settings) -> int`."""
    db: argparse.ArgumentParser = commands.add_parser(
        "db",
        help="migrate the dialogue archive's database schema (Alembic)",
        description="The archive's schema is versioned by Alembic migrations shipped with Parley.",
    )
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = actions.add_parser("upgrade", help="upgrade the schema to the newest revision")
    current = actions.add_parser("current", help="show the revision the database is at")
    for parser in (upgrade, current):
        parser.add_argument(
            "--database-url",
            metavar="URL",
            help="SQLAlchemy async URL, e.g. postgresql+asyncpg://user@host/db or "
            "sqlite+aiosqlite:///parley.db (default: $DATABASE_URL)",
        )
    upgrade.set_defaults(func=cmd_db_upgrade)
    current.set_defaults(func=cmd_db_current)


def cmd_db_upgrade(args: argparse.Namespace, settings: object = None) -> int:
    """Upgrade to head; 1 with a one-line error on failure."""
    url = _database_url(args)
    if url is None:
        return _fail("no database: pass --database-url or set DATABASE_URL")
    try:
        before, after = asyncio.run(_upgrade(url))
    except (SQLAlchemyError, OSError) as exc:
        return _fail(f"cannot migrate {_safe(url)}: {exc}")
    if before == after:
        print(f"{_safe(url)} is already at {after} (head)")
    else:
        print(f"upgraded {_safe(url)} from {before or 'nothing'} to {after} (head)")
    return 0


def cmd_db_current(args: argparse.Namespace, settings: object = None) -> int:
    """Print the database's revision and whether it is the newest; 1 when behind or failing."""
    url = _database_url(args)
    if url is None:
        return _fail("no database: pass --database-url or set DATABASE_URL")
    try:
        revision = asyncio.run(current_revision(url))
    except (SQLAlchemyError, OSError) as exc:
        return _fail(f"cannot read {_safe(url)}: {exc}")
    head = head_revision()
    if revision == head:
        print(f"{revision} (head)")
        return 0
    print(f"{revision or 'none'} (head is {head}: run `parley db upgrade`)")
    return 1


async def _upgrade(url: str) -> tuple[str | None, str | None]:
    before = await current_revision(url)
    await migrate(url)
    return before, await current_revision(url)


def _database_url(args: argparse.Namespace) -> str | None:
    given: str | None = args.database_url
    return given if given else StoreSettings().database_url


def _safe(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "the database"


def _fail(message: str) -> int:
    print(f"parley db: error: {message}", file=sys.stderr)
    return 1
