"""The dialogue worker's handler: one `parley.dialogue` input → one stored turn → publications.

For each input: load the conversation (the hot store, rebuilt from the archive if needed),
run the engine, append the new events to the hot store with a version check (a second worker
holding the conversation during a rebalance gets `VersionConflict`, retried after a reload),
write them to the archive (idempotent on sender id + seq), then publish:

- `parley.outbound`: the turn's bot messages, `turn_complete` when the bot listens again;
- `parley.events`: every new event as Rasa's event-broker record;
- `parley.actions`: the custom action the turn waits for, with Rasa's webhook payload;
- `parley.scheduler`: reminders scheduled and cancelled, and the handoff timers the turn's
  events start or cancel (`handoff.timer_commands`, from the handoff status before the input,
  which the input's record keeps so a redelivery derives the same requests).

Idempotency: the snapshot remembers, for the last inputs, which events they produced. An input
seen before changes nothing; its publications are derived again from the stored events and
published with the same message ids (a crash between storing and publishing loses nothing,
and consumers drop the duplicates by message id).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.envelopes import (
    ActionRequest,
    ActionResult,
    AppendEvents,
    BotMessage,
    ConsoleCommand,
    ExternalTrigger,
    HandoffTimerRequest,
    OutboundMessage,
    ParsedUserMessage,
    ReminderCancelRequest,
    ReminderRequest,
)
from schemas.events import (
    AgentUttered,
    BotUttered,
    Event,
    ReminderCancelled,
    ReminderScheduled,
    event_record,
    parse_events,
)
from schemas.topics import Topic
from services.common.bus import Publication, RawMessage
from services.common.clock import Clock
from services.dialogue.engine import Conversation, DialogueEngine, PendingAction, TurnResult
from services.dialogue.forms import with_provisional
from services.dialogue.handoff import HandoffStatus, timer_commands
from services.dialogue.store.ports import Archive, HotStore
from services.dialogue.store.rebuild import load_or_rebuild
from services.dialogue.tracker import (
    TrackerState,
    Verbosity,
    apply,
    current_state,
    initial_state,
    replay,
)

logger = logging.getLogger(__name__)

RASA_VERSION = "3.6.21"  # what action servers are told (rasa-sdk checks it)
REMEMBERED_INPUTS = 64
# Events read per turn: between this and three times this (see `_load`). Action servers get
# these events in the tracker, not the whole history.
DEFAULT_WINDOW = 30

DialogueMessage = ParsedUserMessage | ActionResult | ExternalTrigger | ConsoleCommand | AppendEvents


@dataclass(frozen=True)
class InputRecord:
    """What one input produced: events [start, end), and how the turn ended."""

    start: int
    end: int
    complete: bool
    channel: str | None
    in_reply_to: str | None
    handoff: dict[str, Any] | None = None  # the handoff status before the input
    # False for events added through the HTTP API without `execute_side_effects`: their bot
    # messages are not sent and their reminders not scheduled (Rasa's behaviour)
    side_effects: bool = True


class DialogueService:
    """Handles `parley.dialogue` inputs for one bot."""

    def __init__(
        self,
        engine: DialogueEngine,
        hot: HotStore,
        archive: Archive,
        clock: Clock,
        domain_dict: dict[str, Any],
        *,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.window = window
        self.engine = engine
        self.hot = hot
        self.archive = archive
        self.clock = clock
        self.domain_dict = domain_dict
        self._defaults = engine.slot_defaults

    async def _load(
        self, cid: str
    ) -> tuple[int, int, dict[str, Any], list[Event], TrackerState | None]:
        """(seq, base, snapshot, events from `base` on, the tracker before them).

        A turn reads only the events after the snapshot's anchor (between `window` and
        3 x `window` of them): the anchor is the tracker at that point, kept in the
        snapshot and moved forward as the conversation grows, so a turn costs the same at
        any history length and policies still see every slot set before. A conversation
        without an anchor is read whole once; one missing from Redis is rebuilt whole.
        """
        head = await self.hot.load_snapshot(cid)
        if head is not None:
            anchor = head[1].get("anchor")
            usable = anchor is not None and head[0] - anchor["seq"] <= 3 * self.window
            base = int(anchor["seq"]) if usable and anchor else 0
            stored = await self.hot.load(cid, base)
            if stored is not None and stored.seq - base == len(stored.events):
                state = TrackerState.from_json(anchor["tracker"]) if usable and anchor else None
                return stored.seq, base, stored.snapshot, parse_events(stored.events), state
        # not in the hot store (new, expired or lost): rebuilt from the archive, whole
        rebuilt = await load_or_rebuild(self.hot, self.archive, cid, self._snapshot_of)
        if rebuilt is None:
            return 0, 0, {}, [], None
        return rebuilt.seq, 0, rebuilt.snapshot, parse_events(rebuilt.events), None

    def _anchor(self, conv: Conversation, snapshot: dict[str, Any]) -> dict[str, Any] | None:
        """The anchor for the next turns: moved to `window` events back once the loaded
        events exceed twice the window."""
        if conv.seq - conv.base_seq <= 2 * self.window:
            kept = snapshot.get("anchor")
            return dict(kept) if isinstance(kept, dict) else None
        target = conv.seq - self.window
        state = conv.anchor or initial_state(self._defaults)
        for index in range(target - conv.base_seq):
            state = apply(state, conv.events[index], conv.events[:index], self._defaults)
        return {"seq": target, "tracker": state.to_json()}

    async def handle(self, message: DialogueMessage) -> list[Publication]:
        cid = message.conversation_id
        seq, base, snapshot, events, anchor = await self._load(cid)
        inputs: dict[str, Any] = dict(snapshot.get("inputs", {}))
        if message.message_id in inputs:
            record = InputRecord(**inputs[message.message_id])
            logger.info("input %s seen before: publishing its results again", message.message_id)
            if record.start < base:  # older than the window: read its events back
                events = parse_events(await self.hot.events(cid, record.start))
                base = record.start
            since = events[record.start - base :]
            await self.archive.write(cid, record.start, self._dicts(since))
            produced = since[: record.end - record.start]
            return self._publications(cid, events, record, snapshot, produced, seq)
        if "tracker" in snapshot:
            state = TrackerState.from_json(snapshot["tracker"])
        else:
            state = replay(events, self._defaults)
        pending = snapshot.get("pending")
        conv = Conversation(
            cid,
            events,
            state,
            PendingAction.from_json(pending) if pending else None,
            base,
            anchor,
            HandoffStatus.from_json(snapshot.get("handoff")),
            list(snapshot.get("deferred") or []),
        )
        before = snapshot.get("handoff")
        now = self.clock.now().timestamp()
        result, channel, reply_to = self._run(conv, message, now)
        new = self._dicts(result.new_events)
        quiet = isinstance(message, AppendEvents) and not message.execute_side_effects
        record = InputRecord(
            seq, seq + len(new), result.turn_complete, channel, reply_to, before, not quiet
        )
        inputs[message.message_id] = record.__dict__
        if len(inputs) > REMEMBERED_INPUTS:
            for key in list(inputs)[: len(inputs) - REMEMBERED_INPUTS]:
                del inputs[key]
        new_snapshot = {
            "anchor": self._anchor(conv, snapshot),
            "tracker": conv.state.to_json(),
            "pending": conv.pending.to_json() if conv.pending else None,
            "inputs": inputs,
            "handoff": conv.handoff.to_json() if conv.handoff else None,
            "deferred": conv.deferred,
        }
        await self.hot.append(cid, seq, new, new_snapshot)
        await self.archive.write(cid, seq, new)
        return self._publications(
            cid, conv.events, record, new_snapshot, result.new_events, conv.seq
        )

    def _run(
        self, conv: Conversation, message: DialogueMessage, now: float
    ) -> tuple[TurnResult, str | None, str | None]:
        match message:
            case ParsedUserMessage():
                channel = message.event.input_channel
                result = self.engine.on_user_message(conv, message.event, now)
                return result, channel, message.event.message_id or message.message_id
            case ActionResult():
                channel = conv.pending.channel if conv.pending else None
                result = self.engine.on_action_result(
                    conv,
                    message.request_id,
                    message.status,
                    list(message.events),
                    list(message.responses),
                    now,
                    message.error,
                )
                return result, channel, message.correlation_id
            case ExternalTrigger(source="handoff_timer"):
                channel = message.output_channel or conv.state.latest_input_channel
                entities = message.entities if isinstance(message.entities, dict) else {}
                result = self.engine.on_handoff_timer(
                    conv,
                    str(entities.get("timer")),
                    now,
                    started_at=message.scheduled_at,
                    channel=channel,
                )
                return result, channel, message.correlation_id
            case ExternalTrigger():
                channel = message.output_channel or conv.state.latest_input_channel
                result = self.engine.on_external_trigger(
                    conv,
                    message.intent,
                    message.entities,
                    now,
                    reminder=message.reminder_name if message.source == "reminder" else None,
                    kill_on_user_msg=message.kill_on_user_msg,
                    channel=channel,
                )
                return result, channel, message.correlation_id
            case AppendEvents():
                channel = message.output_channel or conv.state.latest_input_channel
                result = self.engine.on_append_events(conv, list(message.events), now)
                return result, channel, message.correlation_id
            case _:
                channel = conv.state.latest_input_channel
                result = self.engine.on_agent_command(
                    conv,
                    message.command,
                    message.agent_id,
                    now,
                    text=message.text,
                    followup_action=message.followup_action,
                    assignee=message.assignee,
                )
                return result, channel, message.correlation_id

    def _snapshot_of(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        state = replay(parse_events(events), self._defaults)
        return {"tracker": state.to_json(), "pending": None, "inputs": {}}

    @staticmethod
    def _dicts(events: Sequence[Event]) -> list[dict[str, Any]]:
        return [e.to_dict() for e in events]

    def _publications(
        self,
        cid: str,
        events: Sequence[Event],
        record: InputRecord,
        snapshot: dict[str, Any],
        new_events: Sequence[Event],
        seq: int,
    ) -> list[Publication]:
        now = self.clock.now()
        out: list[Publication] = []
        bots = [e for e in new_events if isinstance(e, BotUttered) and record.side_effects]
        if bots or record.complete:
            out.append(
                Publication(
                    Topic.OUTBOUND,
                    OutboundMessage(
                        conversation_id=cid,
                        message_id=message_id(cid, record.end, "outbound"),
                        correlation_id=record.in_reply_to,
                        sent_at=now,
                        messages=[_bot_message(b) for b in bots],
                        in_reply_to=record.in_reply_to,
                        turn_complete=record.complete,
                        input_channel=record.channel,
                    ),
                )
            )
        agents = [e for e in new_events if isinstance(e, AgentUttered)]
        if agents:
            out.append(
                Publication(
                    Topic.OUTBOUND,
                    OutboundMessage(
                        conversation_id=cid,
                        message_id=message_id(cid, record.end, "agent"),
                        correlation_id=record.in_reply_to,
                        sent_at=now,
                        source="agent",
                        messages=[BotMessage(text=a.text) for a in agents],
                        turn_complete=False,
                        input_channel=record.channel,
                    ),
                )
            )
        key = cid.encode()
        for event in new_events:
            body = json.dumps(event_record(cid, event), ensure_ascii=False).encode()
            out.append(Publication(Topic.EVENTS, RawMessage(key, body)))
        for index, event in enumerate(new_events, start=record.start):
            if not record.side_effects:
                break
            if isinstance(event, ReminderScheduled):
                out.append(
                    Publication(
                        Topic.SCHEDULER,
                        ReminderRequest(
                            conversation_id=cid,
                            message_id=message_id(cid, index, "reminder"),
                            correlation_id=record.in_reply_to,
                            sent_at=now,
                            event=event,
                            output_channel=record.channel,
                        ),
                    )
                )
            elif isinstance(event, ReminderCancelled):
                out.append(
                    Publication(
                        Topic.SCHEDULER,
                        ReminderCancelRequest(
                            conversation_id=cid,
                            message_id=message_id(cid, index, "cancel"),
                            correlation_id=record.in_reply_to,
                            sent_at=now,
                            event=event,
                        ),
                    )
                )
        out += self._timer_requests(cid, record, new_events)
        pending = snapshot.get("pending")
        # the pending request is this input's only if no later input has been stored since
        if pending and not record.complete and record.end == seq:
            request = self._action_request(cid, events, snapshot, record.in_reply_to)
            out.append(Publication(Topic.ACTIONS, request))
        return out

    def _timer_requests(
        self, cid: str, record: InputRecord, new_events: Sequence[Event]
    ) -> list[Publication]:
        """The handoff timers the input's events start or cancel. Due times and `sent_at`
        (the trigger's `scheduled_at`, which tells a stale firing) come from the events'
        timestamps, so a redelivery derives the same requests."""
        before = HandoffStatus.from_json(record.handoff)
        config = self.engine.settings.handoff
        out: list[Publication] = []
        for command in timer_commands(before, new_events, config):
            index = record.start + command.index
            due = command.due_at
            out.append(
                Publication(
                    Topic.SCHEDULER,
                    HandoffTimerRequest(
                        conversation_id=cid,
                        message_id=message_id(cid, index, "handoff", command.action, command.timer),
                        correlation_id=record.in_reply_to,
                        sent_at=datetime.fromtimestamp(command.started_at, UTC),
                        action=command.action,
                        timer=command.timer,
                        due_at=None if due is None else datetime.fromtimestamp(due, UTC),
                        reason=command.reason,
                    ),
                )
            )
        return out

    def _action_request(
        self,
        cid: str,
        events: Sequence[Event],
        snapshot: dict[str, Any],
        in_reply_to: str | None,
    ) -> ActionRequest:
        pending = snapshot["pending"]
        state = TrackerState.from_json(snapshot["tracker"])
        # a form's action sees the form's events so far (Rasa's temporary tracker)
        provisional = parse_events(pending.get("provisional") or [])
        state, events = with_provisional(state, events, provisional, self._defaults)
        return ActionRequest(
            conversation_id=cid,
            message_id=pending["request_id"],
            # the user message the turn answers: its result, and the turn's outbound, carry it
            correlation_id=in_reply_to,
            sent_at=self.clock.now(),
            next_action=pending["action"],
            tracker=current_state(cid, state, events, Verbosity.ALL),
            domain=self.domain_dict,
            version=RASA_VERSION,
        )


def _bot_message(event: BotUttered) -> BotMessage:
    data = event.data or {}
    return BotMessage(
        text=event.text,
        image=data.get("image"),
        buttons=data.get("buttons"),
        attachment=data.get("attachment") if data.get("attachment") != data.get("image") else None,
        custom=data.get("custom"),
        quick_replies=data.get("quick_replies"),
        elements=data.get("elements"),
    )


def message_id(conversation_id: str, *parts: object) -> str:
    """A deterministic message id (≤ 128 characters) for an output of a conversation."""
    digest = hashlib.sha256("\0".join([conversation_id, *map(str, parts)]).encode())
    return digest.hexdigest()[:40]
