"""Rasa's built-in actions and response actions, as pure functions of the tracker.

Each returns the events the action produces (without its `ActionExecuted`, which the caller
records), as Rasa 3.x's `rasa/core/actions/action.py` does:

| action | events |
|---|---|
| `action_listen`, `action_unlikely_intent` | none |
| `action_restart` | `utter_restart` if the domain has it, then `restart` |
| `action_session_start` | `session_started`, the applied `slot` events if slots carry |
|   | over, then `action_listen` |
| `action_default_fallback` | `utter_default` if defined, then `rewind` |
| `action_deactivate_loop` | `active_loop` null, `requested_slot` null |
| `action_back` | `utter_back` if defined, then two `rewind`s |
| `action_default_ask_affirmation` | "Did you mean '<intent>'?" with Yes/No buttons |
|   | (the second-ranked intent when the first is `nlu_fallback`) |
| `action_default_ask_rephrase` | `utter_ask_rephrase` if defined |
| `action_handoff` (Parley's) | `utter_handoff` if defined, then `pause` with |
|   | `{"handoff_reason": "requested"}` in its metadata (docs/handoff.md) |
| `utter_*` | the response (nothing, logged, when no variation applies) |
| an end-to-end bot text | that text |
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from schemas.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    ConversationPaused,
    Event,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUtteranceReverted,
    UserUttered,
)
from schemas.project.domain import REQUESTED_SLOT, Domain
from services.dialogue.responses import ResponseRenderer, bot_uttered
from services.dialogue.tracker import TrackerState, applied_events

NLU_FALLBACK = "nlu_fallback"
OUT_OF_SCOPE = "out_of_scope"


@dataclass(frozen=True)
class ActionContext:
    """What a built-in action may read."""

    state: TrackerState
    events: Sequence[Event]
    domain: Domain
    renderer: ResponseRenderer
    channel: str | None
    now: float


def _utter(ctx: ActionContext, response: str) -> list[Event]:
    if not ctx.renderer.has(response):
        return []
    event = ctx.renderer.utter(response, ctx.state.slots, ctx.channel, ctx.now)
    return [event] if event is not None else []


def _listen(ctx: ActionContext) -> list[Event]:
    return []


def _restart(ctx: ActionContext) -> list[Event]:
    return [*_utter(ctx, "utter_restart"), Restarted(timestamp=ctx.now)]


def _session_start(ctx: ActionContext) -> list[Event]:
    events: list[Event] = [SessionStarted(timestamp=ctx.now)]
    if ctx.domain.session_config.carry_over_slots_to_new_session:
        events += [
            SlotSet(timestamp=ctx.now, name=e.name, value=e.value, metadata=e.metadata)
            for e in applied_events(ctx.events)
            if isinstance(e, SlotSet)
        ]
    events.append(ActionExecuted(timestamp=ctx.now, name="action_listen"))
    return events


def _default_fallback(ctx: ActionContext) -> list[Event]:
    return [*_utter(ctx, "utter_default"), UserUtteranceReverted(timestamp=ctx.now)]


def _deactivate_loop(ctx: ActionContext) -> list[Event]:
    return [
        ActiveLoop(timestamp=ctx.now, name=None),
        SlotSet(timestamp=ctx.now, name=REQUESTED_SLOT, value=None),
    ]


def _back(ctx: ActionContext) -> list[Event]:
    reverted = [UserUtteranceReverted(timestamp=ctx.now) for _ in range(2)]
    return [*_utter(ctx, "utter_back"), *reverted]


def _ask_affirmation(ctx: ActionContext) -> list[Event]:
    message = ctx.state.latest_message or {}
    intent = (message.get("intent") or {}).get("name")
    ranking = message.get("intent_ranking") or []
    if intent == NLU_FALLBACK and len(ranking) > 1:
        intent = ranking[1].get("name")
    return [
        bot_uttered(
            {
                "text": f"Did you mean '{intent}'?",
                "buttons": [
                    {"title": "Yes", "payload": f"/{intent}"},
                    {"title": "No", "payload": f"/{OUT_OF_SCOPE}"},
                ],
                "utter_action": "action_default_ask_affirmation",
            },
            ctx.now,
        )
    ]


def _ask_rephrase(ctx: ActionContext) -> list[Event]:
    return _utter(ctx, "utter_ask_rephrase")


TWO_STAGE_FALLBACK = "action_two_stage_fallback"


def _intents_back(ctx: ActionContext, count: int) -> list[str | None]:
    """The intents of the last `count` user messages or rewinds since the last restart (a
    rewind takes a place but adds nothing), newest first — Rasa's `_last_n_intent_names`."""
    names: list[str | None] = []
    seen = 0
    for event in reversed(ctx.events):
        if isinstance(event, Restarted):
            break
        if isinstance(event, UserUttered | UserUtteranceReverted):
            seen += 1
            if isinstance(event, UserUttered):
                names.append((event.parse_data.get("intent") or {}).get("name"))
            if seen == count:
                break
    return names


def _two_stage_fallback(ctx: ActionContext) -> list[Event]:
    """Rasa's `TwoStageFallbackAction`, a loop: ask the user to affirm the intent, then to
    rephrase; a clarified intent is replayed as if the user had said it; two failures in a
    row give up with `action_default_fallback`."""
    events: list[Event] = []
    if ctx.state.active_loop_name != TWO_STAGE_FALLBACK:
        events.append(ActiveLoop(timestamp=ctx.now, name=TWO_STAGE_FALLBACK))
    last = ((ctx.state.latest_message or {}).get("intent") or {}).get("name")
    two_fallbacks = _intents_back(ctx, 2) == [NLU_FALLBACK, NLU_FALLBACK]
    affirmation_failed = _intents_back(ctx, 3) == [OUT_OF_SCOPE, NLU_FALLBACK, OUT_OF_SCOPE]
    done = last not in (NLU_FALLBACK, OUT_OF_SCOPE) or two_fallbacks or affirmation_failed
    if not done:
        if events or last == NLU_FALLBACK:
            events += _ask_affirmation(ctx)
        else:
            events += _ask_rephrase(ctx)
        return events
    events.append(ActiveLoop(timestamp=ctx.now, name=None))
    if two_fallbacks or affirmation_failed:
        return events + _default_fallback(ctx)
    latest = next((e for e in reversed(ctx.events) if isinstance(e, UserUttered)), None)
    if latest is None:
        raise ValueError("two-stage fallback: no user message to clarify")
    parse_data = copy.deepcopy(latest.parse_data)
    parse_data.setdefault("intent", {})["confidence"] = 1.0
    clarified = latest.model_copy(update={"timestamp": ctx.now, "parse_data": parse_data})
    listen = ActionExecuted(timestamp=ctx.now, name="action_listen")
    return [*events, UserUtteranceReverted(timestamp=ctx.now), listen, clarified]


HANDOFF_ACTION = "action_handoff"


def handoff(ctx: ActionContext, reason: str = "requested") -> list[Event]:
    """Parley's `action_handoff`: tell the user (`utter_handoff`), then hand the conversation
    to a human (`pause` with the reason in its metadata)."""
    pause = ConversationPaused(timestamp=ctx.now, metadata={"handoff_reason": reason})
    return [*_utter(ctx, "utter_handoff"), pause]


BUILTINS: dict[str, Callable[[ActionContext], list[Event]]] = {
    "action_listen": _listen,
    "action_unlikely_intent": _listen,
    "action_restart": _restart,
    "action_session_start": _session_start,
    "action_default_fallback": _default_fallback,
    "action_deactivate_loop": _deactivate_loop,
    "action_back": _back,
    "action_default_ask_affirmation": _ask_affirmation,
    "action_default_ask_rephrase": _ask_rephrase,
    TWO_STAGE_FALLBACK: _two_stage_fallback,
    HANDOFF_ACTION: handoff,
}


def is_local(name: str, domain: Domain) -> bool:
    """Whether the dialogue worker runs `name` itself (a built-in not overridden by a custom
    action of the same name, or a response), rather than sending it to the action server.

    An `utter_*` action is always the response, even when the domain lists it under
    `actions` (Rasa 3's `action_for_name_or_text` does the same)."""
    if name in BUILTINS and name not in domain.actions:
        return True
    return name.startswith("utter_")


def run_local(name: str, ctx: ActionContext) -> list[Event]:
    """The events of a local action (see `is_local`), or of an end-to-end bot text."""
    builtin = BUILTINS.get(name)
    if builtin is not None and name not in ctx.domain.actions:
        return builtin(ctx)
    if name.startswith("utter_"):
        return _utter_or_log(ctx, name)
    return [BotUttered(timestamp=ctx.now, text=name)]


def _utter_or_log(ctx: ActionContext, name: str) -> list[Event]:
    event = ctx.renderer.utter(name, ctx.state.slots, ctx.channel, ctx.now)
    return [event] if event is not None else []
