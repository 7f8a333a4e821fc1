"""Training-time checks on rules that need no prediction (Rasa's ``RulePolicy`` validations).

* ``restrict_rules``: a rule holds at most one user message; rules are not a state machine.
* incomplete rules: an action that sets slots or a loop in one rule must be followed by those
  events in every rule where another action follows it (Rasa's action fingerprints).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.events import ActionExecuted, ActiveLoop, SlotSet, UserUttered
from schemas.project.domain import Domain
from services.dialogue.policies._rule_states import user_count
from services.dialogue.states import SHOULD_NOT_BE_SET, slot_features, states_for
from services.dialogue.tracker import ACTION_LISTEN
from services.dialogue.training_data import RULE_SNIPPET_ACTION, TrainingTracker

__all__ = [
    "ALLOWED_USER_INPUTS",
    "InvalidRule",
    "check_rule_restriction",
    "incomplete_rule_errors",
]

ALLOWED_USER_INPUTS = 1
RULES_DOCS = "https://rasa.com/docs/rasa/rules"


class InvalidRule(ValueError):
    """The rules cannot be trained as written; the message names the rules at fault."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{message}\nRules are described at {RULES_DOCS}.")
        self.message = message


def check_rule_restriction(rule_trackers: Sequence[TrainingTracker]) -> None:
    """Raise when a rule holds more than one user message."""
    too_long = [t.name for t in rule_trackers if user_count(t.events) > ALLOWED_USER_INPUTS]
    if too_long:
        names = ", ".join(dict.fromkeys(too_long))
        raise InvalidRule(
            f"Rules '{names}' have more than {ALLOWED_USER_INPUTS} user message: rules should "
            "not hard-code a state machine; write these as stories instead."
        )


@dataclass(frozen=True)
class _Fingerprint:
    slots: frozenset[str]
    loops: frozenset[str | None]


def _fingerprints(trackers: Sequence[TrainingTracker], domain: Domain) -> dict[str, _Fingerprint]:
    """Per action: the featurized slots and the loops some tracker sets right after it."""
    featurized = {name for name, slot in domain.slots.items() if slot_features(slot, None)}
    slots: dict[str, set[str]] = defaultdict(set)
    loops: dict[str, set[str | None]] = defaultdict(set)
    seen: set[str] = set()
    for tracker in trackers:
        action: str | None = None
        for event in tracker.events:
            if isinstance(event, ActionExecuted):
                action = event.name or event.action_text
            elif isinstance(event, UserUttered):
                # Slots a user turn's entities set are not the action's.
                action = None
            elif action:
                seen.add(action)
                if isinstance(event, SlotSet) and event.name in featurized:
                    slots[action].add(event.name)
                elif isinstance(event, ActiveLoop):
                    loops[action].add(event.name)
    return {a: _Fingerprint(frozenset(slots[a]), frozenset(loops[a])) for a in seen}


def incomplete_rule_errors(rule_trackers: Sequence[TrainingTracker], domain: Domain) -> list[str]:
    """One message per rule step where an action leaves out slots or a loop it sets elsewhere."""
    fingerprints = _fingerprints(rule_trackers, domain)
    if not fingerprints:
        return []
    errors: list[str] = []
    for tracker in rule_trackers:
        states = states_for(tracker.events, domain)
        following = [s.action_name for s in states[1:]] + [ACTION_LISTEN]
        for state, next_action in zip(states, following, strict=True):
            previous = state.action_name
            fingerprint = fingerprints.get(previous or "")
            if (
                previous is None
                or fingerprint is None
                or RULE_SNIPPET_ACTION in (previous, next_action)
            ):
                continue
            missing = sorted(fingerprint.slots - {name for name, _ in state.slots})
            if missing:
                errors.append(
                    f"- the action '{previous}' in rule '{tracker.name}' does not set the "
                    f"slots it sets in other rules: '{', '.join(missing)}'. Add them to the "
                    "rule, or end the rule with 'wait_for_user_input: false' after the action."
                )
            if fingerprint.loops and state.active_loop not in fingerprint.loops:
                loops = sorted(
                    {
                        "null" if loop in (None, SHOULD_NOT_BE_SET) else str(loop)
                        for loop in fingerprint.loops
                    }
                    | {previous}
                )
                errors.append(
                    f"- the form '{previous}' in rule '{tracker.name}' does not set the "
                    f"'active_loop' it sets in other rules: '{', '.join(loops)}'. Add the "
                    "'active_loop' to the rule, or end the rule with "
                    "'wait_for_user_input: false' after the action."
                )
    return errors
