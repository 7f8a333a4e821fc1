"""Action calls built by hand, as Rasa's `RemoteAction` sends them."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from schemas.envelopes import ActionRequest

FIXTURE_PACKAGE = Path(__file__).resolve().parents[2] / "fixtures" / "actions_pkg"
SENT_AT = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)


def tracker(
    sender: str = "c1",
    slots: dict[str, Any] | None = None,
    *,
    active_loop: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
    latest_message: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "sender_id": sender,
        "slots": slots or {},
        "latest_message": latest_message or {"intent": {"name": "greet"}, "entities": []},
        "events": events or [],
        "paused": False,
        "followup_action": None,
        "active_loop": active_loop or {},
        "latest_action_name": "action_listen",
    }


def call(action: str, slots: dict[str, Any] | None = None, sender: str = "c1") -> dict[str, Any]:
    """A webhook body."""
    return {
        "next_action": action,
        "sender_id": sender,
        "tracker": tracker(sender, slots),
        "domain": {"responses": {}, "slots": {}},
        "version": "3.6.21",
    }


def request(
    action: str,
    slots: dict[str, Any] | None = None,
    *,
    conversation: str = "c1",
    message_id: str | None = None,
) -> ActionRequest:
    body = call(action, slots, conversation)
    built = ActionRequest(
        conversation_id=conversation,
        correlation_id=f"corr-{message_id or action}",
        sent_at=SENT_AT,
        next_action=action,
        tracker=body["tracker"],
        domain=body["domain"],
        version=body["version"],
    )
    return built.model_copy(update={"message_id": message_id}) if message_id else built


def fixture_module(name: str) -> ModuleType:
    """A module of the loaded fixture package (its gates and counters)."""
    return sys.modules[f"actions_pkg.{name}"]
