"""Adapters of the gateway's ports: the SQL archive as tracker reader, the NLU as parser."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.events import parse_events
from schemas.project.loader import Project
from services.dialogue.store.ports import Archive
from services.dialogue.tracker import Verbosity, current_state, replay, slot_defaults
from services.gateway.ports import IncludeEvents
from services.nlu.interpreter import ParseRequest
from services.nlu.worker import NluService


class ArchiveTrackers:
    """`TrackerReader` over the SQL archive: every event, replayed with the domain's slots.

    The dialogue worker archives a turn's events before it publishes the turn's messages,
    so a tracker read after a reply includes that turn.
    """

    def __init__(self, archive: Archive, slot_defaults: Mapping[str, Any]) -> None:
        self.archive = archive
        self.slot_defaults = dict(slot_defaults)

    async def tracker(
        self, conversation_id: str, include_events: IncludeEvents = "AFTER_RESTART"
    ) -> dict[str, Any]:
        events = parse_events(await self.archive.read(conversation_id))
        state = replay(events, self.slot_defaults)
        return current_state(conversation_id, state, events, Verbosity[include_events])


def archive_trackers(archive: Archive, project: Project) -> ArchiveTrackers:
    """The tracker reader of a project's conversations (its domain's slots)."""
    return ArchiveTrackers(archive, slot_defaults(project.domain))


class NluParser:
    """`Parser` over the NLU service (in process, or Triton in the Kafka mode)."""

    def __init__(self, service: NluService) -> None:
        self.service = service

    async def parse(self, text: str, message_id: str | None = None) -> dict[str, Any]:
        current = self.service.current
        if current is None:
            raise LookupError("no NLU model is loaded")
        [parsed] = await current.interpreter.parse([ParseRequest(text, message_id, {})])
        return parsed

    def status(self) -> dict[str, Any]:
        current = self.service.current
        return {
            "model_file": current.archive.name if current else None,
            "model_id": current.archive.stem.removesuffix(".tar") if current else None,
            "num_active_training_jobs": 0,
        }
