"""Rasa 3.x's RulePolicy: rules, default intents, active loops and the core fallback.

Training remembers, for each action of each rule, the rule's states since its ``...`` snippet
(all of them for a rule that holds at the conversation start) under Rasa's key (sorted JSON);
predictions that would be the snippet itself, or keys left empty, are dropped, and two rules
that disagree after the same states are both forgotten. Every tracker, stories too, adds the
"unhappy path" hints of active loops: a loop run again right after the user spoke means the loop
was interrupted (``LoopInterrupted`` goes with the next prediction), and another action than the
loop after a bot action means the loop must not be forced there.

Prediction, in Rasa's order:

1. a rule matched on the user's *text* (end-to-end) beats everything but loops;
2. ``/restart``, ``/back`` and ``/session_start`` predict their default action;
3. an active, not rejected loop is predicted until it runs, then ``action_listen``;
4. a rule matched by intent (the longest matching rule wins; a general rule that ends with
   ``action_listen`` inside a loop returns to the loop instead);
5. otherwise nothing, except ``core_fallback_action_name`` at ``core_fallback_threshold``, which
   is in every prediction (when enabled) so it wins only when no other policy is as confident.

With ``check_for_contradictions`` training also replays every tracker through the policy and
raises :class:`InvalidRule` for rules contradicting each other or the stories, and for rules that
leave out the slots or loop an action sets in other rules; it records slots and loops that only
rules use (other policies leave them out of their states) and the rules that no story uses,
whose turns are hidden from the other policies (``hide_rule_turn``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from schemas.events import ActionExecuted, ActionExecutionRejected, Event, LoopInterrupted
from schemas.project.domain import Domain
from services.dialogue.policies._rule_checks import (
    InvalidRule,
    check_rule_restriction,
    incomplete_rule_errors,
)
from services.dialogue.policies._rule_states import (
    StateDict,
    examples,
    feature_key,
    loop_of,
    matching_keys,
    prev_action_is_listen,
    rule_states,
    unhappy_path_states,
)
from services.dialogue.policies.base import (
    RULE_POLICY_PRIORITY,
    PolicyPrediction,
    SupportedData,
)
from services.dialogue.states import (
    SHOULD_NOT_BE_SET,
    RuleOnlyData,
    State,
    choose_last_user_input,
    states_for,
)
from services.dialogue.tracker import (
    ACTION_LISTEN,
    TrackerState,
    applied_events,
    replay,
    slot_defaults,
)
from services.dialogue.training_data import RULE_SNIPPET_ACTION, TrainingTracker

__all__ = [
    "DEFAULT_ACTION_MAPPINGS",
    "DEFAULT_CORE_FALLBACK_THRESHOLD",
    "RULE_LOOKUP_VERSION",
    "InvalidRule",
    "RulePolicy",
]

logger = logging.getLogger(__name__)

RULE_LOOKUP_VERSION = 1
"""Version of :meth:`RulePolicy.to_json`'s layout."""

DEFAULT_CORE_FALLBACK_THRESHOLD = 0.3
ACTION_DEFAULT_FALLBACK = "action_default_fallback"
# Rasa's default intents and the default actions that answer them, above any rule.
DEFAULT_ACTION_MAPPINGS = {
    "restart": "action_restart",
    "back": "action_back",
    "session_start": "action_session_start",
}

LOOP_WAS_INTERRUPTED = "loop_was_interrupted"
DO_NOT_PREDICT_LOOP_ACTION = "do_not_predict_loop_action"
# Prediction sources that are not rule keys, as Rasa names them.
DEFAULT_RULES = "predicting default action with intent "
LOOP_RULES = "handling active loops and forms - "
LOOP_RULES_SEPARATOR = " - "

# Rasa orders actions with its defaults first; ties inside one prediction go to the first.
_RASA_ACTION_ORDER = (
    "action_listen",
    "action_restart",
    "action_session_start",
    "action_default_fallback",
    "action_deactivate_loop",
    "action_revert_fallback_events",
    "action_default_ask_affirmation",
    "action_default_ask_rephrase",
    "action_two_stage_fallback",
    "action_unlikely_intent",
    "action_back",
    "action_send_text",
    "action_extract_slots",
)


def _order(action: str) -> int:
    try:
        return _RASA_ACTION_ORDER.index(action)
    except ValueError:
        return len(_RASA_ACTION_ORDER)


@dataclass
class RuleLookup:
    """What the rule policy learned (Rasa's ``lookup`` dict, key for key)."""

    rules: dict[str, str] = field(default_factory=dict)
    rules_for_loop_unhappy_path: dict[str, str] = field(default_factory=dict)
    rules_not_in_stories: list[str] = field(default_factory=list)
    rule_only_slots: list[str] = field(default_factory=list)
    rule_only_loops: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": dict(sorted(self.rules.items())),
            "rules_for_loop_unhappy_path": dict(sorted(self.rules_for_loop_unhappy_path.items())),
            "rules_not_in_stories": sorted(self.rules_not_in_stories),
            "rule_only_slots": sorted(self.rule_only_slots),
            "rule_only_loops": sorted(self.rule_only_loops),
        }

    @classmethod
    def from_json(cls, data: Any) -> RuleLookup:
        if not isinstance(data, dict):
            raise ValueError("the rule lookup must be an object")
        out = cls()
        for name in ("rules", "rules_for_loop_unhappy_path"):
            table = data.get(name, {})
            if not isinstance(table, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in table.items()
            ):
                raise ValueError(f"rule lookup {name!r} must map strings to strings")
            setattr(out, name, dict(table))
        for name in ("rules_not_in_stories", "rule_only_slots", "rule_only_loops"):
            items = data.get(name, [])
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError(f"rule lookup {name!r} must be a list of strings")
            setattr(out, name, list(items))
        return out


@dataclass(frozen=True)
class _Found:
    action: str | None
    source: str | None
    returning_from_unhappy_path: bool = False


class RulePolicy:
    """Follows the rules; keeps loops running; answers default intents; falls back."""

    def __init__(
        self,
        *,
        priority: int = RULE_POLICY_PRIORITY,
        core_fallback_threshold: float = DEFAULT_CORE_FALLBACK_THRESHOLD,
        core_fallback_action_name: str = ACTION_DEFAULT_FALLBACK,
        enable_fallback_prediction: bool = True,
        restrict_rules: bool = True,
        check_for_contradictions: bool = True,
        use_nlu_confidence_as_score: bool = False,
        lookup: RuleLookup | None = None,
    ) -> None:
        if not 0.0 <= core_fallback_threshold <= 1.0:
            raise ValueError(
                f"core_fallback_threshold must be between 0 and 1, not {core_fallback_threshold}"
            )
        self._priority = priority
        self.core_fallback_threshold = float(core_fallback_threshold)
        self.core_fallback_action_name = core_fallback_action_name
        self.enable_fallback_prediction = enable_fallback_prediction
        self.restrict_rules = restrict_rules
        self.check_for_contradictions = check_for_contradictions
        self.use_nlu_confidence_as_score = use_nlu_confidence_as_score
        self.lookup = lookup or RuleLookup()
        # prediction source -> (rule name, action the rule wants), filled while checking.
        self._sources: dict[str, list[tuple[str, str]]] = defaultdict(list)

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def priority(self) -> int:
        return self._priority

    @property
    def supported_data(self) -> SupportedData:
        return SupportedData.ML_AND_RULE_DATA

    @property
    def rule_only_data(self) -> RuleOnlyData:
        """Slots and loops only rules use: the other policies leave them out of their states."""
        return RuleOnlyData(
            frozenset(self.lookup.rule_only_slots), frozenset(self.lookup.rule_only_loops)
        )

    # -- training -------------------------------------------------------------------------

    def train(self, trackers: Sequence[TrainingTracker], domain: Domain) -> None:
        """Learn the rules; with ``check_for_contradictions``, validate them against stories.

        Raises :class:`InvalidRule` for rules that are too long (``restrict_rules``),
        incomplete or contradicting, and ``ValueError`` for a fallback action the domain lacks.
        """
        if not domain.is_known_action(self.core_fallback_action_name):
            raise ValueError(
                f"The fallback action '{self.core_fallback_action_name}' configured for the "
                f"{self.name} must be in the domain."
            )
        rule_trackers = [t for t in trackers if t.is_rule]
        story_trackers = [t for t in trackers if not t.is_rule]
        if self.restrict_rules:
            check_rule_restriction(rule_trackers)
        if self.check_for_contradictions:
            errors = incomplete_rule_errors(rule_trackers, domain)
            if errors:
                raise InvalidRule(
                    "Incomplete rules found:\n"
                    + "\n".join(errors)
                    + "\nSlots or loops that must not be set during prediction have to be set "
                    "to 'null' explicitly in the rules."
                )
        self.lookup = RuleLookup()
        rule_examples = [
            e for t in rule_trackers for e in examples(t, domain, omit_unset_slots=True)
        ]
        story_examples = [
            e for t in story_trackers for e in examples(t, domain, omit_unset_slots=False)
        ]
        self.lookup.rules = {
            key: action
            for key, action in _memorize(rule_examples).items()
            if action != RULE_SNIPPET_ACTION
        }
        if self.check_for_contradictions:
            slots, loops = _slots_and_loops(rule_examples)
            story_slots, story_loops = _slots_and_loops(story_examples)
            self.lookup.rule_only_slots = sorted(slots - story_slots - {SHOULD_NOT_BE_SET})
            self.lookup.rule_only_loops = sorted(loops - story_loops - {SHOULD_NOT_BE_SET})
        self.lookup.rules_for_loop_unhappy_path = _unhappy_path_lookup(
            [*rule_examples, *story_examples]
        )
        if self.check_for_contradictions:
            self.lookup.rules_not_in_stories = self._analyze_rules(
                rule_trackers, list(trackers), domain
            )
        logger.debug("%s memorized %d rules", self.name, len(self.lookup.rules))

    def _analyze_rules(
        self,
        rule_trackers: Sequence[TrainingTracker],
        trackers: Sequence[TrainingTracker],
        domain: Domain,
    ) -> list[str]:
        """Replay the trackers through the policy: raise on contradictions, list unused rules."""
        self._sources = defaultdict(list)
        self._replay_trackers(rule_trackers, domain, collect_sources=True)
        errors, used = self._replay_trackers(trackers, domain, collect_sources=False)
        if errors:
            raise InvalidRule(
                "Contradicting rules or stories found:\n"
                + "\n".join(errors)
                + "\nUpdate the stories and rules so that they do not contradict each other."
            )
        every_source = (
            set(self._sources)
            | {DEFAULT_RULES + intent for intent in DEFAULT_ACTION_MAPPINGS}
            | {LOOP_RULES + loop for loop in domain.forms}
            | {LOOP_RULES + loop + LOOP_RULES_SEPARATOR + ACTION_LISTEN for loop in domain.forms}
        )
        return sorted(every_source - used)

    def _replay_trackers(
        self, trackers: Sequence[TrainingTracker], domain: Domain, *, collect_sources: bool
    ) -> tuple[list[str], set[str]]:
        errors: list[str] = []
        used: set[str] = set()
        for tracker in trackers:
            running: list[Event] = []
            unpredictable = {id(tracker.events[i]) for i in tracker.unpredictable}
            # The first action of a tracker, and the one after a snippet, is not predicted.
            skip_next = True
            for event in applied_events(tracker.events):
                if not isinstance(event, ActionExecuted):
                    running.append(event)
                    continue
                if event.name == RULE_SNIPPET_ACTION:
                    skip_next = True
                elif skip_next or id(event) in unpredictable:
                    skip_next = False
                else:
                    gold = event.name or event.action_text or ""
                    predicted, source = self._checked_prediction(running, domain, gold, tracker)
                    if collect_sources:
                        if source:
                            self._collect_source(tracker, predicted, gold, source)
                    else:
                        if not tracker.is_rule and predicted == gold and source is not None:
                            used.add(source)
                        errors += self._contradictions(tracker, predicted, gold, source)
                running.append(event)
        return errors, used

    def _checked_prediction(
        self, running: list[Event], domain: Domain, gold: str, tracker: TrainingTracker
    ) -> tuple[str | None, str | None]:
        predicted, source = self._training_prediction(running, domain, tracker.is_rule)
        loop = replay(running, slot_defaults(domain)).active_loop_name
        if loop and predicted != gold and predicted == loop:
            # As Rasa's test does: the loop rejects, the unhappy path is predicted next.
            running.append(ActionExecutionRejected(name=loop))
            predicted, source = self._training_prediction(running, domain, tracker.is_rule)
        return predicted, source

    def _training_prediction(
        self, events: Sequence[Event], domain: Domain, is_rule: bool
    ) -> tuple[str | None, str | None]:
        prediction, source = self._predict(events, domain)
        if prediction.probabilities == self._default_probabilities() and not is_rule:
            # Stories need not follow a rule; rules must always predict something.
            return None, source
        return _best_action(prediction.probabilities), source

    def _collect_source(
        self, tracker: TrainingTracker, predicted: str | None, gold: str, source: str
    ) -> None:
        rule_name = tracker.name
        if source.startswith((DEFAULT_RULES, LOOP_RULES)):
            # Default and loop handling are rules of their own: what they predict is right.
            gold = predicted or gold
            rule_name = source
        self._sources[source].append((rule_name, gold))

    def _should_delete(self, source: str, tracker: TrainingTracker, predicted: str) -> bool:
        """A story continues after an action a one-state rule ends with ``action_listen``."""
        if tracker.is_rule or source.count("prev_action") > 1 or predicted != ACTION_LISTEN:
            return False
        return any(key.startswith(source[:-2]) and key != source for key in self.lookup.rules)

    def _contradictions(
        self, tracker: TrainingTracker, predicted: str | None, gold: str, source: str | None
    ) -> list[str]:
        if not predicted or not source or predicted == gold:
            return []
        if self._should_delete(source, tracker, predicted):
            self.lookup.rules.pop(source, None)
            return []
        rules = sorted({name for name, action in self._sources[source] if action != gold})
        if not rules:
            return []
        kind = "rule" if tracker.is_rule else "story"
        message = (
            f"- the prediction of the action '{gold}' in {kind} '{tracker.name}' "
            f"is contradicting with rule(s) '{', '.join(rules)}'"
        )
        if predicted != self.core_fallback_action_name:
            message += f" which predicted action '{predicted}'"
        return [message + "."]

    # -- prediction -----------------------------------------------------------------------

    def predict(
        self,
        events: Sequence[Event],
        domain: Domain,
        *,
        rule_only: RuleOnlyData | None = None,
        state: TrackerState | None = None,
        initial: TrackerState | None = None,
    ) -> PolicyPrediction:
        """The next action after ``events`` (``rule_only`` is ignored: rules see everything;
        ``state`` is the tracker after ``events`` when the caller has it)."""
        return self._predict(events, domain, state, initial)[0]

    def _predict(
        self,
        events: Sequence[Event],
        domain: Domain,
        state: TrackerState | None = None,
        initial: TrackerState | None = None,
    ) -> tuple[PolicyPrediction, str | None]:
        tracker = state if state is not None else replay(events, slot_defaults(domain))
        # Rules see every turn, hidden ones and action_unlikely_intent included.
        states = states_for(events, domain, initial=initial)
        by_text = self._find_from_rules(tracker, states, use_text=True)
        default = _default_action(tracker)
        if default is not None and by_text.action is None:
            source = DEFAULT_RULES + default[0]
            return self._prediction(default[1], tracker, source), source
        loop_action, loop_source = _loop_happy_path(tracker)
        if loop_action is not None:
            prediction = self._prediction(loop_action, tracker, loop_source, no_user=True)
            return prediction, loop_source
        if by_text.action is not None:
            prediction = self._prediction(
                by_text.action,
                tracker,
                by_text.source,
                returning=by_text.returning_from_unhappy_path,
                end_to_end=True,
            )
            return prediction, by_text.source
        by_intent = self._find_from_rules(tracker, states, use_text=False)
        prediction = self._prediction(
            by_intent.action,
            tracker,
            by_intent.source,
            returning=by_text.returning_from_unhappy_path or by_intent.returning_from_unhappy_path,
        )
        return prediction, by_intent.source

    def _find_from_rules(
        self, tracker: TrackerState, all_states: Sequence[State], *, use_text: bool
    ) -> _Found:
        if use_text and tracker.latest_action_name != ACTION_LISTEN:
            # The text counts only right after the user spoke.
            return _Found(None, None)
        if not all_states:
            return _Found(None, None)
        states = choose_last_user_input(all_states, use_text)
        as_dicts: list[StateDict] = [s.to_dict() for s in states]
        keys = matching_keys(list(self.lookup.rules), as_dicts)
        best_key = max(keys, key=len) if keys else ""
        action = self.lookup.rules.get(best_key) if best_key else None
        returning = False
        loop = tracker.active_loop_name
        if loop:
            table = self.lookup.rules_for_loop_unhappy_path
            conditions = {table[k] for k in matching_keys(list(table), as_dicts)}
            general_listen = action == ACTION_LISTEN and not loop_of(rule_states(best_key)[-1])
            if general_listen:
                # A general rule ending with action_listen inside a loop: back to the loop.
                if DO_NOT_PREDICT_LOOP_ACTION not in conditions:
                    return _Found(loop, best_key)
                action = None
            if LOOP_WAS_INTERRUPTED in conditions:
                returning = True
        return _Found(action, best_key or feature_key(states), returning)

    def _default_probabilities(self) -> dict[str, float]:
        if not self.enable_fallback_prediction:
            return {}
        return {self.core_fallback_action_name: self.core_fallback_threshold}

    def _prediction(
        self,
        action: str | None,
        tracker: TrackerState,
        source: str | None,
        *,
        returning: bool = False,
        end_to_end: bool = False,
        no_user: bool = False,
    ) -> PolicyPrediction:
        probabilities = self._default_probabilities()
        if action is not None:
            probabilities[action] = self._score(tracker)
        ordered = dict(sorted(probabilities.items(), key=lambda item: _order(item[0])))
        return PolicyPrediction(
            ordered,
            self.name,
            self.priority,
            events=(LoopInterrupted(is_interrupted=True),) if returning else (),
            is_end_to_end_prediction=end_to_end,
            is_no_user_prediction=no_user,
            hide_rule_turn=source is not None and source in self.lookup.rules_not_in_stories,
        )

    def _score(self, tracker: TrackerState) -> float:
        if not self.use_nlu_confidence_as_score:
            return 1.0
        intent = (tracker.latest_message or {}).get("intent")
        confidence = intent.get("confidence", 1.0) if isinstance(intent, dict) else 1.0
        return float(confidence) if isinstance(confidence, int | float) else 1.0

    # -- persistence ----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The configuration and what was learned, for the model archive."""
        return {
            "version": RULE_LOOKUP_VERSION,
            "policy": self.name,
            "priority": self.priority,
            "core_fallback_threshold": self.core_fallback_threshold,
            "core_fallback_action_name": self.core_fallback_action_name,
            "enable_fallback_prediction": self.enable_fallback_prediction,
            "restrict_rules": self.restrict_rules,
            "check_for_contradictions": self.check_for_contradictions,
            "use_nlu_confidence_as_score": self.use_nlu_confidence_as_score,
            "lookup": self.lookup.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Read what :meth:`to_json` wrote; ``ValueError`` for anything else."""
        if data.get("version") != RULE_LOOKUP_VERSION:
            raise ValueError(f"unsupported rule policy layout version {data.get('version')!r}")
        if data.get("policy") != cls.__name__:
            raise ValueError(f"{cls.__name__} cannot load a {data.get('policy')!r} policy")
        fallback = data.get("core_fallback_action_name", ACTION_DEFAULT_FALLBACK)
        if not isinstance(fallback, str):
            raise ValueError("core_fallback_action_name must be a string")
        return cls(
            priority=int(data.get("priority", RULE_POLICY_PRIORITY)),
            core_fallback_threshold=float(
                data.get("core_fallback_threshold", DEFAULT_CORE_FALLBACK_THRESHOLD)
            ),
            core_fallback_action_name=fallback,
            enable_fallback_prediction=bool(data.get("enable_fallback_prediction", True)),
            restrict_rules=bool(data.get("restrict_rules", True)),
            check_for_contradictions=bool(data.get("check_for_contradictions", True)),
            use_nlu_confidence_as_score=bool(data.get("use_nlu_confidence_as_score", False)),
            lookup=RuleLookup.from_json(data.get("lookup", {})),
        )


def _best_action(probabilities: Mapping[str, float]) -> str:
    """Rasa's argmax over all actions: ``action_listen`` (index 0) when all are 0."""
    best = max(probabilities.items(), key=lambda item: item[1], default=None)
    return best[0] if best is not None and best[1] > 0 else ACTION_LISTEN


def _memorize(examples: Sequence[tuple[list[State], str]]) -> dict[str, str]:
    """Key → action; a key seen with two actions is forgotten for good (memoization's rule)."""
    lookup: dict[str, str] = {}
    ambiguous: set[str] = set()
    for states, action in examples:
        key = feature_key(states)
        if key is None or key in ambiguous:
            continue
        if lookup.setdefault(key, action) != action:
            ambiguous.add(key)
            del lookup[key]
    return lookup


def _slots_and_loops(examples: Sequence[tuple[list[State], str]]) -> tuple[set[str], set[str]]:
    slots: set[str] = set()
    loops: set[str] = set()
    for states, _ in examples:
        for state in states:
            slots.update(name for name, _ in state.slots)
            if state.active_loop:
                loops.add(state.active_loop)
    return slots, loops


def _unhappy_path_lookup(examples: Sequence[tuple[list[State], str]]) -> dict[str, str]:
    lookup: dict[str, str] = {}
    for states, action in examples:
        loop = loop_of(states[-1].to_dict())
        if not loop:
            continue
        states = unhappy_path_states(states)
        key = feature_key(states)
        if key is None:
            continue
        after_user = prev_action_is_listen(states[-1])
        if after_user and action == loop:
            # The loop ran again right after the user answered something else.
            lookup[key] = LOOP_WAS_INTERRUPTED
        elif not after_user and action != loop:
            # Another action than the loop follows a bot action: do not force the loop.
            lookup[key] = DO_NOT_PREDICT_LOOP_ACTION
    return lookup


def _default_action(tracker: TrackerState) -> tuple[str, str] | None:
    """(intent, default action) when the user just sent ``/restart``, ``/back``..."""
    if tracker.latest_action_name != ACTION_LISTEN or not tracker.latest_message:
        return None
    intent = tracker.latest_message.get("intent")
    name = intent.get("name") if isinstance(intent, dict) else None
    if not isinstance(name, str) or name not in DEFAULT_ACTION_MAPPINGS:
        return None
    return name, DEFAULT_ACTION_MAPPINGS[name]


def _loop_happy_path(tracker: TrackerState) -> tuple[str | None, str | None]:
    loop = tracker.active_loop_name
    if loop is None or tracker.is_active_loop_rejected:
        return None, None
    latest = tracker.latest_action or {}
    if latest and latest.get("action_name") != loop:
        return loop, LOOP_RULES + loop
    if tracker.latest_action_name == loop:
        return ACTION_LISTEN, LOOP_RULES + loop + LOOP_RULES_SEPARATOR + ACTION_LISTEN
    return None, None
