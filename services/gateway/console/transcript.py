"""What an agent sees of a conversation: its events as transcript entries.

An entry is a small JSON object with a `kind`: `user` (text, intent, confidence), `bot`
(text, buttons, image), `agent` (text, agent_id), `note` (an internal note: never shown to the
user), `action` (claim, assign, hand_back, resolve), `handoff` (the bot handed over, with the
reason), `resume` (the bot took over again) or `feedback` (the user's rating of a bot
message: rating, scale, comment as `text`, the rated `message_text`). Other events are not
shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Entry = dict[str, Any]


def _confidence(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value), 4)
    return None


def _user(record: Mapping[str, Any]) -> Entry:
    parse = record.get("parse_data")
    intent = parse.get("intent") if isinstance(parse, dict) else None
    entities = parse.get("entities") if isinstance(parse, dict) else None
    return {
        "text": record.get("text"),
        "intent": intent.get("name") if isinstance(intent, dict) else None,
        "confidence": _confidence(intent.get("confidence")) if isinstance(intent, dict) else None,
        "entities": [
            {"entity": e.get("entity"), "value": e.get("value")}
            for e in entities or ()
            if isinstance(e, dict)
        ],
    }


def _bot(record: Mapping[str, Any]) -> Entry:
    data = record.get("data")
    data = data if isinstance(data, dict) else {}
    out: Entry = {"text": record.get("text")}
    for key in ("buttons", "image", "custom", "attachment"):
        if data.get(key):
            out[key] = data[key]
    return out


def entry_of(record: Mapping[str, Any]) -> Entry | None:
    """The transcript entry of one event, or None for an event agents need not see."""
    name = record.get("event")
    body: Entry
    if name == "user":
        body = {"kind": "user", **_user(record)}
    elif name == "bot":
        body = {"kind": "bot", **_bot(record)}
    elif name == "agent":
        data = record.get("data")
        agent = data.get("agent_id") if isinstance(data, dict) else None
        body = {"kind": "agent", "text": record.get("text"), "agent_id": agent}
    elif name == "agent_action":
        command = record.get("command")
        if command == "note":
            body = {"kind": "note", "text": record.get("text")}
        else:
            body = {"kind": "action", "command": command, "assignee": record.get("assignee")}
        body["agent_id"] = record.get("agent_id")
    elif name == "pause":
        metadata = record.get("metadata")
        reason = metadata.get("handoff_reason") if isinstance(metadata, dict) else None
        if not reason:
            return None
        body = {"kind": "handoff", "reason": reason}
    elif name == "resume":
        body = {"kind": "resume"}
    elif name == "user_feedback":
        body = {
            "kind": "feedback",
            "rating": record.get("rating"),
            "scale": record.get("scale", "thumbs"),
            "text": record.get("comment"),
            "message_text": record.get("message_text"),
        }
    else:
        return None
    body["timestamp"] = record.get("timestamp")
    return body


def transcript(records: Iterable[Mapping[str, Any]]) -> list[Entry]:
    """The entries of a conversation's events, in order."""
    return [entry for entry in map(entry_of, records) if entry is not None]
