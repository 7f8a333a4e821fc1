"""The handoff queue as a pure fold of tracker events: who waits for an agent, since when, why,
who holds them, and their last messages.

Events are the records of `parley.events` (Rasa's event-broker shape: `{"sender_id", "event",
"timestamp", ...}`). A handoff starts with a `pause` whose metadata has `handoff_reason`, is
claimed or assigned by an `agent_action`, and ends with `resume`, `restart` or
`session_started`, the same rules as the dialogue worker's (services/dialogue/handoff.py).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from services.gateway.console.transcript import Entry, entry_of

REASON_KEY = "handoff_reason"
ENDS = frozenset({"resume", "restart", "session_started"})
LAST_MESSAGES = 5
# A claim published here whose event has not come back in this long did not take (the
# dialogue worker was down, or the handoff ended meanwhile): others may claim again.
PENDING_CLAIM_S = 30.0
REMEMBERED_CONVERSATIONS = 10_000


@dataclass(frozen=True)
class Handoff:
    """One conversation waiting for, or held by, a human agent."""

    conversation_id: str
    reason: str
    paused_at: float
    claimed_by: str | None = None
    claimed_at: float | None = None
    # A claim this replica published whose `agent_action` has not come back yet.
    pending: bool = False
    last_activity: float | None = None
    last_messages: tuple[Entry, ...] = field(default=())

    def holder(self, now: float) -> str | None:
        """Who holds the conversation at `now`; a claim still pending too long holds nothing."""
        if self.pending and (self.claimed_at is None or now - self.claimed_at > PENDING_CLAIM_S):
            return None
        return self.claimed_by

    def to_json(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "reason": self.reason,
            "paused_at": self.paused_at,
            "claimed_by": self.claimed_by,
            "claimed_at": self.claimed_at,
            "pending": self.pending,
            "last_activity": self.last_activity,
            "last_messages": list(self.last_messages),
        }


@dataclass(frozen=True)
class Change:
    """What one event did to the queue: `handoff` is the new state, None when it ended."""

    conversation_id: str
    handoff: Handoff | None


def reason_of(record: Mapping[str, Any]) -> str | None:
    """The handoff reason of a `pause` record; None for anything else or a plain pause."""
    if record.get("event") != "pause":
        return None
    metadata = record.get("metadata")
    reason = metadata.get(REASON_KEY) if isinstance(metadata, dict) else None
    return reason if isinstance(reason, str) and reason else None


def _stamp(record: Mapping[str, Any]) -> float:
    value = record.get("timestamp")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


class HandoffQueue:
    """The open handoffs, and the last messages of recent conversations (bounded)."""

    def __init__(self) -> None:
        self._open: dict[str, Handoff] = {}
        self._recent: OrderedDict[str, deque[Entry]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def get(self, conversation_id: str) -> Handoff | None:
        return self._open.get(conversation_id)

    def items(self) -> list[Handoff]:
        """Unclaimed first, then longest waiting first."""
        return sorted(
            self._open.values(),
            key=lambda h: (h.claimed_by is not None, h.paused_at, h.conversation_id),
        )

    def apply(self, conversation_id: str, record: Mapping[str, Any]) -> Change | None:
        """Fold one event in; the change to the queue, or None when it did not change."""
        name = record.get("event")
        stamp = _stamp(record)
        current = self._open.get(conversation_id)
        entry = entry_of(record)
        if entry is not None and entry["kind"] in ("user", "bot", "agent"):
            recent = self._remember(conversation_id, entry)
            if current is not None:
                return self._set(replace(current, last_activity=stamp, last_messages=tuple(recent)))
            return None
        reason = reason_of(record)
        if reason is not None:
            before = tuple(self._recent.get(conversation_id, ()))
            return self._set(
                Handoff(conversation_id, reason, stamp, last_activity=stamp, last_messages=before)
            )
        if current is None:
            return None
        if name in ENDS:
            del self._open[conversation_id]
            return Change(conversation_id, None)
        if name == "agent_action" and record.get("command") in ("claim", "assign"):
            holder = record.get("assignee" if record["command"] == "assign" else "agent_id")
            return self._set(
                replace(
                    current,
                    claimed_by=str(holder) if holder else None,
                    claimed_at=stamp,
                    pending=False,
                    last_activity=stamp,
                )
            )
        return None

    def apply_all(self, conversation_id: str, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            self.apply(conversation_id, record)

    def mark_claimed(self, conversation_id: str, agent_id: str, now: float) -> Change | None:
        """Hold the conversation for `agent_id` until its `agent_action` comes back, so a
        second claim on this replica meanwhile is refused."""
        current = self._open.get(conversation_id)
        if current is None:
            return None
        return self._set(replace(current, claimed_by=agent_id, claimed_at=now, pending=True))

    def restore(self, before: Handoff, mark: Handoff) -> Change | None:
        """Undo `mark` (a claim whose command could not be sent), unless events moved on."""
        if self._open.get(before.conversation_id) != mark:
            return None
        return self._set(before)

    def _set(self, handoff: Handoff) -> Change:
        self._open[handoff.conversation_id] = handoff
        return Change(handoff.conversation_id, handoff)

    def _remember(self, conversation_id: str, entry: Entry) -> deque[Entry]:
        recent = self._recent.get(conversation_id)
        if recent is None:
            recent = self._recent[conversation_id] = deque(maxlen=LAST_MESSAGES)
        self._recent.move_to_end(conversation_id)
        recent.append(entry)
        while len(self._recent) > REMEMBERED_CONVERSATIONS:
            self._recent.popitem(last=False)
        return recent
