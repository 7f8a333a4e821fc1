"""One conversation's turn, as Rasa's `MessageProcessor` runs it, but resumable and without I/O.

`DialogueEngine` takes a `Conversation` (the stored state: events, snapshot, what it waits
for) and one input, and returns a `TurnResult`: the new events, and what the worker must
publish. It never waits on a custom action: it records a `PendingAction` and stops; the
action's result is another input that resumes the turn. So a partition is never blocked
by a slow action, and the stored conversation is always consistent.

A user message:

1. starts a session first when the conversation is new or its session expired
   (`action_session_start`, carrying slots over when configured);
2. is recorded (`user`); a paused conversation stops here unless the intent is `restart`;
3. runs `action_extract_slots` (slot events, no `action` event, as in Rasa);
4. then actions are predicted and run until `action_listen` (the turn is complete) or a
   custom action must run (pending). A follow-up action set by the tracker is run first; after
   `max_predictions` actions `action_listen` is forced (Rasa's circuit breaker).

A custom action's result: success records the policy's events, `action`, the action's events
and its responses as `bot` events, then predicting resumes; a rejection records
`action_execution_rejected` and predicting resumes; a failure or timeout records no `action`
(Rasa records one and loses the events): the configured failure response (if any) and an
`action_failed` event (a Parley event), then `action_listen`. Results that do not answer the
pending request (duplicates, late answers) change nothing.

A form (`services/dialogue/forms.py`) runs here too, but may need custom actions
(`validate_<form>`, `action_ask_<slot>`): each is a pending action that carries the form's run
and its provisional events (the action's tracker includes them); when the run completes,
`action <form>` and the form's events are recorded, or `action_execution_rejected` when it
rejected, and predicting resumes.

Human handoff (`services/dialogue/handoff.py`, docs/handoff.md): a `pause` with a handoff reason
starts it; the paused conversation records the user and predicts nothing (as Rasa) until a
`resume`. The configured policy triggers (a request intent, low NLU confidence, a fallback, a
failed action) run `action_handoff` instead of what the policies would. Agents' commands are
recorded (`agent_action`, `agent`); the handoff timers' outcomes run the configured action and
resume. Reminders falling due while paused are deferred (run after the resume), dropped or
delivered, as configured.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

from schemas.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActionFailed,
    AgentAction,
    AgentUttered,
    BotUttered,
    ConversationResumed,
    Event,
    FollowupAction,
    ReminderScheduled,
    Restarted,
    SlotSet,
    UserFeedback,
    UserUtteranceReverted,
    UserUttered,
    is_negative,
    parse_events,
)
from schemas.project.domain import Domain
from schemas.project.handoff import HandoffConfig
from services.dialogue.builtin_actions import (
    BUILTINS,
    TWO_STAGE_FALLBACK,
    ActionContext,
    handoff,
    is_local,
    run_local,
)
from services.dialogue.forms import (
    Call,
    Finished,
    FormRun,
    FormRunner,
    Rejected,
    Step,
    with_provisional,
)
from services.dialogue.handoff import (
    HANDOFF_ACTION,
    HANDOFF_POLICY,
    QUEUE,
    HandoffStatus,
    advance,
    stale_timer,
    with_reason,
)
from services.dialogue.responses import ResponseRenderer, bot_uttered
from services.dialogue.slot_extraction import extract
from services.dialogue.tracker import TrackerState, apply, initial_state, slot_defaults

logger = logging.getLogger(__name__)

ACTION_LISTEN = "action_listen"
ACTION_SESSION_START = "action_session_start"
RESTART_INTENT = "restart"
SESSION_START_INTENT = "session_start"
DEFAULT_FALLBACK = "action_default_fallback"
AgentCommand = Literal["claim", "assign", "note", "hand_back", "resolve"]


@dataclass(frozen=True)
class Prediction:
    """The next action, and who chose it."""

    action: str
    confidence: float = 1.0
    policy: str | None = None
    events: tuple[Event, ...] = ()  # applied before the action (Rasa's optional events)
    hide_rule_turn: bool = False


class Predictor(Protocol):
    """Chooses the next action (the policy ensemble)."""

    def predict(
        self,
        events: Sequence[Event],
        state: TrackerState,
        domain: Domain,
        initial: TrackerState | None = None,
    ) -> Prediction:
        """`events` may be the recent part of the conversation only: `initial` is then the
        tracker before them, `state` the tracker after them."""
        ...


@dataclass(frozen=True)
class PendingAction:
    """A custom action requested and not answered yet."""

    request_id: str
    action: str
    prediction: Prediction
    requested_at: float
    channel: str | None = None
    # A form's run waiting on this action (`FormRun.to_json`), and the events its tracker
    # must include beyond the stored ones (the form's provisional events).
    loop: dict[str, Any] | None = None
    provisional: tuple[Event, ...] = ()
    # Slot-mapping actions still to run after this one (`custom` mappings, then
    # `action_validate_slot_mappings`), None when this is not a slot-mapping action.
    extract: tuple[str, ...] | None = None
    # `action_handoff` chosen by a handoff trigger: the reason its plain `pause` gets.
    handoff_reason: str | None = None
    # A handoff timer's outcome action: the conversation resumes when it answers.
    resume_after: bool = False

    def to_json(self) -> dict[str, Any]:
        p = self.prediction
        return {
            "request_id": self.request_id,
            "action": self.action,
            "predicted": p.action,
            "policy": p.policy,
            "confidence": p.confidence,
            "events": [e.to_dict() for e in p.events],
            "hide_rule_turn": p.hide_rule_turn,
            "requested_at": self.requested_at,
            "channel": self.channel,
            "loop": self.loop,
            "provisional": [e.to_dict() for e in self.provisional],
            "extract": None if self.extract is None else list(self.extract),
            "handoff_reason": self.handoff_reason,
            "resume_after": self.resume_after,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PendingAction:
        prediction = Prediction(
            data.get("predicted") or data["action"],
            data["confidence"],
            data["policy"],
            tuple(parse_events(data["events"])),
            data["hide_rule_turn"],
        )
        return cls(
            data["request_id"],
            data["action"],
            prediction,
            data["requested_at"],
            data.get("channel"),
            data.get("loop"),
            tuple(parse_events(data.get("provisional") or [])),
            None if data.get("extract") is None else tuple(data["extract"]),
            data.get("handoff_reason"),
            bool(data.get("resume_after")),
        )


@dataclass
class Conversation:
    """A conversation as loaded from the store."""

    conversation_id: str
    events: list[Event]  # the recent events: those from seq `base_seq` on
    state: TrackerState  # the whole conversation's state (the stored snapshot)
    pending: PendingAction | None = None
    base_seq: int = 0
    anchor: TrackerState | None = None  # the tracker before `events` when base_seq > 0
    handoff: HandoffStatus | None = None  # while handed to humans
    # Reminders that fell due while paused (reminders_while_paused: deferred), oldest first.
    deferred: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seq(self) -> int:
        """How many events the conversation has (the seq of the next one)."""
        return self.base_seq + len(self.events)

    @classmethod
    def new(cls, conversation_id: str, domain: Domain) -> Conversation:
        return cls(conversation_id, [], initial_state(slot_defaults(domain)))


@dataclass
class TurnResult:
    """What one input did."""

    new_events: list[Event] = field(default_factory=list)
    action_requests: list[PendingAction] = field(default_factory=list)
    turn_complete: bool = False
    dropped: str | None = None  # why an external trigger did nothing
    deferred: str | None = None  # why a reminder waits for the conversation to resume

    @property
    def bot_messages(self) -> list[BotUttered]:
        return [e for e in self.new_events if isinstance(e, BotUttered)]


@dataclass(frozen=True)
class EngineSettings:
    max_predictions: int = 10
    failure_response: str | None = "utter_default"
    handoff: HandoffConfig = field(default_factory=HandoffConfig)


class DialogueEngine:
    """Runs turns for one bot (domain, policies, responses)."""

    def __init__(
        self,
        domain: Domain,
        predictor: Predictor,
        *,
        settings: EngineSettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.domain = domain
        self.predictor = predictor
        self.settings = settings or EngineSettings()
        self.renderer = ResponseRenderer(domain, rng)
        self._defaults = slot_defaults(domain)
        self.forms = FormRunner(domain, self.renderer, self._defaults)

    @property
    def slot_defaults(self) -> dict[str, Any]:
        """The domain's slots' initial values."""
        return dict(self._defaults)

    # -- inputs ---------------------------------------------------------------------------

    def on_user_message(self, conv: Conversation, user: UserUttered, now: float) -> TurnResult:
        result = TurnResult()
        self._message(conv, result, user, now)
        self._drain(conv, result, now)
        return result

    def _message(
        self,
        conv: Conversation,
        result: TurnResult,
        user: UserUttered,
        now: float,
        *,
        despite_pause: bool = False,
    ) -> None:
        self._start_session_if_due(conv, result, now)
        self._record(conv, result, [user])
        if not despite_pause and not self._handles(conv):
            result.turn_complete = True
            return
        if conv.pending is not None:
            logger.warning(
                "user spoke while %s was pending: its answer will be ignored", conv.pending.action
            )
            conv.pending = None
        extraction = extract(conv.state, self.domain, now)
        self._record(conv, result, list(extraction.events))
        if extraction.custom_actions:
            self._request_extraction(conv, result, list(extraction.custom_actions), now, user)
            return
        self._predict_and_run(
            conv, result, now, user.input_channel, after_user=True, despite_pause=despite_pause
        )

    @staticmethod
    def _handles(conv: Conversation) -> bool:
        """Rasa's `_should_handle_message`: not paused, or the user restarts."""
        message = conv.state.latest_message or {}
        intent = (message.get("intent") or {}).get("name")
        return not conv.state.paused or intent in (RESTART_INTENT, SESSION_START_INTENT)

    def _request_extraction(
        self,
        conv: Conversation,
        result: TurnResult,
        actions: list[str],
        now: float,
        user: UserUttered | None = None,
        channel: str | None = None,
    ) -> None:
        """Ask for the next slot-mapping action (Rasa runs them inside action_extract_slots,
        before predicting); the turn resumes when it answers."""
        name, rest = actions[0], tuple(actions[1:])
        key = f"{conv.conversation_id}\0{conv.seq}\0extract\0{name}".encode()
        conv.pending = PendingAction(
            hashlib.sha256(key).hexdigest()[:40],
            name,
            Prediction(name, 1.0, None),
            now,
            user.input_channel if user is not None else channel,
            extract=rest,
        )
        result.action_requests.append(conv.pending)

    def on_external_trigger(
        self,
        conv: Conversation,
        intent: str,
        entities: list[dict[str, Any]] | dict[str, Any],
        now: float,
        *,
        reminder: str | None = None,
        kill_on_user_msg: bool = False,
        channel: str | None = None,
    ) -> TurnResult:
        """A fired reminder (`reminder` names it) or an external intent (`trigger_intent`).

        A reminder is dropped (`TurnResult.dropped` says why) when `kill_on_user_msg` and the
        user spoke after it was scheduled, or when a restart came since — Rasa's rules. Unlike
        Rasa, validity is checked before a new session starts, so a reminder outliving the
        session still fires (Rasa drops it silently).
        """
        despite_pause = False
        if reminder is not None:
            reason = self._stale_reminder(conv, reminder, kill_on_user_msg)
            if reason is not None:
                logger.info("reminder %s dropped: %s", reminder, reason)
                return TurnResult(dropped=reason)
            if conv.state.paused:
                mode = self.settings.handoff.reminders_while_paused
                why = f"the conversation is paused (reminders_while_paused: {mode})"
                if mode == "dropped":
                    logger.info("reminder %s dropped: %s", reminder, why)
                    return TurnResult(dropped=why)
                if mode == "deferred":
                    logger.info("reminder %s deferred: %s", reminder, why)
                    conv.deferred.append(
                        {
                            "intent": intent,
                            "entities": entities,
                            "reminder": reminder,
                            "kill_on_user_msg": kill_on_user_msg,
                            "channel": channel,
                        }
                    )
                    return TurnResult(deferred=why)
                despite_pause = True
        result = TurnResult()
        user = self._external(conv, intent, entities, now, channel)
        self._message(conv, result, user, now, despite_pause=despite_pause)
        self._drain(conv, result, now)
        return result

    @staticmethod
    def _external(
        conv: Conversation,
        intent: str,
        entities: list[dict[str, Any]] | dict[str, Any],
        now: float,
        channel: str | None,
    ) -> UserUttered:
        if isinstance(entities, dict):
            entities = [{"entity": k, "value": v} for k, v in entities.items()]
        return UserUttered(
            timestamp=now,
            text=f"EXTERNAL: {intent}",
            parse_data={"intent": {"name": intent, "confidence": 1.0}, "entities": entities},
            input_channel=channel or conv.state.latest_input_channel,
            metadata={"is_external": True},
        )

    def _drain(self, conv: Conversation, result: TurnResult, now: float) -> None:
        """Run the deferred reminders, in order, once the conversation has resumed and the
        turn waits on nothing; each is judged valid (Rasa's rules) only now."""
        while conv.deferred and conv.pending is None and not conv.state.paused:
            item = conv.deferred.pop(0)
            name = item["reminder"]
            reason = self._stale_reminder(conv, name, bool(item["kill_on_user_msg"]))
            if reason is not None:
                logger.info("deferred reminder %s dropped: %s", name, reason)
                continue
            logger.info("deferred reminder %s fires after the handoff", name)
            user = self._external(conv, item["intent"], item["entities"], now, item["channel"])
            self._message(conv, result, user, now)

    def on_handoff_timer(
        self,
        conv: Conversation,
        timer: str,
        now: float,
        *,
        started_at: float | None = None,
        channel: str | None = None,
    ) -> TurnResult:
        """A handoff timer fired (`queue`: nobody claimed the conversation; `agent_silence`:
        the agent said nothing for too long). Unless stale (`TurnResult.dropped`), the
        configured action runs, the conversation resumes and the bot listens."""
        reason = stale_timer(conv.handoff, timer, started_at)
        if reason is not None:
            logger.info("handoff timer %s dropped: %s", timer, reason)
            return TurnResult(dropped=reason)
        config = self.settings.handoff
        action = config.on_queue_timeout if timer == QUEUE else config.on_agent_silence
        if action and not (self.domain.is_known_action(action) or action in BUILTINS):
            logger.warning("handoff %s outcome %s: no such action in the domain", timer, action)
            action = None
        result = TurnResult()
        channel = channel or conv.state.latest_input_channel
        if self._run_then_listen(conv, result, action, HANDOFF_POLICY, timer, now, channel):
            return result  # a custom action: the turn resumes with its result
        self._drain(conv, result, now)
        return result

    def _run_then_listen(
        self,
        conv: Conversation,
        result: TurnResult,
        action: str | None,
        policy: str,
        why: str,
        now: float,
        channel: str | None,
    ) -> bool:
        """Run `action` (if any), resume the conversation if still paused, and listen: no
        policy predicts after it (a handoff timer's outcome, an agent's follow-up). True when
        `action` is a custom action now pending (its result finishes the turn)."""
        prediction = Prediction(action or ACTION_LISTEN, 1.0, policy)
        if action and not self._runs_locally(action):
            key = f"{conv.conversation_id}\0{conv.seq}\0{why}\0{action}".encode()
            conv.pending = PendingAction(
                hashlib.sha256(key).hexdigest()[:40],
                action,
                prediction,
                now,
                channel,
                resume_after=True,
            )
            result.action_requests.append(conv.pending)
            return True
        if action:
            ctx = ActionContext(conv.state, conv.events, self.domain, self.renderer, channel, now)
            self._record(conv, result, [self._executed(prediction, now), *run_local(action, ctx)])
        self._resume_and_listen(conv, result, now)
        return False

    def _resume_and_listen(self, conv: Conversation, result: TurnResult, now: float) -> None:
        if conv.state.paused:
            self._record(conv, result, [ConversationResumed(timestamp=now)])
        self._record(conv, result, [self._executed(Prediction(ACTION_LISTEN, 1.0, None), now)])
        result.turn_complete = True

    @staticmethod
    def _stale_reminder(conv: Conversation, name: str, kill_on_user_msg: bool) -> str | None:
        scheduled_at: int | None = None
        for index, event in enumerate(conv.events):
            if isinstance(event, ReminderScheduled) and event.name == name:
                scheduled_at = index
        if scheduled_at is None and not conv.base_seq:
            return "its reminder event is not in the conversation"
        # scheduled before the loaded window: judge by what the window holds
        after = conv.events if scheduled_at is None else conv.events[scheduled_at + 1 :]
        if any(isinstance(e, Restarted) for e in after):
            return "the conversation was restarted after it was scheduled"
        if kill_on_user_msg and any(isinstance(e, UserUttered) for e in after):
            return "the user spoke after it was scheduled (kill_on_user_msg)"
        return None

    def on_action_result(
        self,
        conv: Conversation,
        request_id: str,
        status: str,
        events: Sequence[Event],
        responses: Sequence[dict[str, Any]],
        now: float,
        error: str | None = None,
    ) -> TurnResult:
        result = TurnResult()
        pending = conv.pending
        if pending is None or pending.request_id != request_id:
            logger.info("action result %s answers nothing pending: ignored", request_id)
            return result
        conv.pending = None
        self._action_result(conv, result, pending, status, events, responses, now, error)
        self._drain(conv, result, now)
        return result

    def _action_result(
        self,
        conv: Conversation,
        result: TurnResult,
        pending: PendingAction,
        status: str,
        events: Sequence[Event],
        responses: Sequence[dict[str, Any]],
        now: float,
        error: str | None,
    ) -> None:
        if pending.loop is not None:
            self._resume_form(conv, result, pending, status, events, responses, now, error)
            return
        if pending.extract is not None:
            self._extraction_result(conv, result, pending, status, events, responses, now)
            return
        # Rasa gives every event a time; a handoff's timers count from its pause's.
        events = [e if e.timestamp is not None else e.stamped(now) for e in events]
        if pending.handoff_reason is not None:
            events = with_reason(events, pending.handoff_reason)
        p = pending.prediction
        if status == "success":
            self._record(conv, result, list(p.events))
            self._record(conv, result, [self._executed(p, now)])
            slots = conv.state.slots
            bots = [self._response_event(r, slots, pending.channel, now) for r in responses]
            self._record(conv, result, [b for b in bots if b is not None])
            self._record(conv, result, list(events))
        elif status == "rejected":
            rejected = ActionExecutionRejected(
                timestamp=now, name=pending.action, policy=p.policy, confidence=p.confidence
            )
            self._record(conv, result, [rejected])
        elif pending.resume_after:
            logger.error("handoff outcome %s %s: %s", pending.action, status, error or "")
            self._record(conv, result, [self._failed(pending, status, error, now)])
        else:
            self._fail(conv, result, pending, status, error, now)
            return
        if pending.resume_after:  # a handoff timer's outcome: the bot takes over again
            self._resume_and_listen(conv, result, now)
            return
        self._predict_and_run(conv, result, now, pending.channel)

    def on_append_events(
        self, conv: Conversation, events: Sequence[Event], now: float
    ) -> TurnResult:
        """Events added through the HTTP API (Rasa's `POST .../tracker/events` and
        `.../messages`) or a channel's feedback: recorded as they are, nothing predicted; the
        input is complete. Negative feedback hands off when `handoff.on_negative_feedback`."""
        result = TurnResult()
        self._record(conv, result, list(events))
        negative = any(isinstance(e, UserFeedback) and is_negative(e) for e in events)
        if negative and self.settings.handoff.on_negative_feedback and self._handles(conv):
            channel = conv.state.latest_input_channel
            self._predict_and_run(conv, result, now, channel, handoff_reason="negative_feedback")
            return result
        result.turn_complete = True
        return result

    def on_agent_command(
        self,
        conv: Conversation,
        command: str,
        agent_id: str,
        now: float,
        *,
        text: str | None = None,
        followup_action: str | None = None,
        assignee: str | None = None,
    ) -> TurnResult:
        """A human agent's command (the console's commands reach the dialogue worker as inputs
        like any other). `reply` records `agent` (Rasa's AgentUttered, with the agent's id in
        `data`): it passes through to the user whether or not the conversation is paused.
        Every other command records `agent_action` with the agent's id; `hand_back` also
        records `resume` and, with a follow-up action, runs it (then the bot carries on;
        without one the bot waits for the user); `resolve` records `resume` when still
        paused. `claim`, `assign` and `note` change nothing in the dialogue (the handoff
        timers follow them). Deferred reminders fire once the conversation resumes."""
        result = TurnResult()
        if command == "reply":
            agent = AgentUttered(timestamp=now, text=text, data={"agent_id": agent_id})
            self._record(conv, result, [agent])
            return result
        action = AgentAction(
            timestamp=now,
            command=cast(AgentCommand, command),
            agent_id=agent_id,
            text=text,
            assignee=assignee,
        )
        self._record(conv, result, [action])
        if command == "hand_back":
            self._record(conv, result, [ConversationResumed(timestamp=now)])
            if followup_action and self.domain.is_known_action(followup_action):
                # The agent's chosen action runs, then the bot listens: a policy predicting
                # after it would see a history no story has (the user's messages during the
                # pause) and fall back, and a fallback's rewind would undo the resume.
                self._record(conv, result, [FollowupAction(timestamp=now, name=followup_action)])
                channel = conv.state.latest_input_channel
                if self._run_then_listen(
                    conv, result, followup_action, "FollowupAction", "hand_back", now, channel
                ):
                    return result
        elif command == "resolve" and conv.state.paused:
            self._record(conv, result, [ConversationResumed(timestamp=now)])
        self._drain(conv, result, now)
        return result

    def _extraction_result(
        self,
        conv: Conversation,
        result: TurnResult,
        pending: PendingAction,
        status: str,
        events: Sequence[Event],
        responses: Sequence[dict[str, Any]],
        now: float,
    ) -> None:
        """A slot-mapping action answered: keep its slot and bot events (Rasa drops the
        rest, and records no action event), then the next one, then predict."""
        if status == "success":
            slots = conv.state.slots
            bots = [self._response_event(r, slots, pending.channel, now) for r in responses]
            kept: list[Event] = [b for b in bots if b is not None]
            kept += [e for e in events if isinstance(e, SlotSet | BotUttered)]
            dropped = {e.event for e in events if not isinstance(e, SlotSet | BotUttered)}
            if dropped:
                logger.info("%s returned %s: not allowed in slot mapping", pending.action, dropped)
            self._record(conv, result, kept)
        else:
            logger.warning(
                "slot mapping action %s %s: its slots are not filled", pending.action, status
            )
        assert pending.extract is not None
        if pending.extract:
            self._request_extraction(
                conv, result, list(pending.extract), now, channel=pending.channel
            )
            return
        self._predict_and_run(conv, result, now, pending.channel, after_user=True)

    def resume(self, conv: Conversation, now: float, channel: str | None = None) -> TurnResult:
        """Predict and run actions from the conversation as it stands: after events recorded
        outside a turn (`parley test stories` applies a story's own loop events this way)."""
        result = TurnResult()
        self._predict_and_run(conv, result, now, channel)
        return result

    # -- the loop -------------------------------------------------------------------------

    def _predict_and_run(
        self,
        conv: Conversation,
        result: TurnResult,
        now: float,
        channel: str | None,
        *,
        after_user: bool = False,
        despite_pause: bool = False,
        handoff_reason: str | None = None,
    ) -> None:
        """Predict and run until the bot listens, waits on a custom action or is paused.
        `after_user`: the user just spoke (the handoff triggers apply); `handoff_reason`:
        hand off first, for that reason; `despite_pause`: a reminder delivered while paused."""
        forced = handoff_reason
        for count in range(self.settings.max_predictions + 1):
            if not despite_pause and not self._handles(conv):
                # Paused by the last action: the bot stops predicting (as Rasa) and listens.
                listen = self._executed(Prediction(ACTION_LISTEN, 1.0, None), now)
                self._record(conv, result, [listen])
                result.turn_complete = True
                return
            reason = forced or (self._handoff_trigger(conv) if after_user and not count else None)
            forced = None
            if count == self.settings.max_predictions:
                logger.warning("%s: %d actions in one turn, listening", conv.conversation_id, count)
                prediction = Prediction(ACTION_LISTEN, 1.0, None)
                reason = None
            elif reason is not None:
                logger.info("%s: handing off (%s)", conv.conversation_id, reason)
                prediction = Prediction(HANDOFF_ACTION, 1.0, HANDOFF_POLICY)
            else:
                prediction = self._next(conv)
            name = prediction.action
            if name == ACTION_LISTEN:
                self._record(conv, result, [*prediction.events, self._executed(prediction, now)])
                result.turn_complete = True
                return
            if self.forms.is_form(name):
                # The action sees the policy's events (a loop resuming after a detour is
                # LoopInterrupted, so the form skips validation), as Rasa's temporary tracker.
                state, events = self._with_prediction_events(conv, prediction)
                step = self.forms.start(name, state, events, channel, now)
                if self._form_step(conv, result, prediction, step, now, channel):
                    return
                continue
            if self._runs_locally(name):
                ctx = ActionContext(
                    conv.state, conv.events, self.domain, self.renderer, channel, now
                )
                if name == HANDOFF_ACTION and reason is not None:
                    produced = handoff(ctx, reason)
                else:
                    produced = run_local(name, ctx)
                self._record(conv, result, [*prediction.events, self._executed(prediction, now)])
                self._record(conv, result, produced)
                if name == ACTION_SESSION_START:  # it ends with action_listen
                    result.turn_complete = True
                    return
                if self._fallback_ended(name, produced):
                    forced = "fallback"
                continue
            key = f"{conv.conversation_id}\0{conv.seq}\0{name}".encode()
            request_id = hashlib.sha256(key).hexdigest()[:40]
            conv.pending = PendingAction(
                request_id,
                name,
                prediction,
                now,
                channel,
                handoff_reason=reason if name == HANDOFF_ACTION else None,
            )
            result.action_requests.append(conv.pending)
            return

    def _handoff_trigger(self, conv: Conversation) -> str | None:
        """The reason to hand off right after the user's message, if a trigger applies:
        a request intent (`requested`) or an NLU confidence below the threshold."""
        config = self.settings.handoff
        intent = (conv.state.latest_message or {}).get("intent") or {}
        if intent.get("name") in config.request_intents:
            return "requested"
        confidence = intent.get("confidence")
        threshold = config.low_confidence
        if threshold is not None and isinstance(confidence, int | float) and confidence < threshold:
            return "low_confidence"
        return None

    def _fallback_ended(self, name: str, produced: Sequence[Event]) -> bool:
        """Whether the bot just gave up (the default fallback, or the two-stage fallback's
        end without a clarified intent) and the configuration hands off then."""
        if not self.settings.handoff.on_fallback:
            return False
        if name == DEFAULT_FALLBACK:
            return True
        return name == TWO_STAGE_FALLBACK and (
            any(isinstance(e, UserUtteranceReverted) for e in produced)
            and not any(isinstance(e, UserUttered) for e in produced)
        )

    def _with_prediction_events(
        self, conv: Conversation, prediction: Prediction
    ) -> tuple[TrackerState, list[Event]]:
        state, events = conv.state, list(conv.events)
        for event in prediction.events:
            state = apply(state, event, events, self._defaults, conv.anchor)
            events.append(event)
        return state, events

    # -- forms --------------------------------------------------------------------------

    def _form_step(
        self,
        conv: Conversation,
        result: TurnResult,
        prediction: Prediction,
        step: Step,
        now: float,
        channel: str | None,
    ) -> bool:
        """Record a form's step; True when it waits on a custom action (pending)."""
        match step:
            case Call():
                parts = (conv.conversation_id, conv.seq, prediction.action, step.action)
                key = "\0".join(map(str, parts))
                request_id = hashlib.sha256(key.encode()).hexdigest()[:40]
                conv.pending = PendingAction(
                    request_id,
                    step.action,
                    prediction,
                    now,
                    channel,
                    step.run.to_json(),
                    step.provisional,
                )
                result.action_requests.append(conv.pending)
                return True
            case Finished():
                if step.executed:
                    executed = self._executed(prediction, now)
                    self._record(conv, result, [*prediction.events, executed])
                self._record(conv, result, list(step.events))
                return False
            case Rejected():
                logger.debug("form %s rejected: %s", prediction.action, step.reason)
                rejected = ActionExecutionRejected(
                    timestamp=now,
                    name=prediction.action,
                    policy=prediction.policy,
                    confidence=prediction.confidence,
                )
                self._record(conv, result, [rejected])
                return False

    def _resume_form(
        self,
        conv: Conversation,
        result: TurnResult,
        pending: PendingAction,
        status: str,
        events: Sequence[Event],
        responses: Sequence[dict[str, Any]],
        now: float,
        error: str | None,
    ) -> None:
        if status not in ("success", "rejected"):
            self._fail(conv, result, pending, status, error, now)
            return
        assert pending.loop is not None
        run = FormRun.from_json(pending.loop)
        temp, _ = with_provisional(conv.state, conv.events, pending.provisional, self._defaults)
        bots = [self._response_event(r, temp.slots, pending.channel, now) for r in responses]
        produced = [*(b for b in bots if b is not None), *events]
        step = self.forms.resume(
            run, conv.state, conv.events, status, produced, pending.channel, now
        )
        if self._form_step(conv, result, pending.prediction, step, now, pending.channel):
            return
        self._predict_and_run(conv, result, now, pending.channel)

    def _runs_locally(self, name: str) -> bool:
        if is_local(name, self.domain):
            return True
        # an end-to-end bot text (an action the domain does not know by name)
        return not self.domain.is_known_action(name)

    def _next(self, conv: Conversation) -> Prediction:
        followup = conv.state.followup_action
        if followup and followup != ACTION_LISTEN and self.domain.is_known_action(followup):
            return Prediction(followup, 1.0, "FollowupAction")
        return self.predictor.predict(conv.events, conv.state, self.domain, conv.anchor)

    # -- helpers --------------------------------------------------------------------------

    def _record(self, conv: Conversation, result: TurnResult, events: Sequence[Event]) -> None:
        for event in events:
            conv.state = apply(conv.state, event, conv.events, self._defaults, conv.anchor)
            conv.handoff = advance(conv.handoff, event) if conv.state.paused else None
            conv.events.append(event)
            result.new_events.append(event)

    @staticmethod
    def _executed(prediction: Prediction, now: float) -> ActionExecuted:
        return ActionExecuted(
            timestamp=now,
            name=prediction.action,
            policy=prediction.policy,
            confidence=prediction.confidence,
            hide_rule_turn=prediction.hide_rule_turn,
        )

    def _start_session_if_due(self, conv: Conversation, result: TurnResult, now: float) -> None:
        expiry_min = self.domain.session_config.session_expiration_time
        last = conv.state.latest_event_time
        expired = bool(expiry_min) and last is not None and now - last > expiry_min * 60
        if conv.seq and not expired:
            return
        ctx = ActionContext(conv.state, conv.events, self.domain, self.renderer, None, now)
        produced = run_local(ACTION_SESSION_START, ctx)
        # Rasa records it without policy or confidence.
        executed = ActionExecuted(timestamp=now, name=ACTION_SESSION_START)
        self._record(conv, result, [executed, *produced])

    def _response_event(
        self, response: dict[str, Any], slots: Mapping[str, Any], channel: str | None, now: float
    ) -> BotUttered | None:
        draft = dict(response)
        name = draft.pop("response", None) or draft.pop("template", None)
        message: dict[str, Any] = {}
        if name:
            rendered = self.renderer.render(name, slots, channel, **draft)
            if rendered is None:
                return None
            message = {**rendered, "utter_action": name}
        buttons = draft.pop("buttons", None) or []
        if buttons:
            message.setdefault("buttons", []).extend(buttons)
        message.update({k: v for k, v in draft.items() if v})
        return bot_uttered(message, now)

    def _fail(
        self,
        conv: Conversation,
        result: TurnResult,
        pending: PendingAction,
        status: str,
        error: str | None,
        now: float,
    ) -> None:
        logger.error("custom action %s %s: %s", pending.action, status, error or "no detail")
        events: list[Event] = []
        response = self.settings.failure_response
        if response and self.renderer.has(response):
            bot = self.renderer.utter(response, conv.state.slots, pending.channel, now)
            events += [bot] if bot is not None else []
        events.append(self._failed(pending, status, error, now))
        self._record(conv, result, events)
        if self.settings.handoff.on_action_failure and pending.action != HANDOFF_ACTION:
            self._predict_and_run(
                conv, result, now, pending.channel, handoff_reason="action_failure"
            )
            return
        self._record(conv, result, [self._executed(Prediction(ACTION_LISTEN, 1.0, None), now)])
        result.turn_complete = True

    @staticmethod
    def _failed(pending: PendingAction, status: str, error: str | None, now: float) -> ActionFailed:
        reason: Literal["failed", "timeout", "not_found"] = (
            "timeout" if status == "timeout" else "not_found" if status == "not_found" else "failed"
        )
        return ActionFailed(timestamp=now, name=pending.action, reason=reason, error=error)
