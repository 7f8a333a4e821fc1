"""The dialogue archive's analytics as the gateway's `StatsSource` (services/gateway/stats.py)."""

from __future__ import annotations

from typing import Any

from services.common.errors import DependencyUnavailable
from services.dialogue.analytics import ArchiveNotReady, archive_stats
from services.dialogue.store.sql_archive import SqlArchive


class ArchiveStatsSource:
    """`StatsSource` over a started `SqlArchive`: `archive_stats(...).as_dict()`."""

    def __init__(self, archive: SqlArchive) -> None:
        self.archive = archive

    async def stats(self, since: float | None, until: float | None) -> dict[str, Any]:
        try:
            report = await archive_stats(self.archive.engine, since, until)
        except ArchiveNotReady as exc:  # the gateway answers 503 for this one
            raise DependencyUnavailable(str(exc)) from exc
        return report.as_dict()
