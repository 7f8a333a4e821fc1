"""The dialogue worker's tracker store: Redis for live conversations, SQL for the archive.

The ports and the rebuild live here; the adapters in their modules:
`redis_store.RedisHotStore`, `sql_archive.SqlArchive`, `migrate.migrate` (Alembic) and
`db_cli.add_db_command` (`parley db upgrade|current`).
"""

from services.dialogue.store.ports import (
    Archive,
    ArchiveGap,
    ConversationSummary,
    HotStore,
    InvalidEvent,
    SearchHit,
    StoredTracker,
    VersionConflict,
)
from services.dialogue.store.rebuild import load_or_rebuild

__all__ = [
    "Archive",
    "ArchiveGap",
    "ConversationSummary",
    "HotStore",
    "InvalidEvent",
    "SearchHit",
    "StoredTracker",
    "VersionConflict",
    "load_or_rebuild",
]
