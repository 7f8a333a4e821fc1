"""Loading a conversation, rebuilt from the archive when the hot store lost it or lags behind."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from services.dialogue.store.ports import Archive, ArchiveGap, HotStore, StoredTracker

logger = logging.getLogger(__name__)

SnapshotOf = Callable[[list[dict[str, Any]]], dict[str, Any]]


async def load_or_rebuild(
    hot: HotStore,
    archive: Archive,
    conversation_id: str,
    snapshot_of: SnapshotOf,
    *,
    start: int = 0,
) -> StoredTracker | None:
    """The conversation from the hot store, or rebuilt from the archive and put back there.

    Rebuilds when the hot store does not have it (expired, evicted, lost) or has fewer events
    than the archive (it lost a write the archive kept). The snapshot of a rebuild is
    `snapshot_of(all archived events)`. The result holds the events from seq `start` on.
    None when neither store knows the conversation. Raises `ArchiveGap` (retryable) when the
    archive misses events before its last one, rather than rebuild a wrong tracker.
    """
    stored = await hot.load(conversation_id, start)
    archived = await archive.last_seq(conversation_id) + 1
    if stored is not None and stored.seq >= archived:
        return stored
    if archived == 0:
        return None
    events = await archive.read(conversation_id)
    if len(events) != archived:
        raise ArchiveGap(
            f"the archive holds {len(events)} events of {conversation_id!r} up to seq "
            f"{archived - 1}: some are missing, not rebuilding"
        )
    logger.warning(
        "rebuilding conversation %s from the archive: the hot store had %s events, the archive %d",
        conversation_id,
        "no" if stored is None else stored.seq,
        archived,
    )
    rebuilt = StoredTracker(conversation_id, archived, snapshot_of(events), events)
    await hot.replace(conversation_id, rebuilt)
    if start == 0:
        return rebuilt
    return StoredTracker(conversation_id, archived, rebuilt.snapshot, events[start:])
