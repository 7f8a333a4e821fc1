"""Conversations out of the archive: JSON lines of Rasa event records, or a Rasa 3 test story.

A test story keeps what Rasa's test stories can check: user turns (text with its entities
annotated, and the intent), actions, slots and active loops. It leaves out `action_listen`,
session starts, bot utterances (the actions that uttered them stay) and Parley's own events.
A rewind removes the user turn it reverts, an undo the action, as they do in the tracker.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.events import PARLEY_EVENTS
from services.dialogue.store.sql_archive import events_table

__all__ = ["annotate", "archived_events", "jsonl_line", "records", "story_yaml"]

e = events_table.c
SKIPPED_ACTIONS = frozenset({"action_listen", "action_session_start", "action_extract_slots"})


async def archived_events(engine: AsyncEngine, sender_id: str) -> list[dict[str, Any]]:
    """Every archived event of one conversation, in order."""
    statement = select(e.data).where(e.sender_id == sender_id).order_by(e.seq)
    async with engine.connect() as connection:
        return [json.loads(data) for data in (await connection.execute(statement)).scalars()]


async def records(
    engine: AsyncEngine, since: float | None = None, until: float | None = None
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(sender_id, event) of every event in the window, conversation by conversation."""
    statement = select(e.sender_id, e.data).order_by(e.sender_id, e.seq)
    if since is not None:
        statement = statement.where(e.timestamp >= since)
    if until is not None:
        statement = statement.where(e.timestamp < until)
    async with engine.connect() as connection:
        result = await connection.stream(statement.execution_options(yield_per=2000))
        async for sender_id, data in result:
            yield sender_id, json.loads(data)


def jsonl_line(sender_id: str, event: Mapping[str, Any]) -> str:
    """Rasa's event-broker record (`sender_id` plus the event) as one JSON line."""
    return json.dumps({"sender_id": sender_id, **event}, ensure_ascii=False) + "\n"


def _scalar(value: Any) -> str:
    dumped = yaml.safe_dump(
        value, default_flow_style=True, allow_unicode=True, width=10**9, sort_keys=False
    )
    return dumped.removesuffix("\n...\n").strip()


def annotate(text: str, entities: Sequence[Mapping[str, Any]]) -> str:
    """`text` with Rasa's entity annotations: `[span](entity)`, or the JSON form when the
    value differs from the span or the entity has a role or group."""
    spans = sorted(
        (
            ent
            for ent in entities
            if isinstance(ent.get("start"), int)
            and isinstance(ent.get("end"), int)
            and isinstance(ent.get("entity"), str)
            and 0 <= ent["start"] < ent["end"] <= len(text)
        ),
        key=lambda ent: int(ent["start"]),
    )
    out: list[str] = []
    cursor = 0
    for ent in spans:
        start, end = int(ent["start"]), int(ent["end"])
        if start < cursor:  # overlapping extractions: keep the first
            continue
        surface = text[start:end]
        extra = {k: ent[k] for k in ("role", "group") if ent.get(k)}
        if ent.get("value", surface) == surface and not extra:
            label = f"({ent['entity']})"
        else:
            described = {"entity": ent["entity"], **extra}
            if ent.get("value", surface) != surface:
                described["value"] = ent["value"]
            label = json.dumps(described, ensure_ascii=False)
            label = "{" + label[1:-1] + "}"
        out += [text[cursor:start], f"[{surface}]{label}"]
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def _user_step(event: Mapping[str, Any]) -> list[str] | None:
    parse_data = event.get("parse_data") if isinstance(event.get("parse_data"), dict) else {}
    intent = parse_data.get("intent") if isinstance(parse_data, dict) else None
    name = intent.get("name") if isinstance(intent, dict) else None
    text = event.get("text")
    if isinstance(text, str) and text.startswith("EXTERNAL:"):
        return [f"- intent: {_scalar(name)}"] if isinstance(name, str) and name else None
    lines = []
    if isinstance(text, str) and text.strip():
        entities = parse_data.get("entities") if isinstance(parse_data, dict) else None
        annotated = annotate(text, [x for x in entities or [] if isinstance(x, dict)])
        lines += ["- user: |", *(f"    {line}" for line in annotated.strip().splitlines())]
        if isinstance(name, str) and name:
            lines.append(f"  intent: {_scalar(name)}")
    elif isinstance(name, str) and name:
        lines.append(f"- intent: {_scalar(name)}")
    return lines or None


def _steps(events: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for event in events:
        kind = event.get("event")
        if kind in PARLEY_EVENTS:
            continue
        if kind == "user":
            user = _user_step(event)
            if user:
                steps.append(("user", user))
        elif kind == "action":
            name = event.get("name")
            if isinstance(name, str) and name not in SKIPPED_ACTIONS:
                steps.append(("action", [f"- action: {_scalar(name)}"]))
        elif kind == "slot":
            slot = {str(event.get("name")): event.get("value")}
            steps.append(("slot", ["- slot_was_set:", f"  - {_scalar(slot)[1:-1]}"]))
        elif kind == "active_loop":
            steps.append(("loop", [f"- active_loop: {_scalar(event.get('name'))}"]))
        elif kind == "rewind":
            while steps and steps[-1][0] != "user":
                steps.pop()
            if steps:
                steps.pop()
        elif kind == "undo":
            while steps and steps[-1][0] != "action":
                steps.pop()
            if steps:
                steps.pop()
    return steps


def story_yaml(sender_id: str, events: Sequence[Mapping[str, Any]], name: str | None = None) -> str:
    """A Rasa 3 test-story file (`tests/test_*.yml`) replaying the conversation."""
    lines = [
        'version: "3.1"',
        "stories:",
        f"- story: {_scalar(name or f'conversation {sender_id}')}",
    ]
    steps = _steps(events)
    lines.append("  steps:" if steps else "  steps: []")
    for _, step in steps:
        lines += [f"  {line}" for line in step]
    return "\n".join(lines) + "\n"
