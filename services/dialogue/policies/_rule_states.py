"""How the rule policy keys, reads and matches dialogue states (Rasa's ``RulePolicy`` helpers).

A rule is remembered under a key: the JSON (sorted keys) of its states after the last ``...``
snippet state, as Rasa writes it, so keys and prediction sources read like Rasa's. A rule state
matches a conversation state when every feature the rule names is in the conversation state with
the same value, and every feature the rule marks ``should_not_be_set`` is absent there.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from schemas.events import ActionExecuted, Event, UserUttered
from schemas.project.domain import Domain
from services.dialogue.states import (
    SHOULD_NOT_BE_SET,
    State,
    states_for,
    strip_user_text_if_intent,
)
from services.dialogue.tracker import ACTION_LISTEN, applied_events
from services.dialogue.training_data import RULE_SNIPPET_ACTION, TrainingTracker

__all__ = [
    "StateDict",
    "examples",
    "feature_key",
    "is_rule_applicable",
    "loop_of",
    "matching_keys",
    "prev_action_is_listen",
    "rule_states",
    "unhappy_path_states",
    "user_count",
]

StateDict = Mapping[str, Mapping[str, Any]]


def _is_snippet(state: State) -> bool:
    return state.action_name == RULE_SNIPPET_ACTION


def feature_key(states: Sequence[State]) -> str | None:
    """The states after the last snippet state as sorted JSON; None when none are left."""
    kept: list[State] = []
    for state in reversed(states):
        if _is_snippet(state):
            break
        kept.append(state)
    if not kept:
        return None
    return json.dumps([s.to_dict() for s in reversed(kept)], sort_keys=True)


def _tuples(value: Any) -> Any:
    # JSON turns tuples (slot features, entity labels) into lists: turn them back.
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


@functools.lru_cache(maxsize=4096)
def rule_states(key: str) -> tuple[StateDict, ...]:
    """The states a rule key stands for, with tuples where the conversation has them."""
    loaded = json.loads(key)
    return tuple(_tuples(state) for state in loaded)


def loop_of(state: StateDict) -> str | None:
    """The state's active loop; ``should_not_be_set`` counts as none (``get_active_loop_name``)."""
    name = (state.get("active_loop") or {}).get("name")
    return None if not name or name == SHOULD_NOT_BE_SET else str(name)


def _state_matches(rule: StateDict, conversation: StateDict) -> bool:
    for kind, rule_sub in rule.items():
        conversation_sub = conversation.get(kind) or {}
        for feature, wanted in rule_sub.items():
            found = conversation_sub.get(feature)
            if wanted == SHOULD_NOT_BE_SET:
                if found and found != SHOULD_NOT_BE_SET:
                    return False
            elif wanted and found != wanted:
                return False
    return True


def is_rule_applicable(key: str, turn: int, conversation: StateDict) -> bool:
    """Whether the rule's state ``turn`` steps back from its end fits the conversation state."""
    states = rule_states(key)
    if turn >= len(states):
        # The conversation already matched further back than the rule reaches.
        return True
    rule = states[-1 - turn]
    # Only a conversation start has no previous action: starts match starts only.
    rule_start = not rule.get("prev_action")
    conversation_start = not conversation.get("prev_action")
    if rule_start or conversation_start:
        return rule_start and conversation_start
    return _state_matches(rule, conversation)


def matching_keys(keys: Iterator[str] | Sequence[str], states: Sequence[StateDict]) -> list[str]:
    """The keys whose rule states all fit the conversation's latest states, sorted."""
    out = []
    for key in keys:
        if all(is_rule_applicable(key, turn, state) for turn, state in enumerate(reversed(states))):
            out.append(key)
    return sorted(out)


def unhappy_path_states(states: Sequence[State]) -> list[State]:
    """The last state, after only the previous action of the state before (intents ignored)."""
    if len(states) == 1 or (states[-2].action_name is None and states[-2].action_text is None):
        return [states[-1]]
    before = State(action_name=states[-2].action_name, action_text=states[-2].action_text)
    return [before, states[-1]]


def examples(
    tracker: TrainingTracker, domain: Domain, *, omit_unset_slots: bool
) -> Iterator[tuple[list[State], str]]:
    """(every state before the action, action) for each predictable action of the tracker."""
    states = states_for(tracker.events, domain, omit_unset_slots=omit_unset_slots)
    skipped = {id(tracker.events[i]) for i in tracker.unpredictable}
    seen = 0
    for event in applied_events(tracker.events):
        if not isinstance(event, ActionExecuted):
            continue
        seen += 1
        label = event.name or event.action_text
        if id(event) in skipped or label is None:
            continue
        yield strip_user_text_if_intent(states[:seen]), label


def prev_action_is_listen(state: State) -> bool:
    return state.action_name == ACTION_LISTEN


def user_count(events: Sequence[Event]) -> int:
    return sum(isinstance(e, UserUttered) for e in events)
